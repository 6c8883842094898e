// The counter console (窗口): sign in, choose and open a counter, call, serve, finish,
// transfer; the counter's feed (/ws/counters/{id}) keeps the current ticket, the waiting
// list and the hall's alerts live. Every action has a one-letter shortcut, ignored while
// typing in a field. Refusals show the API's detail in the role=alert box.

import { api, announce, clock, day, follow, h, t } from "/static/web/common.js";

const EN = document.documentElement.lang === "en";
const $ = (id) => document.getElementById(id);
const COUNTER_KEY = "onedoor-counter-id";
const REASON_KEY = "onedoor-call-reason-";

const KIND = { walk_in: "Walk-in", appointment: "Appointment", remote: "Remote ticket",
  transfer: "Transfer", escalation: "Escalation" };
const PRIORITY = { none: "No priority", elderly: "Elderly", disability: "Disability",
  pregnancy: "Pregnancy" };
const STATE = { waiting: "Waiting", called: "Called", serving: "Serving", done: "Finished",
  no_show: "No-show", transferred: "Transferred", cancelled: "Cancelled" };
const OUTCOME = { done: "Done, matter handled", missing_documents: "Missing documents",
  other_department: "Needs another department", system_problem: "System or policy problem",
  visitor_left: "Visitor left", needs_escalation: "Needs escalation", other: "Other",
  day_closed: "Day closed" };
const CASE_STATUS = { open: "open", answered: "answered", closed: "closed" };
const COUNTER_STATE = { open: "Open", paused: "Paused", closed: "Closed" };
const CHANNEL = { online: "Booked online", staff: "Booked by staff" };
const ACTION = { recall: "Recall", "mark as no-show": "No-show", "start serving": "Start",
  finish: "Finish", "return to the queue": "Return to queue", transfer: "Transfer" };
const label = (map, value) => (value in map ? t(map[value]) : String(value));

// Letter → the data-action of its button.
const SHORTCUTS = { N: "call-next", R: "recall", S: "start", F: "finish", X: "no-show",
  T: "transfer", Q: "return", P: "pause", O: "open", C: "close" };

// The API speaks English. In Chinese, known sentences are translated (each id is the
// English pattern); anything else is shown as it came.
const REASONS = [
  [/^continues visit \(transferred, waiting (\d+) min\)$/, "continues visit (transferred, waiting {n} min)", ["n"]],
  [/^continues visit \(escalated, waiting (\d+) min\)$/, "continues visit (escalated, waiting {n} min)", ["n"]],
  [/^appointment due (\d\d:\d\d)$/, "appointment due {time}", ["time"]],
  [/^appointment at (\d\d:\d\d): called now to keep it on time$/,
    "appointment at {time}: called now to keep it on time", ["time"]],
  [/^appointment due (\d\d:\d\d), on time until (\d\d:\d\d); nobody else waiting$/,
    "appointment due {time}, on time until {until}; nobody else waiting", ["time", "until"]],
  [/^appointment at (\d\d:\d\d), checked in early; nobody else waiting$/,
    "appointment at {time}, checked in early; nobody else waiting", ["time"]],
  [/^priority: (\S+) \(waiting (\d+) min\)$/, "priority: {priority} (waiting {n} min)", [["priority", PRIORITY], "n"]],
  [/^longest wait (\d+) min \(secondary matter here\)$/,
    "longest wait {n} min (secondary matter here)", ["n"]],
  [/^longest wait (\d+) min$/, "longest wait {n} min", ["n"]],
  [/^called by the clerk$/, "called by the clerk", []],
  [/^nobody is waiting for this counter's matters$/, "nobody is waiting for this counter's matters", []],
];
const ERRORS = [
  [/^outcome 'other' needs a note saying what happened$/, "outcome 'other' needs a note saying what happened", []],
  [/^wrong username or password$/, "wrong username or password", []],
  [/^outcome 'missing_documents' needs the missing ones named, from the matter's list: (.+)$/,
    "outcome 'missing_documents' needs the missing ones named, from the matter's list: {list}", ["list"]],
  [/^this matter lists no documents: say in the note which ones were missing$/,
    "this matter lists no documents: say in the note which ones were missing", []],
  [/^this hall has no can't-get-it-done desk; a manager marks one matter as the desk$/,
    "this hall has no can't-get-it-done desk; a manager marks one matter as the desk", []],
  [/^this visit has case (\d+) open already$/, "this visit has case {n} open already", ["n"]],
  [/^transfer needs a different matter than the current one$/, "transfer needs a different matter than the current one", []],
  [/^counter (\d+) is signed in by another clerk$/, "counter {n} is signed in by another clerk", ["n"]],
  [/^cannot open counter (\d+): it is (\w+) by another clerk; they must close it first$/,
    "cannot open counter {n}: it is {state} by another clerk; they must close it first", ["n", ["state", COUNTER_STATE]]],
  [/^cannot open counter (\d+): it is already open$/, "cannot open counter {n}: it is already open", ["n"]],
  [/^cannot open counter (\d+): it is not possible while you have a ticket at counter (\d+); finish or return it first$/,
    "cannot open counter {n}: it is not possible while you have a ticket at counter {other}; finish or return it first", ["n", "other"]],
  [/^cannot call at counter (\d+): it is busy with (\S+) \((\w+)\); finish it, mark it no-show or return it to the queue first$/,
    "cannot call at counter {n}: it is busy with {number} ({state}); finish it, mark it no-show or return it to the queue first",
    ["n", "number", ["state", STATE]]],
  [/^cannot call at counter (\d+): it is (\w+); open it first$/, "cannot call at counter {n}: it is {state}; open it first", ["n", ["state", COUNTER_STATE]]],
  [/^cannot work at counter (\d+): it is (\w+); open it first$/, "cannot work at counter {n}: it is {state}; open it first", ["n", ["state", COUNTER_STATE]]],
  [/^cannot pause counter (\d+): it is (\w+)$/, "cannot pause counter {n}: it is {state}", ["n", ["state", COUNTER_STATE]]],
  [/^cannot close counter (\d+): it is serving (\S+); finish or return it first$/,
    "cannot close counter {n}: it is serving {number}; finish or return it first", ["n", "number"]],
  [/^cannot close counter (\d+): it is (\w+)$/, "cannot close counter {n}: it is {state}", ["n", ["state", COUNTER_STATE]]],
  [/^counter (\d+) has no current ticket; call one first$/, "counter {n} has no current ticket; call one first", ["n"]],
  [/^cannot (recall|mark as no-show|start serving|finish|return to the queue|transfer) ticket (\S+): it is (\w+)$/,
    "cannot {action} ticket {number}: it is {state}", [["action", ACTION], "number", ["state", STATE]]],
];

function localise(text, table) {
  if (EN || !text) return text;
  for (const [pattern, id, names] of table) {
    const match = pattern.exec(text);
    if (!match) continue;
    const values = {};
    names.forEach((name, index) => {
      const raw = match[index + 1];
      if (Array.isArray(name)) values[name[0]] = label(name[1], raw);
      else values[name] = raw;
    });
    return t(id, values);
  }
  return text;
}

const S = {
  user: null, csrf: "", hallId: null, tz: "Asia/Shanghai",
  counters: [], services: new Map(),
  counterId: null, counter: null, current: null, waiting: [], waitingTotal: 0, alerts: [],
  view: "loading", busy: false, feed: null, live: null,
  seenWaiting: null, seenAlerts: null, last: "", pending: null,
};

// ---- the views ------------------------------------------------------------------------

function show(view) {
  S.view = view;
  $("loading").hidden = view !== "loading";
  $("login-view").hidden = view !== "login";
  $("choose-view").hidden = view !== "choose";
  $("console-view").hidden = view !== "console";
  $("session").hidden = !(view === "choose" || view === "console");
  $("change-counter").hidden = view !== "console";
  if (S.user) $("session-name").textContent = t("Signed in as {name}", { name: S.user.name });
}

function showError(detail) {
  const box = $("error");
  box.replaceChildren();
  box.hidden = false;
  const text = localise(detail, ERRORS);
  // Emptied, then filled a moment later, so screen readers announce a repeated refusal too.
  window.setTimeout(() => {
    box.replaceChildren(h("strong", {}, t("Not possible:")), " ", h("span", { class: "detail" }, text));
    if (text !== detail) box.append(" ", h("span", { class: "original", lang: "en" }, `(${detail})`));
  }, 30);
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

async function call(method, url, body) {
  return api(method, url, { body, csrf: method === "GET" ? undefined : S.csrf });
}

/** Run a request; a refusal's detail goes to the alert box (an ended session: sign in). */
async function attempt(work) {
  try {
    const result = await work();
    clearError();
    return result;
  } catch (error) {
    if (error.status === 401 && S.view !== "login") {
      signedOut();
      showError(t("Your session has ended; please sign in again."));
    } else {
      showError(error.message);
    }
    return undefined;
  }
}

// ---- signing in and out ---------------------------------------------------------------

async function start() {
  try {
    const me = await api("GET", "/api/auth/me");
    if (!me.user || me.user.device_id !== null || !me.csrf_token) throw new Error("not a clerk");
    await signedIn(me);
  } catch (error) {
    if (error.status && error.status !== 401) showError(error.message);
    signedOut();
  }
}

function stopFeed() {
  const feed = S.feed;
  S.feed = null;
  if (feed) feed.stop();
}

function signedOut() {
  stopFeed();
  S.user = null;
  S.csrf = "";
  S.counterId = null;
  S.counter = null;
  S.current = null;
  show("login");
  $("password").value = "";
  $("username").focus();
}

async function signedIn(answer) {
  S.user = answer.user;
  S.csrf = answer.csrf_token;
  const fromQuery = Number(new URLSearchParams(location.search).get("hall")) || null;
  S.hallId = S.user.hall_id ?? fromQuery;
  if (!S.hallId) {
    show("choose");
    $("counter-list").replaceChildren();
    showError(t("This account belongs to no hall: add ?hall=<number> to the address."));
    return;
  }
  const [hall, services, counters] = await Promise.all([
    api("GET", `/api/public/halls/${S.hallId}`).catch(() => null),
    api("GET", `/api/halls/${S.hallId}/services`),
    api("GET", `/api/halls/${S.hallId}/counters`),
  ]);
  if (hall) S.tz = hall.timezone;
  S.services = new Map(services.map((s) => [s.id, s]));
  S.counters = counters;
  // Back after a reload or a language switch: straight to the counter this clerk holds.
  const remembered = Number(localStorage.getItem(COUNTER_KEY));
  const mine = counters.find((c) => c.id === remembered && c.clerk_id === S.user.user_id && c.state !== "closed");
  if (mine) {
    await enterConsole(mine.id);
    return;
  }
  showChooser();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (S.busy) return;
  const username = $("username").value.trim();
  const password = $("password").value;
  S.busy = true;
  const answer = await attempt(() => api("POST", "/api/auth/login", { body: { username, password } }));
  S.busy = false;
  if (!answer) {
    $("password").select();
    $("password").focus();
    return;
  }
  $("password").value = "";
  await attempt(() => signedIn(answer));
});

$("sign-out").addEventListener("click", async () => {
  await api("POST", "/api/auth/logout", { csrf: S.csrf }).catch(() => null);
  clearError();
  signedOut();
  announce(t("Signed out."));
});

$("change-counter").addEventListener("click", async () => {
  stopFeed();
  S.counters = (await attempt(() => call("GET", `/api/halls/${S.hallId}/counters`))) || S.counters;
  showChooser();
});

// ---- choosing the counter -------------------------------------------------------------

function matterName(service) {
  if (!service) return "";
  return EN ? service.name_en : service.name_zh;
}

function showChooser() {
  show("choose");
  const list = $("counter-list");
  const remembered = Number(localStorage.getItem(COUNTER_KEY));
  if (!S.counters.length) {
    list.replaceChildren(h("li", { class: "hint" }, t("No counters in this hall.")));
    $("choose-title").focus();
    return;
  }
  let focus = null;
  list.replaceChildren(...S.counters.map((c) => {
    const mine = c.clerk_id === S.user.user_id;
    const status = c.state === "closed" ? t("Closed")
      : mine ? t(c.state === "open" ? "open by you" : "paused by you")
        : t("in use by another clerk");
    const matters = c.profile.map((p) => matterName(S.services.get(p.service_id))).filter(Boolean).join(EN ? ", " : "、");
    const descId = `counter-desc-${c.id}`;
    const button = h("button", { type: "button", class: "counter-choice", "aria-describedby": descId,
      "data-counter": c.id, onclick: () => choose(c) },
    h("span", { class: "counter-number" }, t("Counter {n}", { n: c.number })),
    h("span", { class: "counter-name" }, c.name));
    if (c.id === remembered || (focus === null && mine)) focus = button;
    return h("li", { class: `counter-item state-${c.state}${mine ? " mine" : ""}` }, button,
      h("div", { id: descId, class: "counter-desc" },
        h("p", {}, h("span", { class: `badge state-${c.state}` }, status)),
        h("p", {}, t("Serves: {matters}", { matters }))));
  }));
  (focus || list.querySelector("button")).focus();
}

async function choose(counter) {
  if (S.busy) return;
  const mine = counter.clerk_id === S.user.user_id && counter.state !== "closed";
  if (!mine) {
    S.busy = true;
    const opened = await attempt(() => call("POST", `/api/counters/${counter.id}/open`));
    S.busy = false;
    if (!opened) return;
    announce(t("Counter opened."));
  }
  await enterConsole(counter.id);
}

async function enterConsole(counterId) {
  S.counterId = counterId;
  localStorage.setItem(COUNTER_KEY, String(counterId));
  S.seenWaiting = null;
  S.seenAlerts = null;
  S.last = "";
  S.lastFinished = null;
  S.counter = null;
  S.current = null;
  S.waiting = [];
  S.waitingTotal = 0;
  S.seenTotal = null;
  $("waiting-count").textContent = "";
  $("waiting-more").hidden = true;
  $("last").hidden = true;
  $("correct-open").hidden = true;
  $("correct-form").hidden = true;
  closeForms(false);
  // Nothing to press until this counter's state is in (a previous counter's is not).
  for (const b of document.querySelectorAll("#console-view [data-action]")) b.disabled = true;
  $("current").replaceChildren();
  $("waiting-list").replaceChildren();
  const known = S.counters.find((c) => c.id === counterId);
  $("counter-title").textContent = known ? t("Counter {n} · {name}", { n: known.number, name: known.name }) : "";
  show("console");
  S.live = null;
  await refresh();
  fillTransferChoices();
  stopFeed();
  // Messages of a feed that was replaced (another counter, signed out) are ignored.
  const feed = follow(`/ws/counters/${counterId}`,
    (message) => { if (S.feed === feed) onFeed(message); },
    (state) => { if (S.feed === feed) onFeedState(state); });
  S.feed = feed;
  focusPrimary(true);
}

// ---- the live state -------------------------------------------------------------------

async function refresh() {
  if (!S.counterId) return;
  const id = S.counterId;
  const [console_, waiting, alerts] = await Promise.all([
    call("GET", `/api/counters/${id}`),
    call("GET", `/api/counters/${id}/waiting`),
    call("GET", `/api/halls/${S.hallId}/alerts`).catch(() => S.alerts),
  ]).catch((error) => {
    if (error.status === 401) signedOut();
    showError(error.message);
    return [null, null, null];
  });
  if (!console_ || id !== S.counterId) return;
  apply(console_, waiting, alerts);
}

// A kiosk or board going silent is no event on the feed: look at the alerts again now
// and then (a printer's problems come live).
const ALERTS_POLL_MS = 30000;
window.setInterval(async () => {
  if (S.view !== "console" || !S.hallId) return;
  const alerts = await call("GET", `/api/halls/${S.hallId}/alerts`).catch(() => null);
  if (alerts) {
    S.alerts = alerts;
    renderAlerts();
  }
}, ALERTS_POLL_MS);

function onFeed(message) {
  if (message.type !== "snapshot" && message.type !== "update") return;
  const event = message.event;
  if (event && event.name === "TicketCalled" && event.counter_id === S.counterId && event.reason) {
    rememberReason(event.ticket_id, event.reason);
  }
  apply(message.counter, message.waiting, message.alerts);
}

function onFeedState(state) {
  const before = S.live;
  S.live = state;
  renderLive();
  if (state === "closed" && before === "open") {
    announce(t("The live feed is down; reconnecting…"));
    // A feed refused for an ended session never comes back: find out, and sign in again.
    api("GET", "/api/auth/me").catch((error) => {
      if (error.status === 401 && S.view === "console") {
        signedOut();
        showError(t("Your session has ended; please sign in again."));
      }
    });
  }
}

function rememberReason(ticketId, reason) {
  try { sessionStorage.setItem(REASON_KEY + ticketId, reason); } catch (error) { /* full */ }
}

function reasonOf(ticketId) {
  try { return sessionStorage.getItem(REASON_KEY + ticketId); } catch (error) { return null; }
}

function apply(console_, waiting, alerts) {
  if (S.view !== "console" || !console_) return;
  S.counter = console_.counter;
  S.current = console_.current;
  S.waitingTotal = console_.waiting_total;
  if (waiting) S.waiting = waiting;
  if (alerts) S.alerts = alerts;
  render();
}

function render() {
  const c = S.counter;
  if (!c) return;
  $("counter-title").textContent = t("Counter {n} · {name}", { n: c.number, name: c.name });
  const badge = $("counter-state");
  badge.textContent = label(COUNTER_STATE, c.state);
  badge.className = `badge state-${c.state}`;
  renderLive();
  renderCurrent();
  renderButtons();
  renderWaiting();
  renderAlerts();
  focusPrimary(false);
}

function renderLive() {
  const badge = $("live-state");
  badge.textContent = S.live === "open" ? t("Live") : t("Reconnecting…");
  badge.className = `badge live ${S.live === "open" ? "on" : "off"}`;
}

function minutesSince(iso) {
  return Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 60000));
}

function fact(term, value, attrs = {}) {
  return [h("dt", {}, term), h("dd", attrs, value)];
}

function renderCurrent() {
  const box = $("current");
  const ticket = S.current;
  if (!ticket) {
    const hint = S.counter.state === "closed" ? t("The counter is closed. Open it (O) to call visitors.")
      : S.counter.state === "paused" ? t("The counter is paused. Resume (O) to call again.")
        : t("Press N or “Call next” to call the next visitor.");
    box.replaceChildren(h("p", { class: "no-ticket" }, t("No current ticket.")), h("p", { class: "hint" }, hint));
    box.dataset.state = "none";
    return;
  }
  box.dataset.state = ticket.state;
  const service = S.services.get(ticket.service.id) || ticket.service;
  const reason = reasonOf(ticket.id);
  const facts = [
    ...fact(t("Matter"), matterName(service)),
    ...fact(t("Kind"), label(KIND, ticket.kind), { class: `kind kind-${ticket.kind}` }),
    ...fact(t("Priority"), label(PRIORITY, ticket.priority), { class: ticket.priority !== "none" ? "priority" : "" }),
    ...fact(t("Wait so far"), t("{n} min", { n: minutesSince(ticket.issued_at) }), { "data-wait": "" }),
    ...fact(t("Taken at"), clock(ticket.issued_at, S.tz)),
  ];
  if (ticket.called_at) facts.push(...fact(t("Called at"), clock(ticket.called_at, S.tz)));
  if (reason) facts.push(...fact(t("Why this ticket"), localise(reason, REASONS), { class: "reason", "data-reason": "" }));
  const parts = [
    h("div", { class: "ticket-head" },
      h("p", { class: "ticket-number", id: "current-number" }, ticket.number),
      h("p", { class: `badge state-${ticket.state}`, id: "current-state" }, label(STATE, ticket.state))),
    h("dl", { class: "facts" }, facts),
  ];
  const b = ticket.booking;
  if (b) {
    const booking = [
      ...fact(t("Booking code"), b.code, { class: "code" }),
      ...fact(t("Name"), b.name),
    ];
    if (b.phone) booking.push(...fact(t("Phone"), b.phone));
    if (b.id_tail) booking.push(...fact(t("ID number ends in"), b.id_tail));
    booking.push(...fact(t("Booked slot"), `${day(b.slot_start, S.tz)} ${clock(b.slot_start, S.tz)}`));
    booking.push(...fact(t("Booked by"), label(CHANNEL, b.channel)));
    parts.push(h("section", { class: "booking", "aria-labelledby": "booking-title" },
      h("h4", { id: "booking-title" }, t("Booking")), h("dl", { class: "facts" }, booking)));
  }
  box.replaceChildren(...parts);
  renderCase();
}

// ---- the can't-get-it-done desk -------------------------------------------------------

const hasDesk = () => [...S.services.values()].some((s) => s.desk && s.active);

function hallToday(offsetDays = 0) {
  const at = new Date(Date.now() + offsetDays * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: S.tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(at);
}

/** At the desk: where the visit comes from, its case, or the form that opens one. */
function renderCase() {
  const ticket = S.current;
  const panel = $("case-panel");
  panel.hidden = !(ticket && ticket.desk);
  if (panel.hidden) return;
  const origin = ticket.origin;
  const lines = [];
  if (origin) {
    const service = S.services.get(origin.service.id) || origin.service;
    lines.push(h("p", { class: "origin" }, t("Not done at {matter}: {outcome}.",
      { matter: matterName(service), outcome: label(OUTCOME, origin.outcome) })));
    if (origin.missing_documents.length) {
      lines.push(h("p", { class: "origin-missing" }, t("Missing: {documents}",
        { documents: origin.missing_documents.join(EN ? "; " : "；") })));
    }
  }
  $("case-origin").replaceChildren(...lines);
  const kept = ticket.case;
  $("case-status").hidden = !kept;
  $("case-form").hidden = Boolean(kept && kept.status !== "closed");
  if (kept) {
    const status = label(CASE_STATUS, kept.status) + (kept.overdue ? ` (${t("overdue")})` : "");
    $("case-status").textContent = t("Case {id}: {status}, answer promised by {date}.",
      { id: kept.id, status, date: kept.promised_on });
  }
  const promised = $("case-promised");
  promised.min = hallToday();
  if (!promised.value) promised.value = hallToday(3);
}

$("case-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!S.current || S.busy) return;
  const body = { ticket_id: S.current.id, summary: $("case-summary").value.trim(),
    promised_on: $("case-promised").value };
  const made = await attempt(() => call("POST", `/api/halls/${S.hallId}/cases`, body));
  if (!made) {
    (body.summary ? $("case-promised") : $("case-summary")).focus();
    return;
  }
  $("case-form").reset();
  announce(t("Case {id} opened.", { id: made.id }));
  await refresh();
  $("case-status").focus?.();
});

/** What each button needs; the one for the natural next step is the primary one. */
function allowed() {
  const c = S.counter;
  const state = S.current ? S.current.state : null;
  const open = c.state === "open";
  return {
    "call-next": open && !S.current,
    recall: state === "called",
    start: state === "called",
    finish: state === "serving",
    "no-show": state === "called",
    transfer: state === "called" || state === "serving",
    return: state === "called",
    pause: open,
    open: c.state !== "open",
    close: c.state !== "closed" && !S.current,
  };
}

function primaryAction() {
  const c = S.counter;
  if (!c) return null;
  if (S.current) return S.current.state === "called" ? "start" : "finish";
  return c.state === "open" ? "call-next" : "open";
}

function button(action) {
  return document.querySelector(`#console-view [data-action="${action}"]`);
}

function renderButtons() {
  const can = allowed();
  const primary = primaryAction();
  for (const [action, ok] of Object.entries(can)) {
    const b = button(action);
    b.disabled = !ok;
    b.classList.toggle("secondary", action !== primary);
    b.classList.toggle("primary", action === primary);
  }
  button("open").querySelector(".label").textContent = S.counter.state === "paused" ? t("Resume") : t("Open counter");
  if (!can.finish && !$("finish-form").hidden) closeForms(false);
  if (!can.transfer && !$("transfer-form").hidden) closeForms(false);
}

function renderWaiting() {
  const list = $("waiting-list");
  // The list holds the first few in call order; the count is everyone waiting.
  const total = Math.max(S.waitingTotal ?? 0, S.waiting.length);
  $("waiting-count").textContent = `(${total})`;
  $("waiting-empty").hidden = S.waiting.length > 0;
  $("waiting-more").hidden = total <= S.waiting.length;
  $("waiting-more").textContent = t("The first {shown} of {total}, in the order they will be called.",
    { shown: S.waiting.length, total });
  list.replaceChildren(...S.waiting.map((w) => {
    const marks = [label(KIND, w.kind)];
    if (w.priority !== "none") marks.push(label(PRIORITY, w.priority));
    return h("li", { "data-ticket": w.ticket_id },
      h("span", { class: "number" }, w.number),
      h("span", { class: "matter" }, matterName(S.services.get(w.service_id))),
      h("span", { class: "marks" }, marks.join(" · ")),
      h("span", { class: "waited" }, t("Waited {n} min", { n: w.waited_minutes })),
      h("span", { class: "reason" }, localise(w.reason, REASONS)));
  }));
  // Say who joined (not on the first render: that is just the state as it is). Only when
  // more wait than before: a call moves the next one up into a cut list, nobody joined.
  const ids = new Set(S.waiting.map((w) => w.ticket_id));
  if (S.seenWaiting && S.seenTotal !== null && total > S.seenTotal) {
    const joined = S.waiting.filter((w) => !S.seenWaiting.has(w.ticket_id));
    if (total === S.seenTotal + 1 && joined.length === 1) {
      announce(t("{number} is waiting.", { number: joined[0].number }));
    } else announce(t("{n} waiting", { n: total }));
  }
  S.seenWaiting = ids;
  S.seenTotal = total;
}

function renderAlerts() {
  const section = $("alerts");
  section.hidden = S.alerts.length === 0;
  const text = (a) => t("{name}: {problem}", { name: a.name, problem: t(a.problem) });
  $("alert-list").replaceChildren(...S.alerts.map((a) => h("li", { class: "alert" }, text(a))));
  const keys = new Set(S.alerts.map((a) => `${a.device_id}:${a.problem}`));
  if (S.seenAlerts) {
    const fresh = S.alerts.filter((a) => !S.seenAlerts.has(`${a.device_id}:${a.problem}`));
    if (fresh.length) announce(t("Alert: {text}", { text: fresh.map(text).join("; ") }));
  }
  S.seenAlerts = keys;
}

function showLast(text, finished = null) {
  S.last = text;
  const last = $("last");
  last.textContent = t("Last ticket: {text}", { text });
  last.hidden = false;
  S.lastFinished = finished;
  $("correct-open").hidden = !finished;
  $("correct-form").hidden = true;
  $("correct-open").setAttribute("aria-expanded", "false");
}

// ---- correcting the last outcome -------------------------------------------------------

function correctDocuments() {
  const ticket = S.lastFinished;
  const service = ticket ? S.services.get(ticket.service.id) : null;
  const documents = service ? service.documents || [] : [];
  $("correct-documents").hidden = $("correct-outcome").value !== "missing_documents" || !documents.length;
  $("correct-document-list").replaceChildren(...documents.map((name, i) => h("div", { class: "choice" },
    h("input", { type: "checkbox", id: `correct-missing-${i}`, name: "missing", value: name,
      checked: (ticket.missing_documents || []).includes(name) }),
    h("label", { for: `correct-missing-${i}` }, name))));
}

$("correct-open").addEventListener("click", () => {
  const form = $("correct-form");
  form.hidden = !form.hidden;
  $("correct-open").setAttribute("aria-expanded", String(!form.hidden));
  if (form.hidden) return;
  $("correct-outcome").value = S.lastFinished.outcome || "done";
  $("correct-note").value = S.lastFinished.note || "";
  correctDocuments();
  $("correct-outcome").focus();
});
$("correct-outcome").addEventListener("change", correctDocuments);
document.querySelector("[data-cancel-correct]").addEventListener("click", () => {
  $("correct-form").hidden = true;
  $("correct-open").setAttribute("aria-expanded", "false");
  $("correct-open").focus();
});
$("correct-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const ticket = S.lastFinished;
  if (!ticket || S.busy) return;
  const outcome = $("correct-outcome").value;
  const body = { outcome, reason: $("correct-reason").value.trim() };
  const note = $("correct-note").value.trim();
  if (note) body.note = note;
  if (outcome === "missing_documents") {
    body.missing_documents = [...document.querySelectorAll("#correct-document-list input:checked")].map((b) => b.value);
  }
  const saved = await attempt(() => call("POST", `/api/halls/${S.hallId}/tickets/${ticket.id}/outcome`, body));
  if (!saved) {
    $("correct-reason").focus();
    return;
  }
  $("correct-form").reset();
  const text = t("{number}: outcome corrected to {outcome}.", { number: saved.number, outcome: label(OUTCOME, saved.outcome) });
  showLast(text, saved);
  announce(text);
});

/** Keep the keyboard where it can act: when focus was lost (its button became disabled or
 *  hidden), it goes to the button for the natural next step. */
function focusPrimary(force) {
  if (S.view !== "console") return;
  const active = document.activeElement;
  const lost = !active || active === document.body || active.id === "main" || active.disabled
    || active.closest("[hidden]") || active.offsetParent === null;
  if (!force && !lost) return;
  const action = primaryAction();
  const target = action && button(action);
  if (target && !target.disabled) target.focus();
  else $("counter-title").focus();
}

// ---- actions --------------------------------------------------------------------------

/** POST an action; ``done(answer)`` runs at once on success (announcements, the call's
 *  reason), then the console is read again. Keys pressed meanwhile wait their turn. */
async function act(path, body, done = () => {}) {
  if (S.busy) return undefined;
  S.busy = true;
  $("console-view").setAttribute("aria-busy", "true");
  let answer;
  try {
    answer = await attempt(() => call("POST", `/api/counters/${S.counterId}/${path}`, body));
    if (answer !== undefined) done(answer);
    await refresh();
  } finally {
    S.busy = false;
    $("console-view").removeAttribute("aria-busy");
  }
  if (S.pending) {
    const letter = S.pending;
    S.pending = null;
    shortcut(letter);
  }
  return answer;
}

function ended(text, finished = null) {
  showLast(text, finished);
  announce(text);
}

const ACTIONS = {
  "call-next"() {
    return act("call-next", undefined, (answer) => {
      const reason = localise(answer.reason, REASONS);
      if (!answer.ticket) {
        showLast(reason);
        announce(t("Nobody is waiting."));
        return;
      }
      rememberReason(answer.ticket.id, answer.reason);
      announce(t("Called {number}. {reason}", { number: answer.ticket.number, reason }));
    });
  },
  recall() {
    return act("recall", undefined, (ticket) => announce(t("Called {number} again.", { number: ticket.number })));
  },
  start() {
    return act("start", undefined, (ticket) => announce(t("Serving {number}.", { number: ticket.number })));
  },
  "no-show"() {
    return act("no-show", undefined, (ticket) => ended(t("{number} marked as no-show.", { number: ticket.number })));
  },
  return() {
    return act("return", undefined, (ticket) => ended(t("{number} returned to the queue.", { number: ticket.number })));
  },
  finish() { openForm("finish-form"); },
  transfer() { openForm("transfer-form"); },
  pause() { return act("pause", undefined, () => announce(t("Counter paused."))); },
  open() { return act("open", undefined, () => announce(t("Counter opened."))); },
  close() { return act("close", undefined, () => announce(t("Counter closed."))); },
};

for (const b of document.querySelectorAll("#console-view [data-action]")) {
  b.addEventListener("click", () => {
    if (!b.disabled && !S.busy) ACTIONS[b.dataset.action]();
  });
}

function openForm(id) {
  const form = $(id);
  const other = id === "finish-form" ? $("transfer-form") : $("finish-form");
  other.hidden = true;
  form.hidden = false;
  button("finish").setAttribute("aria-expanded", String(!$("finish-form").hidden));
  button("transfer").setAttribute("aria-expanded", String(!$("transfer-form").hidden));
  if (id === "finish-form") {
    prepareFinish();
    form.querySelector("input[name=outcome]:checked").focus();
  } else {
    fillTransferChoices();
    $("transfer-service").focus();
  }
}

function closeForms(returnFocus) {
  const wasOpen = !$("finish-form").hidden ? "finish" : !$("transfer-form").hidden ? "transfer" : null;
  $("finish-form").hidden = true;
  $("transfer-form").hidden = true;
  button("finish").setAttribute("aria-expanded", "false");
  button("transfer").setAttribute("aria-expanded", "false");
  if (returnFocus && wasOpen) {
    const b = button(wasOpen);
    if (!b.disabled) b.focus();
    else focusPrimary(true);
  }
}

function resetForms() {
  $("finish-form").reset();
  $("transfer-form").reset();
  $("finish-visitor").open = false;
  syncFinish();
}

for (const cancel of document.querySelectorAll("[data-cancel]")) {
  cancel.addEventListener("click", () => closeForms(true));
}

function fillTransferChoices() {
  const select = $("transfer-service");
  const currentService = S.current ? S.current.service.id : null;
  const chosen = select.value;
  const options = [...S.services.values()]
    .filter((s) => s.active && s.id !== currentService)
    .map((s) => h("option", { value: s.id }, `${s.prefix} · ${matterName(s)}`));
  select.replaceChildren(...options);
  if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

/** The finish form for the current ticket: its matter's documents to tick, the desk. */
function prepareFinish() {
  const ticket = S.current;
  const service = ticket ? S.services.get(ticket.service.id) : null;
  const documents = service ? service.documents || [] : [];
  const list = $("finish-document-list");
  list.replaceChildren(...documents.map((name, i) => h("div", { class: "choice" },
    h("input", { type: "checkbox", id: `missing-${i}`, name: "missing", value: name }),
    h("label", { for: `missing-${i}` }, name))));
  if (!documents.length) {
    list.replaceChildren(h("p", { class: "hint" }, t("This matter lists no documents: say in the note which ones were missing.")));
  }
  $("finish-visitor").hidden = Boolean(ticket && ticket.booking); // a booking says who
  syncFinish();
}

/** Show what the chosen outcome needs: the documents, the way to the desk. */
function syncFinish() {
  const form = $("finish-form");
  const outcome = form.querySelector("input[name=outcome]:checked").value;
  $("finish-documents").hidden = outcome !== "missing_documents";
  const deskPossible = outcome !== "done" && hasDesk() && !(S.current && S.current.desk);
  $("finish-escalate-row").hidden = !deskPossible;
  if (!deskPossible) $("finish-escalate").checked = false;
}

for (const radio of document.querySelectorAll("#finish-form input[name=outcome]")) {
  radio.addEventListener("change", () => {
    if (radio.checked && radio.value === "needs_escalation" && hasDesk()) $("finish-escalate").checked = true;
    syncFinish();
  });
}

function visitorBody() {
  const phone = $("visitor-phone").value.trim();
  const idTail = $("visitor-id-tail").value.trim();
  const name = $("visitor-name").value.trim();
  if ($("finish-visitor").hidden || !(phone || idTail)) return undefined;
  return phone ? { phone } : { id_tail: idTail, name: name || undefined };
}

$("finish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const outcome = form.querySelector("input[name=outcome]:checked").value;
  const note = $("finish-note").value.trim();
  const body = { outcome };
  if (note) body.note = note;
  if (outcome === "missing_documents") {
    body.missing_documents = [...form.querySelectorAll("input[name=missing]:checked")].map((b) => b.value);
  }
  const escalate = !$("finish-escalate-row").hidden && $("finish-escalate").checked;
  if (escalate) body.escalate = true;
  const visitor = visitorBody();
  if (visitor) body.visitor = visitor;
  const ticket = await act("finish", body, (answer) => {
    resetForms();
    closeForms(false);
    const how = answer.outcome || outcome;
    let text = how === "done" ? t("{number} finished.", { number: answer.number })
      : t("{number} finished: {outcome}.", { number: answer.number, outcome: label(OUTCOME, how) });
    if (answer.escalated_to) text += " " + t("{number} sent on to the can't-get-it-done desk.", { number: answer.number });
    ended(text, answer);
  });
  if (!ticket && !form.hidden) {
    // Refused (e.g. "other" without a note): stay in the form, at what to fix.
    const fix = outcome === "other" ? $("finish-note")
      : outcome === "missing_documents" ? (form.querySelector("input[name=missing]") || $("finish-note"))
        : form.querySelector("input[name=outcome]:checked");
    fix.focus();
  }
  focusPrimary(false);
});

$("transfer-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const serviceId = Number($("transfer-service").value);
  if (!serviceId) return;
  const note = $("transfer-note").value.trim();
  const body = note ? { service_id: serviceId, note } : { service_id: serviceId };
  const answer = await act("transfer", body, (moved) => {
    resetForms();
    closeForms(false);
    const service = S.services.get(moved.new_ticket.service.id) || moved.new_ticket.service;
    ended(t("{number} transferred to {matter}.", { number: moved.transferred.number, matter: matterName(service) }));
  });
  if (!answer && !$("transfer-form").hidden) $("transfer-service").focus();
  focusPrimary(false);
});

// ---- keyboard -------------------------------------------------------------------------

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

document.addEventListener("keydown", (event) => {
  if (S.view !== "console") return;
  if (event.key === "Escape") {
    if (!$("finish-form").hidden || !$("transfer-form").hidden) {
      event.preventDefault();
      closeForms(true);
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing || event.repeat) return;
  if (typing(event.target)) return;
  if (event.key === "?") {
    event.preventDefault();
    $("shortcuts-title").focus();
    return;
  }
  // With a Chinese input method on, letters arrive as "Process": use the key's position.
  const letter = event.key.length === 1 ? event.key.toUpperCase()
    : event.code.startsWith("Key") ? event.code.slice(3) : "";
  if (!SHORTCUTS[letter]) return;
  event.preventDefault();
  if (S.busy) {
    S.pending = letter; // pressed while the last action is on its way: next in turn
    return;
  }
  shortcut(letter);
});

function shortcut(letter) {
  if (S.view !== "console") return;
  const b = button(SHORTCUTS[letter]);
  if (b.disabled) {
    announce(t("“{action}” is not possible now.", { action: b.querySelector(".label").textContent }));
    return;
  }
  b.focus();
  b.click();
}

// Minutes move on even when nothing happens; the waiting list's minutes too.
window.setInterval(() => {
  if (S.view !== "console") return;
  const wait = document.querySelector("#current [data-wait]");
  if (wait && S.current) wait.textContent = t("{n} min", { n: minutesSince(S.current.issued_at) });
}, 15000);
window.setInterval(() => {
  if (S.view === "console" && !S.busy) refresh();
}, 60000);

start();
