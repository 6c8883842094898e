// The hall's audit log (#audit, managers): a range of days and an action, the entries
// newest first with what changed, and the same as CSV or XLSX. Read-only.
import { h, t } from "./common.js";
import { onSubmit, table, today, when } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);

function changes(before, after) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])];
  if (!keys.length) return "—";
  const shown = (v) => (v === undefined || v === null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
  return h("ul", { class: "plain changes" }, keys.map((k) => h("li", {},
    h("code", {}, k), ": ", before ? `${shown(before[k])} → ` : "", after ? shown(after[k]) : t("removed"))));
}

export const auditLog = {
  id: "audit",
  init(ctx) {
    onSubmit($("audit-form"), async () => {
      await this.load(ctx);
      return "";
    });
  },
  async load(ctx) {
    const form = $("audit-form");
    const params = new URLSearchParams({ from: form.elements.from.value, to: form.elements.to.value });
    const action = form.elements.action.value.trim();
    if (action) params.set("action", action);
    const entries = await ctx.get(`/audit?${params}`);
    for (const format of ["csv", "xlsx"]) $(`audit-${format}`).href = ctx.base(`/audit/export?${params}&format=${format}`);
    const tz = ctx.hall.timezone;
    $("audit-list").replaceChildren(table(
      [t("When"), t("Actor"), t("Address"), t("Action"), t("Target"), t("Changes")],
      entries.map((e) => ({
        attrs: { "data-audit-id": e.id },
        cells: [when(e.at, tz), e.actor, e.address || "—", e.action, e.target, changes(e.before, e.after)],
      })),
      { label: t("Audit log"), empty: t("Nothing was logged in these days.") },
    ));
    if (entries.length >= 1000) {
      $("audit-list").append(h("p", { class: "hint" }, t("Only the latest 1,000 are shown: narrow the days or the action.")));
    }
  },
  async show(ctx) {
    const form = $("audit-form");
    const tz = ctx.hall.timezone;
    if (!form.elements.to.value) form.elements.to.value = today(tz);
    if (!form.elements.from.value) {
      const end = new Date(`${form.elements.to.value}T12:00:00Z`);
      form.elements.from.value = new Date(end.getTime() - 6 * 86400000).toISOString().slice(0, 10);
    }
    await this.load(ctx);
  },
};
