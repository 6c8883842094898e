// Come at most once: the "can't get it done" desk's cases (#cases, for managers and the
// desk's clerks) and the hall's outcomes with its one-visit rate (#outcomes, managers).
import { h, t } from "./common.js";
import { LANG, nameOf, onSubmit, reportTo, say, table, today, when } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);

const OUTCOME = {
  done: "Done", missing_documents: "Missing documents", other_department: "Needs another department",
  system_problem: "System or policy problem", visitor_left: "Visitor left",
  needs_escalation: "Needs escalation", other: "Other",
};
const STATUS = { open: "Awaiting an answer", answered: "Answered", closed: "Case closed" };
const RESOLUTION = { resolved: "Resolved", unresolved: "Not resolved" };
const outcomeName = (o) => (o in OUTCOME ? t(OUTCOME[o]) : o || "—");

function statusBadge(c) {
  const parts = [h("span", { class: `badge case-${c.status}` }, t(STATUS[c.status] || c.status))];
  if (c.overdue) parts.push(" ", h("span", { class: "badge overdue" }, t("Overdue")));
  if (c.resolution) parts.push(" ", h("span", { class: "badge" }, t(RESOLUTION[c.resolution] || c.resolution)));
  return h("span", {}, parts);
}

function ticketFacts(label, ticket, tz) {
  if (!ticket) return [];
  const facts = [
    h("dt", {}, label), h("dd", {}, `${ticket.number} · ${nameOf({ name_zh: ticket.service_zh, name_en: ticket.service_en })}`),
  ];
  if (ticket.outcome) facts.push(h("dt", {}, t("Outcome")), h("dd", {}, outcomeName(ticket.outcome)));
  if (ticket.missing_documents.length) {
    facts.push(h("dt", {}, t("Missing documents")), h("dd", {}, ticket.missing_documents.join("; ")));
  }
  if (ticket.note) facts.push(h("dt", {}, t("Clerk's note")), h("dd", {}, ticket.note));
  if (ticket.counter_number !== null) {
    facts.push(h("dt", {}, t("Counter")), h("dd", {}, `${ticket.counter_number}${ticket.clerk_name ? ` · ${ticket.clerk_name}` : ""}`));
  }
  if (ticket.finished_at) facts.push(h("dt", {}, t("Finished")), h("dd", {}, when(ticket.finished_at, tz)));
  return facts;
}

export const cases = {
  id: "cases",
  selected: null,
  init(ctx) {
    const filter = $("cases-form");
    onSubmit(filter, async () => {
      await this.load(ctx);
      return "";
    });
    onSubmit($("case-note-form"), async () => {
      const text = $("case-note-form").elements.text.value.trim();
      await this.act(ctx, "POST", "/notes", { text });
      $("case-note-form").reset();
      return t("Note added.");
    });
    onSubmit($("case-answer-form"), async () => {
      const answer = $("case-answer-form").elements.answer.value.trim();
      await this.act(ctx, "POST", "/answer", { answer });
      return t("Answer recorded: the visitor sees it with their ticket's link.");
    });
    onSubmit($("case-close-form"), async () => {
      const form = $("case-close-form");
      const body = { resolution: form.elements.resolution.value };
      const answer = form.elements.answer.value.trim();
      if (answer) body.answer = answer;
      await this.act(ctx, "POST", "/close", body);
      return t("Case closed.");
    });
    onSubmit($("case-edit-form"), async () => {
      const form = $("case-edit-form");
      const body = { promised_on: form.elements.promised_on.value };
      if (form.elements.owner_id.value) body.owner_id = Number(form.elements.owner_id.value);
      await this.act(ctx, "PATCH", "", body);
      return t("Case updated.");
    });
  },
  async act(ctx, method, path, body) {
    const updated = await ctx.call(method, ctx.base(`/cases/${this.selected}${path}`), body);
    this.render(ctx, updated);
    await this.load(ctx, false);
    say(t("Case {id}: {status}.", { id: updated.id, status: t(STATUS[updated.status]) }));
  },
  async load(ctx, keepDetail = true) {
    const form = $("cases-form");
    const status = form.elements.status.value;
    const query = status === "overdue" ? "?overdue=true" : status ? `?status=${status}` : "";
    const list = await ctx.get(`/cases${query}`);
    const lang = LANG === "zh" ? "zh_CN" : "en";
    for (const format of ["csv", "xlsx"]) $(`cases-${format}`).href = ctx.base(`/cases/export?format=${format}&lang=${lang}`);
    const tz = ctx.hall.timezone;
    $("cases-list").replaceChildren(table(
      [t("Case"), t("Ticket"), t("Matter"), t("Status"), t("Owner"), t("Answer promised by"), t("Opened")],
      list.map((c) => ({
        attrs: { "data-case-id": c.id, class: c.overdue ? "overdue-row" : "" },
        cells: [
          h("button", { type: "button", class: "link", "data-open-case": c.id, "aria-label": t("Show case {id}", { id: c.id }) }, `#${c.id}`),
          h("span", { class: "number" }, c.ticket.number),
          nameOf({ name_zh: c.service_zh, name_en: c.service_en }),
          statusBadge(c), c.owner_name || "—", c.promised_on, when(c.opened_at, tz),
        ],
      })),
      { label: t("Desk cases"), empty: t("No cases.") },
    ));
    for (const button of document.querySelectorAll("[data-open-case]")) {
      button.addEventListener("click", () => this.open(ctx, Number(button.dataset.openCase)));
    }
    if (keepDetail && this.selected && !list.some((c) => c.id === this.selected)) this.close();
  },
  async open(ctx, id) {
    try {
      const found = await ctx.get(`/cases/${id}`);
      this.render(ctx, found);
      $("case-detail-title").focus();
    } catch (error) {
      reportTo($("cases-list"), error);
    }
  },
  close() {
    this.selected = null;
    $("case-detail").hidden = true;
  },
  async owners(ctx) {
    if (this.staff !== undefined) return this.staff;
    try {
      this.staff = (await ctx.get("/staff")).filter((s) => s.active);
    } catch (error) {
      this.staff = null; // a clerk may not list the staff: the owner stays as it is
    }
    return this.staff;
  },
  async render(ctx, c) {
    this.selected = c.id;
    const tz = ctx.hall.timezone;
    $("case-detail").hidden = false;
    $("case-detail").dataset.caseId = c.id;
    $("case-detail-title").textContent = t("Case {id}", { id: c.id });
    const facts = [
      h("dt", {}, t("Status")), h("dd", { id: "case-detail-status" }, statusBadge(c)),
      h("dt", {}, t("Matter not done")), h("dd", {}, nameOf({ name_zh: c.service_zh, name_en: c.service_en })),
      h("dt", {}, t("Summary")), h("dd", {}, c.summary),
      h("dt", {}, t("Owner")), h("dd", {}, c.owner_name || "—"),
      h("dt", {}, t("Answer promised by")), h("dd", {}, c.promised_on),
      h("dt", {}, t("Opened")), h("dd", {}, when(c.opened_at, tz)),
      ...ticketFacts(t("Not done at"), c.origin, tz),
      ...ticketFacts(t("Desk ticket"), c.ticket, tz),
    ];
    if (c.answer) facts.push(h("dt", {}, t("Answer")), h("dd", { id: "case-detail-answer" }, c.answer));
    $("case-facts").replaceChildren(h("dl", { class: "facts" }, facts));
    $("case-notes").replaceChildren(c.notes.length
      ? h("ol", { class: "notes" }, c.notes.map((n) => h("li", {},
        h("span", { class: "when" }, `${when(n.at, tz)} · ${n.user_name || "—"}: `), n.text)))
      : h("p", { class: "empty" }, t("No notes yet.")));
    const closed = c.status === "closed";
    $("case-answer-form").hidden = c.status !== "open";
    $("case-close-form").hidden = closed;
    $("case-edit-form").hidden = closed;
    $("case-note-form").hidden = false;
    const edit = $("case-edit-form");
    edit.elements.promised_on.value = c.promised_on;
    edit.elements.promised_on.min = today(tz);
    const staff = await this.owners(ctx);
    const owner = edit.elements.owner_id;
    owner.closest(".field").hidden = !staff;
    if (staff) {
      owner.replaceChildren(h("option", { value: "" }, t("(unchanged)")),
        ...staff.map((s) => h("option", { value: s.id }, s.display_name || s.username)));
    }
  },
  async show(ctx) {
    await this.load(ctx);
  },
};

function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`;
}

function pairs(items, name = (x) => x) {
  return items.length ? items.map(([what, n]) => `${name(what)} (${n})`).join("; ") : "—";
}

let chartLibrary = null;
const uPlotClass = () => (chartLibrary ??= import("/static/vendor/uplot/uPlot.esm.js").then((m) => m.default));
let outcomesChart = null;

/** Bars per matter: the share done in one visit and the share of services not done. The
 *  table below holds the same figures (screen readers read it; the chart is hidden). */
async function drawOutcomes(report) {
  const box = $("outcomes-chart");
  if (outcomesChart) outcomesChart.destroy();
  outcomesChart = null;
  box.replaceChildren();
  const matters = report.matters.filter((m) => m.served > 0);
  if (!matters.length) return;
  const uPlot = await uPlotClass();
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 18;
  const width = Math.max(200, Math.floor(box.clientWidth || 600));
  const font = `${Math.round(rem * 0.85)}px "Noto Sans CJK SC", "WenQuanYi Zen Hei", system-ui, sans-serif`;
  const axis = { font, labelFont: font, stroke: "#111111", grid: { stroke: "#d0d0d0", width: 1 } };
  const bars = uPlot.paths.bars({ size: [0.35, 60], align: 0 });
  const names = matters.map((m) => nameOf(m));
  const xs = matters.map((_, i) => i);
  const oneVisit = matters.map((m) => (m.one_visit_rate === null ? null : Math.round(m.one_visit_rate * 1000) / 10));
  const notDone = matters.map((m) => Math.round(((m.served - m.done) / m.served) * 1000) / 10);
  outcomesChart = new uPlot({
    width, height: Math.round(Math.min(Math.max(width * 0.4, rem * 13), rem * 20)),
    legend: { show: false }, cursor: { show: false },
    scales: { x: { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] }, y: { range: [0, 100] } },
    series: [{},
      { label: t("Done in one visit"), fill: "#1d4ed8", stroke: "#1d4ed8", paths: bars, points: { show: false } },
      { label: t("Not done"), fill: "#b45309", stroke: "#b45309", paths: uPlot.paths.bars({ size: [0.35, 60], align: 1 }), points: { show: false } }],
    axes: [
      { ...axis, size: Math.round(rem * 2.6), incrs: [1], values: (u, splits) => splits.map((v) => names[v] ?? "") },
      { ...axis, label: t("Share of services, percent"), size: Math.round(rem * 3.4) },
    ],
  }, [xs, oneVisit, notDone], box);
}

export const outcomes = {
  id: "outcomes",
  init(ctx) {
    onSubmit($("outcomes-form"), async () => {
      await this.load(ctx);
      return "";
    });
  },
  async load(ctx) {
    const form = $("outcomes-form");
    const query = `?from=${form.elements.from.value}&to=${form.elements.to.value}`;
    const r = await ctx.get(`/reports/outcomes${query}`);
    const lang = LANG === "zh" ? "zh_CN" : "en";
    for (const format of ["csv", "xlsx"]) {
      $(`outcomes-${format}`).href = ctx.base(`/reports/outcomes/export${query}&format=${format}&lang=${lang}`);
    }
    const tile = (label, value, id) => h("div", { class: "tile" }, h("dt", {}, label), h("dd", { class: "big", id }, value));
    $("outcomes-summary").replaceChildren(h("dl", { class: "tiles" },
      tile(t("Done in one visit"), percent(r.total.one_visit_rate), "one-visit-rate"),
      tile(t("Services"), String(r.total.served)),
      tile(t("Repeat visits"), String(r.total.repeat_visits)),
      tile(t("Desk cases opened"), String(r.desk.opened)),
      tile(t("Resolved by the desk"), String(r.desk.resolved)),
      tile(t("Cases overdue now"), String(r.desk.overdue_now))));
    await drawOutcomes(r).catch((error) => console.error(error));
    $("outcomes-reasons").textContent = t("Most frequent reasons for not done: {reasons}",
      { reasons: pairs(r.top_reasons, outcomeName) });
    $("outcomes-list").replaceChildren(table(
      [t("Matter"), t("Services"), t("Done"), t("Done in one visit"), t("Repeat visits"),
        t("Visitor known"), t("Not done, by reason"), t("Documents most often missing")],
      [...r.matters, r.total].map((m) => ({
        attrs: { "data-service-id": m.service_id ?? "all" },
        cells: [nameOf(m), String(m.served), String(m.done), percent(m.one_visit_rate),
          String(m.repeat_visits), String(m.identified),
          pairs(Object.entries(m.by_outcome).filter(([o]) => o !== "done").sort((a, b) => b[1] - a[1]), outcomeName),
          pairs(m.missing_documents)],
      })),
      { label: t("Outcomes by matter") },
    ));
    const days = await ctx.get("/reports/daily");
    $("daily-list").replaceChildren(...(days.length
      ? days.map((d) => h("li", {}, h("a", { href: ctx.base(`/reports/daily/${d.day}?format=xlsx&lang=${lang}`), download: "" }, d.day)))
      : [h("li", { class: "empty" }, t("No daily report yet: the day-close job writes one when it closes each day."))]));
    $("outcomes-window").textContent = t("A visit is a repeat when the same visitor came for the same matter within {n} days before (the hall's setting).", { n: r.repeat_window_days });
  },
  async show(ctx) {
    const form = $("outcomes-form");
    const tz = ctx.hall.timezone;
    if (!form.elements.to.value) form.elements.to.value = today(tz);
    if (!form.elements.from.value) {
      const end = new Date(`${form.elements.to.value}T12:00:00Z`);
      form.elements.from.value = new Date(end.getTime() - 29 * 86400000).toISOString().slice(0, 10);
    }
    await this.load(ctx);
  },
};

const DELIVERY = { pending: "Waiting to be sent", delivered: "Delivered", failed: "Failed" };

export const hooks = {
  id: "webhooks",
  selected: null,
  init(ctx) {
    const form = $("webhook-form");
    onSubmit(form, async () => {
      const text = form.elements.events.value.trim();
      const events = text ? text.split(/[\s,，]+/).filter(Boolean) : ["*"];
      const made = await ctx.call("POST", ctx.base("/webhooks"), { url: form.elements.url.value.trim(), events });
      form.reset();
      await this.show(ctx);
      return t("Webhook {id} added. Its signing secret: {secret}", { id: made.id, secret: made.secret });
    });
  },
  async act(ctx, hook, method, body) {
    const region = $("webhook-messages");
    try {
      await ctx.call(method, ctx.base(`/webhooks/${hook.id}`), body);
      await this.show(ctx);
    } catch (error) {
      reportTo(region, error);
    }
  },
  async deliveries(ctx, hook) {
    this.selected = hook;
    const tz = ctx.hall.timezone;
    const list = await ctx.get(`/webhooks/${hook.id}/deliveries`);
    $("webhook-log-title").textContent = t("Deliveries to {url}", { url: hook.url });
    $("webhook-log").hidden = false;
    $("webhook-log-list").replaceChildren(table(
      [t("Event"), t("State"), t("Attempts"), t("Last answer"), t("Created"), ""],
      list.map((d) => {
        const replay = h("button", { type: "button", class: "secondary small",
          "aria-label": t("Send again: delivery {id}", { id: d.id }) }, t("Send again"));
        replay.addEventListener("click", async () => {
          try {
            await ctx.call("POST", ctx.base(`/webhooks/${hook.id}/deliveries/${d.id}/replay`));
            say(t("Delivery {id} will be sent again.", { id: d.id }));
            await this.deliveries(ctx, hook);
          } catch (error) {
            reportTo($("webhook-messages"), error);
          }
        });
        return {
          attrs: { "data-delivery-id": d.id, class: d.state === "failed" ? "overdue-row" : "" },
          cells: [`#${d.event_seq} ${d.event_name}`, t(DELIVERY[d.state] || d.state), String(d.attempts),
            d.last_status !== null ? String(d.last_status) : d.last_error || "—", when(d.created_at, tz), replay],
        };
      }),
      { label: t("Deliveries"), empty: t("Nothing sent yet.") },
    ));
    $("webhook-log-title").focus();
  },
  async show(ctx) {
    const list = await ctx.get("/webhooks");
    $("webhooks-list").replaceChildren(table(
      [t("Address"), t("Events"), t("State"), t("Secret"), ""],
      list.map((w) => {
        const toggle = h("button", { type: "button", class: "secondary small" }, w.active ? t("Pause sending") : t("Resume sending"));
        toggle.addEventListener("click", () => this.act(ctx, w, "PATCH", { active: !w.active }));
        const log = h("button", { type: "button", class: "secondary small" }, t("Deliveries"));
        log.addEventListener("click", () => this.deliveries(ctx, w).catch((e) => reportTo($("webhook-messages"), e)));
        const remove = h("button", { type: "button", class: "danger small" }, t("Remove"));
        remove.addEventListener("click", () => this.act(ctx, w, "DELETE"));
        return {
          attrs: { "data-webhook-id": w.id },
          cells: [h("code", { class: "mono wrap" }, w.url), w.events.join(", "),
            w.active ? t("Active") : t("Paused"), h("code", { class: "mono wrap" }, w.secret),
            h("span", { class: "row" }, log, toggle, remove)],
        };
      }),
      { label: t("Webhooks"), empty: t("No webhooks yet.") },
    ));
    if (this.selected && !list.some((w) => w.id === this.selected.id)) $("webhook-log").hidden = true;
  },
};
