// The hall's statistics (#statistics): a date range, a grouping and filters; the table, a
// chart of its waits drawn with the vendored uPlot, and the table as CSV or XLSX. The chart only repeats the table's figures, so it is hidden from screen readers.
import { h, t } from "./common.js";
import { LANG, nameOf, onSubmit, today } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);
let chartLibrary = null;
const uPlotClass = () => (chartLibrary ??= import("/static/vendor/uplot/uPlot.esm.js").then((m) => m.default));

const COLUMNS = [
  ["tickets", "Tickets"], ["served", "Served"], ["no_shows", "No-shows"],
  ["wait_p50", "Wait p50 (min)"], ["wait_p90", "Wait p90 (min)"],
  ["service_p50", "Service p50 (min)"], ["service_p90", "Service p90 (min)"],
  ["booked", "From bookings"], ["booked_no_shows", "Booked no-shows"],
  ["rating_average", "Average rating"],
];

const state = { chart: null, stats: null };

function query(form, extra = {}) {
  const params = new URLSearchParams({ from: form.elements.from.value, to: form.elements.to.value,
    by: form.elements.by.value });
  if (form.elements.service_id.value) params.set("service_id", form.elements.service_id.value);
  if (form.elements.channel.value) params.set("channel", form.elements.channel.value);
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  return params.toString();
}

const shown = (v) => (v === null || v === undefined ? "—" : String(v));
const label = (row) => (LANG === "zh" ? row.label_zh : row.label_en);

/** Waits on a chart: a line over the hours or days, bars per matter, counter, clerk or
 *  channel; the median solid, the 90th percentile beside it. */
async function drawChart(stats) {
  const box = $("statistics-chart");
  if (state.chart) state.chart.destroy();
  state.chart = null;
  box.replaceChildren();
  if (!stats.rows.length) return;
  const timeline = ["hour", "day"].includes(stats.by);
  const uPlot = await uPlotClass();
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 18;
  const width = Math.max(200, Math.floor(box.clientWidth || 600));
  const font = `${Math.round(rem * 0.85)}px "Noto Sans CJK SC", "WenQuanYi Zen Hei", system-ui, sans-serif`;
  const axis = { font, labelFont: font, stroke: "#111111", grid: { stroke: "#d0d0d0", width: 1 } };
  const names = stats.rows.map((r) => (timeline ? r.key : label(r)));
  const xs = names.map((_, i) => i);
  const p50 = { label: t("Wait p50 (min)"), stroke: "#1d4ed8" };
  const p90 = { label: t("Wait p90 (min)"), stroke: "#b45309" };
  const series = timeline
    ? [{ ...p50, width: 3, points: { show: true, size: 7, fill: "#1d4ed8" } },
      { ...p90, width: 2, dash: [10, 6], points: { show: true, size: 5 } }]
    : [{ ...p50, fill: "#1d4ed8", paths: uPlot.paths.bars({ size: [0.35, 60], align: 0 }), points: { show: false } },
      { ...p90, fill: "#b45309", paths: uPlot.paths.bars({ size: [0.35, 60], align: 1 }), points: { show: false } }];
  const xLabel = { hour: t("Hour issued"), day: t("Day") }[stats.by] || "";
  state.chart = new uPlot({
    width, height: Math.round(Math.min(Math.max(width * 0.45, rem * 14), rem * 22)),
    legend: { show: false }, cursor: { show: false },
    scales: { x: { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] },
      y: { range: (u, min, max) => [0, Math.max(5, Math.ceil((max || 0) * 1.1))] } },
    series: [{}, ...series],
    axes: [
      { ...axis, label: xLabel, size: Math.round(rem * 2.6), incrs: timeline ? [1, 2, 3, 5, 7, 14] : [1],
        values: (u, splits) => splits.map((v) => (Number.isInteger(v) && names[v] !== undefined ? names[v] : "")) },
      { ...axis, label: t("Minutes waited"), size: Math.round(rem * 3.4) },
    ],
  }, [xs, stats.rows.map((r) => r.wait_p50), stats.rows.map((r) => r.wait_p90)], box);
  box.dataset.kind = timeline ? "lines" : "bars";
}

export const statistics = {
  id: "statistics",
  init(ctx) {
    const form = $("statistics-form");
    onSubmit(form, async () => {
      await this.load(ctx);
      return "";
    });
  },
  async load(ctx) {
    const form = $("statistics-form");
    const stats = await ctx.get(`/statistics?${query(form)}`);
    state.stats = stats;
    const rows = [...stats.rows, stats.total];
    const headers = [t("Group"), ...COLUMNS.map(([, name]) => t(name))];
    const table = h("table", { class: "compact", id: "statistics-table" },
      h("caption", {}, t("{from} to {to}", { from: stats.start, to: stats.end })),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", { "data-key": r.key, class: r.key === "all" ? "total" : "" },
        h("th", { scope: "row" }, label(r)), COLUMNS.map(([key]) => h("td", {}, shown(r[key])))))));
    $("statistics-list").replaceChildren(h("div", { class: "table-wrap plain-table", role: "region",
      "aria-label": t("Statistics"), tabindex: "0" }, table));
    const lang = LANG === "zh" ? "zh_CN" : "en";
    for (const format of ["csv", "xlsx"]) {
      $(`statistics-${format}`).href = ctx.base(`/statistics/export?${query(form, { format, lang })}`);
    }
    await drawChart(stats).catch((error) => {
      console.error(error);
      $("statistics-chart").replaceChildren(h("p", { class: "empty" },
        t("The chart could not be drawn; the table below has the same figures.")));
    });
  },
  async show(ctx) {
    const form = $("statistics-form");
    const tz = ctx.hall.timezone;
    if (!form.elements.to.value) form.elements.to.value = today(tz);
    if (!form.elements.from.value) {
      const end = new Date(`${form.elements.to.value}T12:00:00Z`);
      form.elements.from.value = new Date(end.getTime() - 29 * 86400000).toISOString().slice(0, 10);
    }
    const matters = await ctx.get("/services");
    const select = form.elements.service_id;
    const chosen = select.value;
    select.replaceChildren(h("option", { value: "" }, t("All matters")),
      ...matters.map((s) => h("option", { value: s.id }, `${s.prefix} ${nameOf(s)}`)));
    select.value = chosen;
    await this.load(ctx);
  },
};
