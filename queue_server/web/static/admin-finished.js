// Correcting a finished service's outcome (#finished, managers): find the day's services,
// pick one, correct its outcome on the record; the corrections so far are listed with it.
import { h, t } from "./common.js";
import { nameOf, onSubmit, reportTo, say, table, today, when } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);

const OUTCOME = {
  done: "Done", missing_documents: "Missing documents", other_department: "Needs another department",
  system_problem: "System or policy problem", visitor_left: "Visitor left",
  needs_escalation: "Needs escalation", other: "Other",
};
const outcomeName = (o) => (o in OUTCOME ? t(OUTCOME[o]) : o || "—");

function recorded(r) {
  const parts = [outcomeName(r.outcome)];
  if (r.missing_documents && r.missing_documents.length) parts.push(r.missing_documents.join("; "));
  if (r.note) parts.push(`“${r.note}”`);
  return parts.join(" · ");
}

export const finished = {
  id: "finished",
  selected: null,
  init(ctx) {
    onSubmit($("finished-form"), async () => {
      await this.load(ctx);
      return "";
    });
    $("finished-new-outcome").addEventListener("change", () => this.documents());
    $("finished-cancel").addEventListener("click", () => this.close());
    const form = $("finished-correct");
    onSubmit(form, async () => {
      const service = this.selected;
      const outcome = form.elements.outcome.value;
      const body = { outcome, reason: form.elements.reason.value.trim() };
      const note = form.elements.note.value.trim();
      if (note) body.note = note;
      if (outcome === "missing_documents") {
        body.missing_documents = [...form.querySelectorAll("#finished-document-list input:checked")].map((b) => b.value);
      }
      const updated = await ctx.call("POST", ctx.base(`/tickets/${service.ticket_id}/outcome`), body);
      const message = t("{number}: outcome corrected to {outcome}.",
        { number: updated.number, outcome: outcomeName(updated.outcome) });
      form.elements.reason.value = "";
      await this.load(ctx);
      const fresh = this.rows.find((r) => r.ticket_id === service.ticket_id);
      if (fresh) await this.open(ctx, fresh, false);
      say(message);
      return message;
    });
  },
  documents() {
    const service = this.selected;
    const names = service ? service.documents : [];
    const chosen = $("finished-new-outcome").value;
    $("finished-documents").hidden = chosen !== "missing_documents" || !names.length;
    const missing = new Set(service ? service.missing_documents : []);
    $("finished-document-list").replaceChildren(...names.map((name, i) => h("div", { class: "choice" },
      h("input", { type: "checkbox", id: `finished-missing-${i}`, name: "missing", value: name,
        checked: missing.has(name) }),
      h("label", { for: `finished-missing-${i}` }, name))));
  },
  close() {
    const had = this.selected;
    this.selected = null;
    $("finished-correct").hidden = true;
    if (had) {
      const button = document.querySelector(`[data-correct-ticket="${had.ticket_id}"]`);
      if (button) button.focus();
    }
  },
  async open(ctx, service, focus = true) {
    this.selected = service;
    const tz = ctx.hall.timezone;
    const form = $("finished-correct");
    form.hidden = false;
    form.dataset.correcting = service.ticket_id;
    $("finished-correct-title").textContent = t("Correct the outcome of {number}", { number: service.number });
    $("finished-facts").replaceChildren(h("dl", { class: "facts" },
      h("dt", {}, t("Matter")), h("dd", {}, nameOf({ name_zh: service.service_zh, name_en: service.service_en })),
      h("dt", {}, t("Counter")), h("dd", {}, service.counter_number === null ? "—"
        : `${service.counter_number}${service.clerk_name ? ` · ${service.clerk_name}` : ""}`),
      h("dt", {}, t("Finished")), h("dd", {}, when(service.finished_at, tz)),
      h("dt", {}, t("Recorded outcome")), h("dd", { id: "finished-recorded" }, recorded(service)),
      ...(service.sent_to_desk
        ? [h("dt", {}, t("Desk")), h("dd", {}, t("Sent on to the desk: close its case there rather than marking it done."))]
        : [])));
    form.elements.outcome.value = service.outcome || "done";
    form.elements.note.value = service.note || "";
    this.documents();
    const changes = await ctx.get(`/tickets/${service.ticket_id}/outcome-changes`);
    $("finished-changes").replaceChildren(table(
      [t("When"), t("By"), t("Before"), t("After"), t("Why")],
      changes.map((c) => ({ cells: [when(c.changed_at, tz), c.user_name || "—", recorded(c.before), recorded(c.after), c.reason] })),
      { label: t("Corrections so far"), empty: t("Not corrected yet.") },
    ));
    if (focus) $("finished-correct-title").focus();
  },
  async load(ctx) {
    const form = $("finished-form");
    const params = new URLSearchParams({ day: form.elements.day.value });
    if (form.elements.outcome.value) params.set("outcome", form.elements.outcome.value);
    const number = form.elements.number.value.trim();
    if (number) params.set("number", number);
    this.rows = await ctx.get(`/finished?${params}`);
    const tz = ctx.hall.timezone;
    $("finished-list").replaceChildren(table(
      [t("Ticket"), t("Matter"), t("Counter"), t("Finished"), t("Outcome"), t("Corrections"), ""],
      this.rows.map((r) => {
        const button = h("button", { type: "button", class: "secondary small", "data-correct-ticket": r.ticket_id,
          "aria-label": t("Correct {number}", { number: r.number }) }, t("Correct"));
        button.addEventListener("click", () => this.open(ctx, r).catch((error) => reportTo($("finished-list"), error)));
        return {
          attrs: { "data-ticket-id": r.ticket_id },
          cells: [h("span", { class: "number" }, r.number), nameOf({ name_zh: r.service_zh, name_en: r.service_en }),
            r.counter_number === null ? "—" : `${r.counter_number}${r.clerk_name ? ` · ${r.clerk_name}` : ""}`,
            when(r.finished_at, tz), recorded(r), String(r.corrections), button],
        };
      }),
      { label: t("Finished services"), empty: t("No finished service matches.") },
    ));
    if (this.rows.length >= 500) {
      $("finished-list").append(h("p", { class: "hint" }, t("Only the latest 500 are shown: narrow the search by outcome or number.")));
    }
    if (this.selected && !this.rows.some((r) => r.ticket_id === this.selected.ticket_id)) this.close();
  },
  async show(ctx) {
    const form = $("finished-form");
    if (!form.elements.day.value) form.elements.day.value = today(ctx.hall.timezone);
    await this.load(ctx);
  },
};
