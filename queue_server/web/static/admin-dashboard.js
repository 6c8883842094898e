// The live dashboard: waiting per matter, every counter, recent calls and alerts. The board
// feed (/ws/halls/{id}/board) pushes each change; the snapshot (longest waits) and alerts
// are read again every 10 s, every 5 s while the feed is down.
import { clock, follow, h, t } from "./common.js";
import { nameOf, table } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);
const live = {
  hallId: null, seq: null, matters: new Map(), counters: [], recent: [], alerts: [],
  feed: null, timer: null, refresh: null, connected: false, updated: null, ctx: null,
};

function counterState(value) {
  return { open: t("Open"), paused: t("Paused"), closed: t("Closed") }[value] || value || "";
}

function ticketState(value) {
  return { called: t("Called"), serving: t("Serving") }[value] || value || "";
}

function minutes(n) {
  return t("{n} min", { n });
}

function fromBoard(board) {
  const matters = new Map();
  for (const m of board.matters || []) {
    const before = live.matters.get(m.service_id);
    matters.set(m.service_id, {
      id: m.service_id, prefix: m.prefix, name_zh: m.name_zh, name_en: m.name_en, waiting: m.waiting,
      longest: m.waiting ? (before ? before.longest : 0) : 0,
    });
  }
  live.matters = matters;
  live.counters = (board.counters || []).map((c) => ({
    id: c.counter_id, number: c.number, name: c.name, state: c.state, ticket: c.ticket, ticket_state: c.ticket_state,
  }));
  live.recent = (board.recent_calls || []).map((c) => ({ number: c.number, counter: c.counter_number, at: c.at, recall: c.recall }));
}

function fromSnapshot(snapshot) {
  const newer = live.seq === null || snapshot.seq >= live.seq;
  if (newer) {
    live.seq = snapshot.seq;
    live.matters = new Map(snapshot.waiting.map((w) => [w.service.id, {
      id: w.service.id, prefix: w.prefix, name_zh: w.service.name_zh, name_en: w.service.name_en,
      waiting: w.waiting, longest: w.longest_wait_minutes,
    }]));
    live.counters = snapshot.counters.map((c) => ({
      id: c.id, number: c.number, name: c.name, state: c.state, ticket: c.ticket_number, ticket_state: c.ticket_state,
    }));
    live.recent = snapshot.recent_calls.map((c) => ({ number: c.number, counter: c.counter_number, at: c.called_at }));
  } else {
    // The feed is ahead: keep its counts, take the longest waits.
    for (const w of snapshot.waiting) {
      const m = live.matters.get(w.service.id);
      if (m) m.longest = m.waiting ? w.longest_wait_minutes : 0;
    }
  }
}

function render() {
  const ctx = live.ctx;
  if (!ctx || !ctx.hall) return;
  const tz = ctx.hall.timezone;
  const matters = [...live.matters.values()];
  const waiting = matters.reduce((sum, m) => sum + m.waiting, 0);
  const longest = matters.reduce((max, m) => Math.max(max, m.longest || 0), 0);
  const open = live.counters.filter((c) => c.state === "open").length;
  const serving = live.counters.filter((c) => c.ticket).length;
  const tile = (label, value, id) => h("div", { class: "tile" },
    h("dt", {}, label), h("dd", { class: "big", id }, String(value)));
  $("dash-summary").replaceChildren(h("dl", { class: "tiles" },
    tile(t("Waiting now"), waiting, "dash-total-waiting"),
    tile(t("Longest wait"), minutes(longest), "dash-longest"),
    tile(t("Counters open"), t("{open} of {all}", { open, all: live.counters.length }), "dash-open"),
    tile(t("At a counter now"), serving, "dash-serving"),
  ));

  $("dash-alerts").replaceChildren(live.alerts.length
    ? h("ul", { class: "alerts" }, live.alerts.map((a) => h("li", { class: "alert error" },
      h("strong", {}, a.name), " — ", t(a.problem))))
    : h("p", { class: "ok-note" }, t("No alerts: every printer, kiosk and board is working.")));

  $("dash-waiting").replaceChildren(table(
    [t("Prefix"), t("Matter"), t("People waiting"), t("Longest wait")],
    matters.map((m) => ({
      attrs: { "data-service-id": m.id, class: m.waiting ? "" : "quiet" },
      cells: [h("span", { class: "prefix" }, m.prefix), nameOf(m),
        h("span", { class: "count", "data-waiting": m.waiting }, String(m.waiting)),
        m.waiting ? minutes(m.longest || 0) : "—"],
    })),
    { label: t("Waiting per matter"), empty: t("This hall has no matters yet."), cards: false },
  ));

  $("dash-counters").replaceChildren(table(
    [t("Counter"), t("Counter name"), t("State"), t("Ticket")],
    live.counters.map((c) => ({
      attrs: { "data-counter-number": c.number, class: `state-${c.state}` },
      cells: [h("span", { class: "number" }, String(c.number)), c.name,
        h("span", { class: `badge ${c.state}` }, counterState(c.state)),
        c.ticket
          ? h("span", {}, h("span", { class: "ticket number" }, c.ticket), h("br"), h("span", { class: "ticket-state" }, ticketState(c.ticket_state)))
          : h("span", { class: "ticket number" }, "—")],
    })),
    { label: t("Counters"), empty: t("This hall has no counters yet."), cards: false },
  ));

  $("dash-recent").replaceChildren(live.recent.length
    ? h("ol", { class: "recent" }, live.recent.map((c) => h("li", {},
      h("span", { class: "number" }, c.number), " → ", t("counter {n}", { n: c.counter }),
      c.at ? h("span", { class: "hint" }, ` ${clock(c.at, tz)}`) : null,
      c.recall ? h("span", { class: "hint" }, ` (${t("called again")})`) : null)))
    : h("p", { class: "empty" }, t("No calls yet today.")));

  const state = $("dash-live");
  state.classList.toggle("down", !live.connected);
  state.textContent = live.connected
    ? t("Live: changes appear as they happen.")
    : t("Reconnecting… the figures are read again every 5 seconds meanwhile.");
  if (live.updated) {
    state.append(" ", h("span", { class: "hint" }, t("Last update {time}", {
      time: new Intl.DateTimeFormat("en-GB", { timeStyle: "medium", timeZone: tz }).format(live.updated),
    })));
  }
}

async function readSnapshot() {
  const ctx = live.ctx;
  const hallId = live.hallId;
  const [snapshot, alerts] = await Promise.all([ctx.get("/snapshot"), ctx.get("/alerts")]);
  if (hallId !== live.hallId) return;
  fromSnapshot(snapshot);
  live.alerts = alerts;
  live.updated = new Date();
  render();
}

function soon() {
  window.clearTimeout(live.refresh);
  live.refresh = window.setTimeout(() => readSnapshot().catch(() => {}), 1200);
}

function poll() {
  window.clearTimeout(live.timer);
  live.timer = window.setTimeout(async () => {
    await readSnapshot().catch(() => {});
    if (live.hallId !== null) poll();
  }, live.connected ? 10000 : 5000);
}

function onMessage(message) {
  if (message.type === "ping") {
    if (live.seq !== null && message.seq > live.seq) soon();
    return;
  }
  if (!message.board || (live.seq !== null && message.seq < live.seq)) return;
  live.seq = message.seq;
  fromBoard(message.board);
  live.updated = new Date();
  render();
  const name = message.event && message.event.name;
  if (message.type === "snapshot" || (name && (name.startsWith("Ticket") || name.startsWith("Print")))) soon();
}

export const dashboard = {
  id: "dashboard",
  async show(ctx) {
    this.hide();
    live.ctx = ctx;
    live.hallId = ctx.hallId;
    live.seq = null;
    live.matters = new Map();
    live.counters = [];
    live.recent = [];
    live.alerts = [];
    live.connected = false;
    const hallId = ctx.hallId;
    live.feed = follow(`/ws/halls/${hallId}/board`, (message) => {
      if (live.hallId === hallId) onMessage(message);
    }, (s) => {
      if (live.hallId !== hallId) return;
      live.connected = s === "open";
      render();
      poll();
    });
    poll();
    await readSnapshot();
  },
  hide() {
    if (live.feed) live.feed.stop();
    live.feed = null;
    live.hallId = null;
    window.clearTimeout(live.timer);
    window.clearTimeout(live.refresh);
  },
};
