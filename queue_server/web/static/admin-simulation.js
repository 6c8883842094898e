// The hall's simulations: the last one kept (what it was made from, its goals table, the
// walk-ins' waits by hour of arrival as a chart and as a table) and a new run from the
// hall's own history, followed on the status endpoint until it ends. The chart is uPlot,
// vendored from the npm registry under /static/vendor/uplot/ (no build step), loaded when
// the section first draws one.
import { ApiError, clock, h, t } from "./common.js";
import { onSubmit, reportTo, say, table, when } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1500;
// AA-contrast line colours on white; the p90 line of each policy is dashed.
const COLOURS = { v2: "#0b4f9c", fifo: "#8a4b00", v1: "#5c2d91" };
const SPARE_COLOURS = ["#00626b", "#111111", "#a4000f"];

const sim = { ctx: null, hallId: null, timer: null, result: null, chart: null, drawn: "", observers: [] };
let chartLibrary = null;

function uPlotClass() {
  chartLibrary ??= import("/static/vendor/uplot/uPlot.esm.js").then((module) => module.default);
  return chartLibrary;
}

function policyName(name) {
  return { v2: t("OneDoor v2"), v1: t("OneDoor v1"), fifo: t("First come, first served (FIFO)") }[name] || name;
}

function figureName(key, label) {
  return {
    walkin_p90_vs_fifo: t("Walk-ins' 90th-percentile wait, compared with FIFO (ratio)"),
    ordinary_max_vs_fifo: t("Longest wait of a walk-in without priority, compared with FIFO (ratio)"),
    booked_on_time: t("Booked visitors who came on time, called within 5 min of their slot"),
    priority_ratio: t("Priority walk-ins' mean wait ÷ other walk-ins'"),
    estimate_mae: t("Wait told on the ticket: mean error either way (min)"),
    estimate_bias: t("Wait told on the ticket: bias (min, told − waited)"),
    estimate_mse_ratio: t("Wait told on the ticket: squared error ÷ a rolling average's"),
    band_coverage: t("Told range holds the real wait"),
    walkin_mean: t("Walk-ins' mean wait (min)"),
    walkin_p90: t("Walk-ins' 90th-percentile wait (min)"),
    ordinary_max: t("Longest wait of a walk-in without priority (min)"),
    transfer_mean: t("Transferred visitors' mean wait (min)"),
    band_width: t("Width of the told range (min)"),
    unserved: t("Visitors not served by closing"),
    overtime: t("Service after closing (min)"),
    walk_ins: t("Walk-ins a day"),
    booked: t("Booked visitors a day (checked in)"),
  }[key] || label;
}

function colourOf(name, index) {
  return COLOURS[name] || SPARE_COLOURS[index % SPARE_COLOURS.length];
}

/** "1.40 ± 0.68", "96.6% ± 2.1", or "—" for a figure the days did not give. */
function interval(figure, format) {
  if (!figure || figure.mean === null || figure.mean === undefined) return "—";
  const { percent = false, digits = 2 } = format || {};
  const scale = percent ? 100 : 1;
  const mean = `${(figure.mean * scale).toFixed(digits)}${percent ? "%" : ""}`;
  if (figure.ci95 === null || figure.ci95 === undefined) return mean;
  return `${mean} ± ${(figure.ci95 * scale).toFixed(digits)}`;
}

function goalText(text) {
  return text.startsWith("within ") ? t("within {range}", { range: text.slice("within ".length) }) : text;
}

function verdict(met) {
  if (met === true) return h("span", { class: "verdict yes" }, h("span", { "aria-hidden": "true" }, "✓ "), t("Yes"));
  if (met === false) return h("span", { class: "verdict no" }, h("span", { "aria-hidden": "true" }, "✗ "), t("No"));
  return h("span", { class: "verdict none" }, t("Not measured"));
}

function minutesText(value) {
  return value === null || value === undefined ? "—" : value.toFixed(1);
}

function hourText(hour) {
  return `${String(hour).padStart(2, "0")}:00`;
}

// ---------------------------------------------------------------- what was made, and the goals

function renderMade(result) {
  const tz = sim.ctx.hall.timezone;
  const seeds = result.seeds || [];
  const scenario = result.scenario || {};
  const facts = [
    [t("Made"), when(result.created_at, tz)],
    [t("Made from"), result.history
      ? t("This hall's configuration now and its last {days} days", { days: result.history.days })
      : t("A scenario file")],
    [t("Scenario"), scenario.name || "—"],
    [t("Simulated days"), seeds.length
      ? t("{n} (seeds {first}–{last})", { n: seeds.length, first: seeds[0], last: seeds[seeds.length - 1] })
      : "—"],
  ];
  if (scenario.visits !== null && scenario.visits !== undefined) facts.push([t("Visitors a day"), String(scenario.visits)]);
  if (scenario.load !== null && scenario.load !== undefined) {
    facts.push([t("Load"), t("{share} of what the counters can serve", { share: `${Math.round(scenario.load * 100)}%` })]);
  }
  facts.push([t("Counters"), String(scenario.counters ?? "—")]);
  facts.push([t("Matters"), (scenario.matters || []).join(", ") || "—"]);
  $("simulation-made").replaceChildren(h("dl", { class: "facts" },
    facts.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value)))));
}

function renderGoals(result) {
  const names = Object.keys(result.policies || {});
  const first = names[0];
  const formats = result.figure_formats || {};
  const figures = (name) => (result.policies[name] || {}).figures || {};
  const goals = result.goals || {};
  const goalRows = Object.entries(goals).map(([key, goal]) => ({
    attrs: { "data-figure": key, "data-met": String(goal.met) },
    cells: [figureName(key, goal.label),
      ...names.map((name) => h("span", { class: "figure" }, interval(figures(name)[key], formats[key]))),
      goalText(goal.goal), verdict(goal.met)],
  }));
  $("simulation-goals").replaceChildren(table(
    [t("Figure"), ...names.map(policyName), t("Goal"), t("Goal met by {policy}", { policy: policyName(first) })],
    goalRows,
    { label: t("Goals"), empty: t("This simulation has no goals.") },
  ));
  const others = Object.entries(figures(first))
    .filter(([key]) => !(key in goals))
    .filter(([key]) => names.some((name) => figures(name)[key] && figures(name)[key].mean !== null));
  $("simulation-figures").replaceChildren(table(
    [t("Figure"), ...names.map(policyName)],
    others.map(([key, figure]) => ({
      attrs: { "data-figure": key },
      cells: [figureName(key, figure.label),
        ...names.map((name) => h("span", { class: "figure" }, interval(figures(name)[key], formats[key])))],
    })),
    { label: t("More figures"), empty: t("No further figures.") },
  ));
}

// ---------------------------------------------------------------- waits by hour

function hourly(result) {
  const names = Object.keys(result.policies || {});
  const byPolicy = new Map(names.map((name) => [name,
    new Map(((result.policies[name] || {}).hourly || []).map((row) => [row.hour, row]))]));
  const hours = [...new Set([...byPolicy.values()].flatMap((rows) => [...rows.keys()]))].sort((a, b) => a - b);
  return { names, byPolicy, hours };
}

function renderHourlyText(result) {
  const { names, byPolicy, hours } = hourly(result);
  const first = byPolicy.get(names[0]) || new Map();
  $("simulation-hourly").replaceChildren(table(
    [t("Hour of arrival"), t("Walk-ins a day"),
      ...names.flatMap((name) => [
        t("{policy}: mean wait (min)", { policy: policyName(name) }),
        t("{policy}: 90th-percentile wait (min)", { policy: policyName(name) }),
      ])],
    hours.map((hour) => ({
      attrs: { "data-hour": hour },
      cells: [hourText(hour), minutesText((first.get(hour) || {}).walk_ins),
        ...names.flatMap((name) => {
          const row = byPolicy.get(name).get(hour) || {};
          return [minutesText(row.mean_wait), minutesText(row.p90_wait)];
        })],
    })),
    { label: t("Walk-ins' waits by hour of arrival, as a table"), empty: t("No walk-ins were simulated."), cards: false },
  ));
  const lines = names.map((name) => {
    const rows = [...byPolicy.get(name).values()].filter((row) => row.mean_wait !== null);
    if (!rows.length) return t("{policy}: no walk-in waited.", { policy: policyName(name) });
    const worst = rows.reduce((a, b) => (b.mean_wait > a.mean_wait ? b : a));
    return t("{policy}: walk-ins who came at {hour} waited longest, {mean} min on average and {p90} min at the 90th percentile.", {
      policy: policyName(name), hour: hourText(worst.hour), mean: minutesText(worst.mean_wait), p90: minutesText(worst.p90_wait),
    });
  });
  $("simulation-chart-summary").textContent = [...lines, t("The table below has every hour.")].join(" ");
  $("simulation-legend").replaceChildren(...names.flatMap((name, i) => [
    h("li", {}, h("span", { class: "swatch", "aria-hidden": "true", style: `border-top-color: ${colourOf(name, i)}` }),
      t("{policy}: mean wait", { policy: policyName(name) })),
    h("li", {}, h("span", { class: "swatch dashed", "aria-hidden": "true", style: `border-top-color: ${colourOf(name, i)}` }),
      t("{policy}: 90th-percentile wait", { policy: policyName(name) })),
  ]));
}

/** Draw (again) at the box's width and the page's text size: the larger-text switch and
 *  the browser's zoom make the axes' words larger too. */
async function drawChart() {
  const box = $("simulation-chart");
  const result = sim.result;
  const width = Math.floor(box.clientWidth);
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 18;
  const key = `${width}:${rem}:${result ? result.id : ""}`;
  if (key === sim.drawn) return;
  sim.drawn = key;
  const { names, byPolicy, hours } = result ? hourly(result) : { hours: [] };
  const uPlot = result && width >= 50 && hours.length ? await uPlotClass() : null;
  if (key !== sim.drawn) return; // drawn again meanwhile, at another size
  if (sim.chart) sim.chart.destroy();
  sim.chart = null;
  box.replaceChildren();
  if (!uPlot) return;
  const font = `${Math.round(rem * 0.85)}px "Noto Sans CJK SC", "WenQuanYi Zen Hei", system-ui, sans-serif`;
  const labelFont = `600 ${Math.round(rem * 0.9)}px "Noto Sans CJK SC", "WenQuanYi Zen Hei", system-ui, sans-serif`;
  const axis = {
    font, labelFont, stroke: "#111111", labelSize: Math.round(rem * 1.6),
    grid: { stroke: "#d0d0d0", width: 1 }, ticks: { stroke: "#767676", width: 1 },
  };
  const series = [{}];
  const data = [hours];
  names.forEach((name, i) => {
    const rows = byPolicy.get(name);
    const stroke = colourOf(name, i);
    series.push({ label: t("{policy}: mean wait", { policy: policyName(name) }), stroke, width: 3, points: { show: true, size: 7, fill: stroke } });
    series.push({ label: t("{policy}: 90th-percentile wait", { policy: policyName(name) }), stroke, width: 2, dash: [10, 6], points: { show: false } });
    data.push(hours.map((hour) => (rows.get(hour) || {}).mean_wait ?? null));
    data.push(hours.map((hour) => (rows.get(hour) || {}).p90_wait ?? null));
  });
  const height = Math.round(Math.min(Math.max(width * 0.5, rem * 15), rem * 24));
  sim.chart = new uPlot({
    width, height, series,
    legend: { show: false },
    cursor: { show: false },
    scales: {
      x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] },
      y: { range: (u, min, max) => [0, Math.max(5, Math.ceil((max || 0) * 1.1))] },
    },
    axes: [
      { ...axis, label: t("Hour of arrival"), size: Math.round(rem * 2.6), space: Math.round(rem * 3.5),
        incrs: [1, 2, 3, 4, 6, 12], values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? hourText(v) : "")) },
      { ...axis, label: t("Minutes waited"), size: Math.round(rem * 3.4), space: Math.round(rem * 2.2) },
    ],
  }, data, box);
}

function watchSize() {
  if (sim.observers.length) return;
  let pending = 0;
  const redraw = () => {
    window.cancelAnimationFrame(pending);
    pending = window.requestAnimationFrame(() => { if (sim.hallId !== null) draw(); });
  };
  const resize = new ResizeObserver(redraw);
  resize.observe($("simulation-chart-box"));
  const text = new MutationObserver(redraw);
  text.observe(document.documentElement, { attributes: true, attributeFilter: ["class"] });
  sim.observers = [resize, text];
}

/** Draw the chart; if it cannot be drawn, say so: the table has the same figures. */
function draw() {
  drawChart().catch((error) => {
    console.error(error);
    sim.drawn = "";
    $("simulation-chart").replaceChildren(h("p", { class: "empty" },
      t("The chart could not be drawn; the table below has the same figures.")));
  });
}

function render() {
  const result = sim.result;
  $("simulation-empty").hidden = Boolean(result);
  $("simulation-result").hidden = !result;
  if (!result) {
    if (sim.chart) sim.chart.destroy();
    sim.chart = null;
    sim.drawn = "";
    $("simulation-chart").replaceChildren();
    return;
  }
  renderMade(result);
  renderGoals(result);
  renderHourlyText(result);
  draw();
}

async function loadResult() {
  const hallId = sim.hallId;
  let result = null;
  try {
    result = await sim.ctx.get("/simulation");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  if (hallId !== sim.hallId) return;
  sim.result = result;
  render();
}

// ---------------------------------------------------------------- running a simulation

function showProgress(status) {
  const line = $("simulation-progress");
  const tz = sim.ctx.hall.timezone;
  line.dataset.state = status.state;
  if (status.state === "running") {
    line.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }),
      t("Running… started at {time} from the last {days} days. The figures below change when it is done.", {
        time: clock(status.started_at, tz), days: status.days,
      }));
  } else if (status.state === "failed") {
    // The command's own words (English); a history too thin to measure is said in the page's too.
    const thin = (status.detail || "").startsWith("history: ");
    line.replaceChildren(h("strong", {}, t("Failed:")), " ",
      thin ? `${t("the hall's history is not enough to simulate from yet.")} ` : "",
      status.detail || t("no reason was given."));
  } else if (status.state === "done") {
    line.replaceChildren(h("strong", {}, t("Done:")), " ",
      t("the simulation started at {time} is shown below.", { time: clock(status.started_at, tz) }));
  } else {
    line.replaceChildren();
  }
}

function schedule() {
  window.clearTimeout(sim.timer);
  sim.timer = window.setTimeout(() => { poll().catch((error) => console.error(error)); }, POLL_MS);
}

async function poll() {
  const hallId = sim.hallId;
  if (hallId === null) return;
  let status;
  try {
    status = await sim.ctx.get("/simulation/status");
  } catch (error) {
    if (hallId !== sim.hallId) return;
    reportTo($("simulation-poll-error"), error);
    schedule();
    return;
  }
  if (hallId !== sim.hallId) return;
  $("simulation-poll-error").replaceChildren();
  showProgress(status);
  if (status.state === "running") {
    schedule();
  } else if (status.state === "done") {
    await loadResult();
    say(t("The simulation is done; its figures are shown."));
  } else if (status.state === "failed") {
    say(t("The simulation failed: {reason}", { reason: status.detail }));
  }
}

export const simulation = {
  id: "simulation",
  init(ctx) {
    const form = $("simulation-form");
    onSubmit(form, async () => {
      let status;
      try {
        status = await ctx.call("POST", ctx.base("/simulation"), { days: Number(form.elements.days.value) });
      } catch (error) {
        if (error instanceof ApiError && error.status === 409) schedule(); // follow the run going
        throw error;
      }
      showProgress(status);
      if (status.state === "running") {
        say(t("The simulation has started; this page follows it."));
        schedule();
      }
      return "";
    });
  },
  async show(ctx) {
    this.hide();
    sim.ctx = ctx;
    sim.hallId = ctx.hallId;
    sim.result = null;
    sim.drawn = "";
    for (const element of document.querySelectorAll("#section-simulation .hall-id")) element.textContent = String(ctx.hallId);
    watchSize();
    const [status] = await Promise.all([ctx.get("/simulation/status"), loadResult()]);
    showProgress(status);
    if (status.state === "running") schedule();
  },
  hide() {
    window.clearTimeout(sim.timer);
    sim.hallId = null;
    for (const observer of sim.observers) observer.disconnect();
    sim.observers = [];
  },
};
