// A visitor following their ticket (/t/{token}, the QR on every ticket): place in the
// queue and estimate, kept live over /ws/tickets/{token}; a loud, clear "your turn" when
// called (alert, beep, vibration); after a transfer the new ticket; after service a rating.

import { announce, api, clock, follow, h, page, t } from "./common.js";

const $ = (id) => document.getElementById(id);
const ZH = document.documentElement.lang.startsWith("zh");
const token = page.token;
const status = { ticket: null, hall: null, beeps: 0, rated: false, feed: "connecting", alerts: 0 };
window.onedoorFollow = status;

// --- sound -------------------------------------------------------------------------------
let audio = null;

function audioContext() {
  if (audio) return audio;
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  try {
    audio = new Context();
    audio.addEventListener("statechange", soundButton);
  } catch (error) {
    audio = null;
  }
  return audio;
}

/** Offer "turn on sound" while the browser keeps sound off until the visitor acts. */
function soundButton() {
  const context = audioContext();
  const blocked = Boolean(context) && context.state !== "running";
  $("sound").hidden = !blocked;
  $("sound-on").hidden = blocked || !context;
}

function beep(times = 3) {
  const context = audioContext();
  if (!context || context.state !== "running") {
    soundButton();
    return false;
  }
  const start = context.currentTime + 0.05;
  for (let i = 0; i < times; i += 1) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = "sine";
    osc.frequency.value = 880;
    const at = start + i * 0.35;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.5, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.22);
    osc.connect(gain).connect(context.destination);
    osc.start(at);
    osc.stop(at + 0.25);
  }
  status.beeps += 1;
  return true;
}

function unlockSound() {
  const context = audioContext();
  if (!context) return;
  context.resume().then(() => {
    soundButton();
    beep(1);
  }).catch(() => soundButton());
}

// --- the ticket --------------------------------------------------------------------------

function serviceName(ticket) {
  const s = ticket.service || {};
  return (ZH ? s.name_zh : s.name_en) || s.name_zh || s.name_en || "";
}

function hallZone() {
  return (status.hall && status.hall.timezone) || Intl.DateTimeFormat().resolvedOptions().timeZone;
}

const REASON = {
  missing_documents: "documents were missing",
  other_department: "another department must handle it first",
  system_problem: "a system or policy problem",
  visitor_left: "you left before it was done",
  needs_escalation: "it needs a decision above the counter",
  other: "see the counter's explanation",
};

/** A matter not done: why, and what to bring next time (this ticket's, or for a visit at
 *  the desk, the ticket that sent it there). */
function renderOutcome(ticket) {
  const origin = ticket.origin;
  const notDone = ticket.state === "done" && ticket.outcome in REASON;
  const box = $("outcome");
  box.hidden = !(origin || notDone);
  if (box.hidden) return;
  const source = notDone ? ticket : origin;
  const reason = t(REASON[source.outcome] || "see the counter's explanation");
  if (notDone) {
    $("outcome-title").textContent = t("Your matter could not be done this time.");
    $("outcome-reason").textContent = t("Reason: {reason}.", { reason });
  } else {
    $("outcome-title").textContent = t("You have been sent on to the can't-get-it-done desk: you keep your number and go first there.");
    $("outcome-reason").textContent = t("Not done at {matter}: {reason}.", { matter: serviceName(origin), reason });
  }
  const documents = source.missing_documents || [];
  $("outcome-bring").hidden = documents.length === 0;
  $("outcome-documents").replaceChildren(...documents.map((name) => h("li", {}, name)));
}

function renderCase(kept) {
  const box = $("case");
  box.hidden = !kept;
  if (!kept) return;
  $("case-title").textContent = t("Your case {id} at the can't-get-it-done desk", { id: kept.id });
  const date = kept.promised_on;
  $("case-state").textContent = kept.status === "open"
    ? (kept.overdue ? t("Being looked into. The answer promised by {date} is late; please ask at the desk.", { date })
      : t("Being looked into. You will have an answer by {date}.", { date }))
    : kept.status === "answered" ? t("Answered.")
      : kept.resolution === "resolved" ? t("Closed: resolved.") : t("Closed: could not be resolved.");
  $("case-answer").hidden = !kept.answer;
  $("case-answer").textContent = kept.answer ? t("The desk's answer: {answer}", { answer: kept.answer }) : "";
}

function stateLine(ticket) {
  const counter = ticket.counter_number;
  switch (ticket.state) {
    case "waiting": return t("Waiting");
    case "called": return t("Called: please go to counter {n}", { n: counter });
    case "serving": return t("Being served at counter {n}", { n: counter });
    case "done": return ticket.outcome in REASON ? t("Your matter could not be done this time.")
      : t("Service finished. Thank you for coming.");
    case "no_show": return t("Your number was called, but you were not there. Please ask at the enquiries desk.");
    case "transferred": return t("You have been sent on to another matter.");
    case "cancelled": return t("This ticket is no longer valid.");
    default: return ticket.state;
  }
}

function showTurn(ticket, again) {
  const box = $("turn");
  box.replaceChildren(
    h("strong", {}, t("Your turn")),
    h("span", {}, t("Please go to counter {n}", { n: ticket.counter_number })),
  );
  box.classList.remove("flash");
  void box.offsetWidth; // restart the flash
  box.classList.add("flash");
  status.alerts += 1;
  document.title = `${t("Your turn")} · ${ticket.number}`;
  beep(again ? 2 : 3);
  if (navigator.vibrate) {
    try { navigator.vibrate([400, 150, 400, 150, 400]); } catch (error) { /* not allowed */ }
  }
  box.scrollIntoView({ block: "start" });
}

function clearTurn() {
  $("turn").replaceChildren();
  $("turn").classList.remove("flash");
}

function render(ticket, event = null) {
  const before = status.ticket;
  status.ticket = ticket;
  $("loading").hidden = true;
  $("card").hidden = false;
  $("extras").hidden = !["waiting", "called", "serving"].includes(ticket.state);
  $("number").textContent = ticket.number;
  $("matter").textContent = serviceName(ticket);
  $("state").textContent = stateLine(ticket);
  $("card").dataset.state = ticket.state;
  const waiting = ticket.state === "waiting";
  const ahead = $("ahead");
  ahead.hidden = !waiting || ticket.people_ahead === null || ticket.people_ahead === undefined;
  if (!ahead.hidden) {
    ahead.textContent = ticket.people_ahead === 0 ? t("You are next") : t("{n} ahead of you", { n: ticket.people_ahead });
  }
  const estimate = $("estimate");
  const high = ticket.estimate_high;
  estimate.hidden = !waiting || high === null || high === undefined;
  if (!estimate.hidden) {
    // A range that holds the wait for nine visitors in ten, kept fresh as the queue moves.
    estimate.textContent = high <= 0
      ? t("You will be called very soon")
      : t("Estimated wait: about {low}–{high} minutes", { low: ticket.estimate_low, high });
  }
  const due = $("due");
  due.hidden = !(waiting && ticket.due_at);
  if (!due.hidden) due.textContent = t("Your appointment: {time}", { time: clock(ticket.due_at, hallZone()) });

  const moved = before && before.id !== ticket.id;
  if (moved) {
    const text = t("You have been sent on to {matter}. Your number is {number}.", { matter: serviceName(ticket), number: ticket.number });
    $("moved").textContent = text;
    $("moved").hidden = false;
    announce(text);
  }
  if (["done", "no_show", "cancelled"].includes(ticket.state)) $("moved").hidden = true;
  const recalled = event && event.name === "TicketRecalled" && event.ticket_id === ticket.id;
  if (ticket.state === "called") {
    const fresh = !before || before.state !== "called" || moved;
    if (fresh || recalled) showTurn(ticket, !fresh);
  } else {
    clearTurn();
    document.title = `${ticket.number} · ${t("My ticket")}`;
  }
  if (!moved && before && waiting && before.people_ahead !== ticket.people_ahead && ticket.people_ahead !== null) {
    announce(ahead.textContent);
  }
  if (!moved && before && before.state !== ticket.state && ticket.state !== "called") announce(stateLine(ticket));

  renderOutcome(ticket);
  renderCase(ticket.case);

  const done = ticket.state === "done";
  const rated = status.rated || (ticket.rating !== null && ticket.rating !== undefined);
  $("rating").hidden = !done || rated;
  $("thanks").hidden = !done || !rated;
}

function feedState(state) {
  status.feed = state;
  const line = $("feed");
  line.textContent = state === "open" ? t("Updates live") : t("Connection lost: reconnecting…");
  line.classList.toggle("down", state !== "open");
}

// --- rating ------------------------------------------------------------------------------

async function rate(event) {
  event.preventDefault();
  const chosen = document.querySelector("input[name=stars]:checked");
  const error = $("stars-error");
  if (!chosen) {
    error.textContent = t("Choose 1 to 5 stars.");
    error.hidden = false;
    document.querySelector("input[name=stars]").focus();
    announce(error.textContent);
    return;
  }
  error.hidden = true;
  const button = $("rate-button");
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-disabled", "true");
  $("rate-problem").hidden = true;
  try {
    await api("POST", `/api/follow/${encodeURIComponent(token)}/rating`, {
      body: { stars: Number(chosen.value), comment: $("comment").value.trim() },
    });
    thank();
  } catch (failure) {
    if (failure.status === 409 && /rated already/.test(failure.message)) {
      thank();
    } else {
      $("rate-problem").textContent = failure.message;
      $("rate-problem").hidden = false;
    }
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

function thank() {
  status.rated = true;
  $("rating").hidden = true;
  $("thanks").hidden = false;
  $("thanks-title").focus();
  announce($("thanks-title").textContent);
}

// --- start -------------------------------------------------------------------------------

async function start() {
  $("sound").addEventListener("click", unlockSound);
  $("rating-form").addEventListener("submit", rate);
  // Any tap or key on the page also lets sound play from then on.
  const unlock = () => { const c = audioContext(); if (c && c.state !== "running") c.resume().then(soundButton, () => {}); };
  document.addEventListener("pointerdown", unlock, { once: true });
  document.addEventListener("keydown", unlock, { once: true });
  audioContext();
  soundButton();
  let first;
  try {
    first = await api("GET", `/api/follow/${encodeURIComponent(token)}`);
  } catch (error) {
    $("loading").hidden = true;
    $("problem").textContent = error.status === 404
      ? t("This link does not lead to a ticket. Check that it was copied whole.")
      : error.message;
    $("problem").hidden = false;
    if (error.status === 404) return;
  }
  if (first) {
    render(first);
    try {
      status.hall = await api("GET", `/api/public/halls/${first.hall_id}`);
      render(status.ticket);
    } catch (error) {
      // Times then show on the phone's clock.
    }
  }
  follow(`/ws/tickets/${encodeURIComponent(token)}`, (message) => {
    if (!message.ticket) return;
    $("problem").hidden = true;
    render(message.ticket, message.event || null);
  }, feedState);
}

start();
