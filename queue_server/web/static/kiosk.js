// The hall's kiosk: touch (or keyboard) a matter, say whether priority is needed, get a
// number; or check a booking in by scanned QR, code or phone number. Runs all day on one
// screen, so it goes back to the start by itself and survives the server going away.

import { ApiError, announce, api, clock, follow, h, page, qrSrc, t } from "/static/web/common.js";

const HALL = page.hall_id;
const TOKEN = page.token || "";
const LANG = page.lang || "zh_CN";
const HTML_LANG = LANG === "en" ? "en" : "zh-CN";
const OTHER_LANG = LANG === "en" ? "zh-CN" : "en";
const IDLE = Math.max(2, Number(page.idle_seconds) || 45); // result screen, seconds
const FORM_IDLE = IDLE * 2; // choosing priority, checking in: more to read and type
const SETTLE_MS = 500; // a new screen ignores taps this long (a double tap lands once)
const SCAN_GAP_MS = 80; // a QR scanner types faster than this between keys
const SHORTCUT_WAIT_MS = 150; // a digit waits this long to be sure a scan is not starting
const HEARTBEAT_MS = 30000; // "this kiosk is there" when the server did not say when
const PRINT_WAIT_MS = 10000; // no word from the printer this long: "may still be printing"
const AGENT_AWAY = ["print agent offline", "print agent not reporting", "printer removed"];
const PRIORITY_ORDER = ["none", "elderly", "disability", "pregnancy"];
const CODE_KEYS = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const STORED_RESULT = "onedoor-kiosk-result";
const HOME_LANG = "onedoor-kiosk-home-lang";

const $ = (id) => document.getElementById(id);
const screens = ["loading", "start", "priority", "result", "checkin", "closed", "setup"];

const state = {
  screen: null,
  hall: null,
  hallJson: "",
  matter: null,
  pendingIssue: null, // {body, key}: the same choice sent again keeps its Idempotency-Key
  busy: false,
  idleDeadline: null,
  idleLength: 0,
  phoneStep: null, // null | "id_tail" | "choose"
  loadedAt: Date.now(),
  lastInput: Date.now(),
};

// What the kiosk's feed (/ws/halls/{hall}/kiosk) said about its print jobs and printers,
// and the job of the ticket on screen: {jobId, state, detail, since} or null.
const prints = { jobs: new Map(), problems: new Map(), shown: null, timer: null, notice: "" };

// ---------------------------------------------------------------- small helpers

function nameOf(thing) {
  return LANG === "en" ? thing.name_en : thing.name_zh;
}

function otherNameOf(thing) {
  return LANG === "en" ? thing.name_zh : thing.name_en;
}

/** A fresh random key; crypto.randomUUID needs HTTPS, a hall's LAN may have none. */
function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "kiosk-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function isTextField(element) {
  return element instanceof HTMLInputElement && ["text", "tel", "search", "number"].includes(element.type);
}

function priorityLabel(priority) {
  const labels = {
    none: t("No, a regular number"),
    elderly: t("Older person (60 or over)"),
    disability: t("Person with a disability"),
    pregnancy: t("Pregnant woman"),
  };
  return labels[priority] || priority;
}

function priorityBadge(priority) {
  const badges = {
    elderly: t("Priority for older people"),
    disability: t("Priority for people with disabilities"),
    pregnancy: t("Priority for pregnant women"),
  };
  return badges[priority] || t("Priority: {name}", { name: priority });
}

function hallTz() {
  return state.hall ? state.hall.timezone : undefined;
}

/** "Today at 08:30", "Tomorrow at 08:30", else the weekday and date in the page language. */
function whenText(iso) {
  const tz = hallTz();
  const dayOf = (date) => new Intl.DateTimeFormat("sv-SE", { timeZone: tz }).format(date);
  const target = new Date(iso);
  const now = new Date();
  const time = clock(iso, tz);
  if (dayOf(target) === dayOf(now)) return t("today at {time}", { time });
  if (dayOf(target) === dayOf(new Date(now.getTime() + 86400000))) return t("tomorrow at {time}", { time });
  const date = new Intl.DateTimeFormat(HTML_LANG, {
    weekday: "long", month: "long", day: "numeric", timeZone: tz,
  }).format(target);
  return `${date} ${time}`;
}

// ---------------------------------------------------------------- screens and idle

function show(name, { focus = null } = {}) {
  state.screen = name;
  document.body.dataset.screen = name;
  for (const other of screens) {
    const section = $(`s-${other}`);
    section.hidden = other !== name;
    section.classList.remove("settling");
  }
  const section = $(`s-${name}`);
  // Taps on a new screen are ignored for a moment, so a double tap cannot choose twice.
  section.classList.add("settling");
  window.setTimeout(() => section.classList.remove("settling"), SETTLE_MS);
  armIdle();
  const target = focus || section.querySelector("h1");
  if (target) target.focus({ preventScroll: false });
  window.scrollTo(0, 0);
}

function armIdle() {
  const seconds = { result: IDLE, priority: FORM_IDLE, checkin: FORM_IDLE }[state.screen];
  state.idleLength = seconds || 0;
  state.idleDeadline = seconds ? Date.now() + seconds * 1000 : null;
  tickIdle();
}

function tickIdle() {
  const warning = $("idle-warning");
  if (state.idleDeadline === null) {
    warning.hidden = true;
    return;
  }
  const left = Math.max(0, Math.ceil((state.idleDeadline - Date.now()) / 1000));
  if (state.screen === "result") {
    $("r-countdown").textContent = t("Back to the start in {n} s", { n: left });
    warning.hidden = true;
  } else {
    const warnFrom = Math.min(15, Math.ceil(state.idleLength / 2));
    warning.hidden = left > warnFrom;
    $("idle-text").textContent = t("Back to the start in {n} s. Touch the screen to stay.", { n: left });
  }
  if (left <= 0 && !state.busy) goHome();
}

function onActivity() {
  state.lastInput = Date.now();
  if (state.idleDeadline !== null) armIdle();
}

/** Back to the start for the next visitor: in the kiosk's own language. */
function goHome() {
  state.matter = null;
  prints.shown = null;
  window.clearTimeout(prints.timer);
  state.pendingIssue = null;
  sessionStorage.removeItem(STORED_RESULT);
  resetCheckIn();
  const home = sessionStorage.getItem(HOME_LANG);
  if (home && home !== LANG) {
    const params = new URLSearchParams(location.search);
    params.set("lang", home);
    location.replace(`${location.pathname}?${params}`);
    return;
  }
  if (state.hall && !state.hall.open_now) showClosed();
  else if (state.hall) show("start");
  else show("loading");
}

// ---------------------------------------------------------------- errors

/** What to tell the visitor about a refusal: the common ones in their language. */
function friendly(error) {
  const detail = String(error.message || "");
  const status = error.status;
  if (status === 0) return { text: detail };
  if (/hall is closed/i.test(detail)) return { text: t("The hall is closed now. No numbers are given out."), closed: true };
  const early = detail.match(/opens at (\d{1,2}:\d{2})/i);
  if (early) return { text: t("Check-in for your booking opens at {time}. Please come back then.", { time: early[1] }) };
  if (/is not a booking code/i.test(detail)) return { text: t("That is not a booking code. A code has 8 letters and digits, like K7QM4XRT.") };
  if (/not a mainland China mobile number/i.test(detail)) return { text: t("That is not a mobile number. Please type its 11 digits.") };
  if (/not an ID number's end/i.test(detail)) return { text: t("Please type the last 4 characters of the ID number, like 123X.") };
  if (status === 404 && /phone number/i.test(detail)) return { text: t("No booking for today has this phone number. Check the number, use the booking code, or take a walk-in number.") };
  if (status === 404 && /booking/i.test(detail)) return { text: t("No booking in this hall has this code. Check the code, or take a walk-in number.") };
  if (/in the queue already/i.test(detail)) return { text: t("This booking is checked in already. If you have lost your number, please ask staff.") };
  if (/ was for .*book again/i.test(detail)) return { text: t("This booking was for another day. Please take a walk-in number, or book again.") };
  if (/cannot check in/i.test(detail)) return { text: t("This booking can no longer be checked in. Please take a walk-in number.") };
  if (status === 401 || status === 403) return { text: t("This kiosk cannot give out numbers right now. Please ask staff for help.") };
  if (status === 429) return { text: t("Too many tries. Please wait a minute and try again.") };
  if (status === 503) return { text: t("The hall is very busy right now. Please try again.") };
  return { text: t("Sorry, that did not work."), detail, help: true };
}

function showError(box, error) {
  const said = friendly(error);
  const lines = [h("p", { class: "k-error-text" }, said.text)];
  if (said.detail) lines.push(h("p", { class: "k-error-detail", lang: "en" }, said.detail));
  if (said.help) lines.push(h("p", {}, t("Please ask staff for help.")));
  box.replaceChildren(...lines);
  box.classList.add("shown");
  box.classList.remove("k-info");
  box.scrollIntoView({ block: "nearest" });
  if (said.closed) refreshHall({ closeNow: true });
}

function showMessage(box, text, { info = false } = {}) {
  box.replaceChildren(h("p", { class: "k-error-text" }, text));
  box.classList.add("shown");
  box.classList.toggle("k-info", info);
  box.scrollIntoView({ block: "nearest" });
}

function clearError(box) {
  box.replaceChildren();
  box.classList.remove("shown", "k-info");
}

// ---------------------------------------------------------------- the hall and its matters

async function refreshHall({ closeNow = false } = {}) {
  try {
    const hall = await api("GET", `/api/public/halls/${HALL}`);
    $("loading-offline").hidden = true;
    const json = JSON.stringify(hall);
    const changed = json !== state.hallJson;
    state.hall = hall;
    state.hallJson = json;
    if (changed) renderHall();
    if (!hall.open_now && (closeNow || ["loading", "start", "closed"].includes(state.screen))) showClosed();
    else if (hall.open_now && ["loading", "closed"].includes(state.screen)) show("start");
  } catch (error) {
    if (state.screen === "loading") $("loading-offline").hidden = false;
  }
}

function renderHall() {
  const hall = state.hall;
  $("hall-name").replaceChildren(
    nameOf(hall), " ", h("span", { class: "k-other", lang: OTHER_LANG }, otherNameOf(hall)),
  );
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.service : undefined;
  const list = $("matters");
  list.replaceChildren(
    ...hall.services.map((service, index) => {
      const key = index < 9 ? String(index + 1) : null;
      return h("li", {},
        h("button", {
          type: "button", class: "k-matter", "data-service": String(service.id),
          "aria-keyshortcuts": key, onclick: () => chooseMatter(service),
        },
        key ? h("span", { class: "k-key", "aria-hidden": "true" }, key) : null,
        h("span", { class: "k-name", lang: HTML_LANG }, nameOf(service)),
        h("span", { class: "k-other", lang: OTHER_LANG }, otherNameOf(service)),
        service.documents.length
          ? h("span", { class: "k-docs" }, t("Bring: {list}", { list: service.documents.join(" · ") }))
          : null));
    }),
  );
  const none = $("no-matters");
  none.hidden = hall.services.length > 0;
  none.textContent = t("No matters take numbers right now. Please ask staff.");
  if (focused) list.querySelector(`[data-service="${focused}"]`)?.focus();
  renderPriorities();
}

function renderPriorities() {
  const classes = [...state.hall.priority_classes].sort((a, b) => {
    const rank = (p) => (PRIORITY_ORDER.includes(p) ? PRIORITY_ORDER.indexOf(p) : PRIORITY_ORDER.length);
    return rank(a) - rank(b) || a.localeCompare(b);
  });
  $("priority-options").replaceChildren(
    ...classes.map((priority, index) =>
      h("label", { class: "k-option" },
        h("input", { type: "radio", name: "priority", value: priority, checked: priority === "none" }),
        index < 9 ? h("span", { class: "k-key", "aria-hidden": "true" }, String(index + 1)) : null,
        h("span", { class: "k-option-text" }, priorityLabel(priority)))),
  );
}

function showClosed() {
  const next = state.hall && state.hall.next_opening;
  $("closed-next").textContent = next
    ? t("The hall opens again: {when}", { when: whenText(next) })
    : t("No opening hours are set. Please ask staff.");
  show("closed");
}

// ---------------------------------------------------------------- taking a number

function chooseMatter(service) {
  state.matter = service;
  state.pendingIssue = null;
  $("p-name").textContent = nameOf(service);
  $("p-name").lang = HTML_LANG;
  $("p-other").textContent = otherNameOf(service);
  $("p-other").lang = OTHER_LANG;
  const docs = $("p-docs");
  docs.hidden = !service.documents.length;
  docs.textContent = t("Bring: {list}", { list: service.documents.join(" · ") });
  const none = $("priority-form").querySelector('input[value="none"]');
  if (none) none.checked = true;
  clearError($("issue-error"));
  show("priority");
}

async function issueTicket() {
  if (state.busy || !state.matter) return;
  const chosen = $("priority-form").querySelector('input[name="priority"]:checked');
  const body = { service_id: state.matter.id, priority: chosen ? chosen.value : "none" };
  const text = JSON.stringify(body);
  if (!state.pendingIssue || state.pendingIssue.body !== text) {
    state.pendingIssue = { body: text, key: randomKey() };
  }
  const button = $("issue-button");
  await busy(button, async () => {
    try {
      const ticket = await api("POST", `/api/halls/${HALL}/tickets`, {
        body, token: TOKEN, headers: { "Idempotency-Key": state.pendingIssue.key },
      });
      state.pendingIssue = null;
      showResult(ticket);
    } catch (error) {
      showError($("issue-error"), error);
    }
  });
}

/** Run ``work`` with ``button`` showing that it is busy; one action at a time. */
async function busy(button, work) {
  if (state.busy) return;
  state.busy = true;
  const label = Array.from(button.childNodes);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = t("Please wait…");
  try {
    await work();
  } finally {
    state.busy = false;
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.replaceChildren(...label);
  }
}

// ---------------------------------------------------------------- the result

/** What the result says about the ticket's print job: printed, failed, still printing
 *  (for up to PRINT_WAIT_MS, while the printer is fine), or else "may still be printing". */
function printNotice(job) {
  const stateName = job ? job.state : "no_printer";
  const photo = t("Please take a photo of this screen or write your number down.");
  if (stateName === "printed") return { kind: "printed", ok: true, lines: [t("Please take your printed ticket.")] };
  if (stateName === "failed") return { kind: "failed", lines: [t("The ticket could not be printed."), photo] };
  if (stateName === "pending" || stateName === "sent") {
    // No agent there to print it (the answer says so, or the feed said so since).
    const troubled = AGENT_AWAY.includes(job.detail) || [...prints.problems.values()].some((p) => AGENT_AWAY.includes(p));
    if (!troubled && Date.now() - job.since < PRINT_WAIT_MS) {
      return { kind: "printing", waiting: true, lines: [t("Printing your ticket…")] };
    }
    return { kind: "late", lines: [t("The ticket may still be printing."), photo] };
  }
  return { kind: "no_printer", lines: [t("This kiosk does not print tickets."), photo] };
}

/** Show the print job's state in #r-print (an aria-live region: a change is heard). */
function renderPrint() {
  window.clearTimeout(prints.timer);
  prints.timer = null;
  const job = prints.shown;
  const notice = printNotice(job);
  const box = $("r-print");
  box.dataset.state = job ? job.state : "no_printer";
  box.dataset.notice = notice.kind;
  if (notice.waiting) {
    prints.timer = window.setTimeout(renderPrint, Math.max(0, job.since + PRINT_WAIT_MS - Date.now()) + 50);
  }
  const text = notice.lines.join("\n");
  if (prints.notice !== text) {
    prints.notice = text;
    box.className = notice.ok ? "alert ok" : notice.waiting ? "alert" : "alert k-photo";
    box.replaceChildren(...notice.lines.map((line, index) => h("p", { class: index ? "" : "k-print-head" }, line)));
  }
  return notice;
}

/** The feed's news about a job: the ticket on screen (and the stored copy) follow it. */
function heardOfJob(job) {
  prints.jobs.set(job.job_id, { state: job.state, detail: job.detail });
  const shown = prints.shown;
  if (!shown || shown.jobId !== job.job_id) return;
  if (shown.state === job.state && shown.detail === job.detail) return;
  if (shown.state === "printed" || shown.state === "failed") return; // finished is final
  Object.assign(shown, { state: job.state, detail: job.detail });
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORED_RESULT) || "null");
    if (saved && saved.ticket.printing && saved.ticket.printing.job_id === job.job_id) {
      saved.ticket.printing = { ...saved.ticket.printing, state: job.state, detail: job.detail };
      sessionStorage.setItem(STORED_RESULT, JSON.stringify(saved));
    }
  } catch (error) {
    console.warn(error);
  }
}

function onPrintMessage(message) {
  if (message.type === "snapshot") {
    prints.jobs.clear();
    prints.problems = new Map(message.printers.map((p) => [p.printer_id, p.problem]));
    for (const job of message.jobs) heardOfJob(job);
  } else if (message.type === "print") {
    heardOfJob(message);
  } else if (message.type === "printer") {
    prints.problems.set(message.printer_id, message.problem);
  } else {
    return;
  }
  if (state.screen === "result" && prints.shown) renderPrint();
}

/** Follow this kiosk's print jobs on one websocket for the page's whole life; it
 *  reconnects by itself, and every connect starts with the recent jobs. */
function followPrints() {
  follow(`/ws/halls/${HALL}/kiosk?token=${encodeURIComponent(TOKEN)}`, onPrintMessage);
}

function showResult(ticket, shownAt = Date.now()) {
  sessionStorage.setItem(STORED_RESULT, JSON.stringify({ ticket, at: shownAt }));
  resetCheckIn();
  $("r-number").textContent = ticket.number;
  const fromBooking = Boolean(ticket.booking);
  const checkedIn = $("r-checked-in");
  checkedIn.hidden = !fromBooking;
  if (fromBooking) {
    const due = ticket.due_at || (ticket.kind === "appointment" ? ticket.booking.slot_start : null);
    checkedIn.replaceChildren(
      h("strong", {}, t("You are checked in")), " ",
      ticket.kind === "appointment" && due
        ? t("Your appointment is at {time}.", { time: clock(due, hallTz()) })
        : t("You came after your booking time, so you wait as a walk-in."),
    );
  }
  $("r-matter").replaceChildren(
    h("span", { lang: HTML_LANG }, nameOf(ticket.service)), " ",
    h("span", { class: "k-other", lang: OTHER_LANG }, otherNameOf(ticket.service)),
  );
  const badges = [];
  if (ticket.priority && ticket.priority !== "none") {
    badges.push(h("span", { class: "k-badge", "data-priority": ticket.priority }, priorityBadge(ticket.priority)));
  }
  $("r-badges").replaceChildren(...badges);
  const ahead = ticket.people_ahead;
  const aheadText = ahead === null || ahead === undefined ? ""
    : ahead === 0 ? t("Nobody is ahead of you")
      : ahead === 1 ? t("1 person ahead of you") : t("{n} people ahead of you", { n: ahead });
  $("r-ahead").textContent = aheadText;
  $("r-ahead").hidden = !aheadText;
  // The wait is told as a range that holds it for nine visitors in ten (docs/queue.md).
  const low = ticket.estimate_low;
  const high = ticket.estimate_high;
  const estimate = $("r-estimate");
  const told = high === null || high === undefined ? ""
    : high <= 0 ? t("You will be called very soon")
      : t("About {low}–{high} minutes' wait", { low, high });
  estimate.hidden = !told;
  estimate.textContent = told;
  prints.shown = null;
  const printing = ticket.printing;
  if (printing && printing.job_id) {
    // The feed may have told the outcome already (before this answer, or before a reload).
    const heard = prints.jobs.get(printing.job_id);
    const done = heard && ["printed", "failed"].includes(heard.state) ? heard : printing;
    prints.shown = { jobId: printing.job_id, state: done.state, detail: done.detail, since: shownAt };
  } else if (printing) {
    prints.shown = { jobId: null, state: printing.state, detail: printing.detail, since: shownAt };
  }
  prints.notice = "";
  const notice = renderPrint();
  $("r-qr").src = qrSrc(ticket.follow_url);
  $("r-qr").dataset.follow = ticket.follow_url;
  show("result");
  announce([t("Your number is {number}.", { number: ticket.number }), aheadText, ...notice.lines].filter(Boolean).join(" "));
}

// ---------------------------------------------------------------- check-in

function resetCheckIn() {
  for (const id of ["code", "phone", "id-tail"]) $(id).value = "";
  $("id-tail-field").hidden = true;
  $("choices").hidden = true;
  $("choices").replaceChildren();
  state.phoneStep = null;
  phoneSubmit().hidden = false;
  clearError($("code-error"));
  clearError($("phone-error"));
  hideKeypad();
}

function openCheckIn() {
  resetCheckIn();
  show("checkin", { focus: $("code") });
}

async function checkIn(body, button) {
  const box = body.code !== undefined ? $("code-error") : $("phone-error");
  clearError($("code-error"));
  clearError($("phone-error"));
  await busy(button, async () => {
    try {
      const ticket = await api("POST", `/api/halls/${HALL}/check-in`, { body, token: TOKEN });
      showResult(ticket);
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.extra && error.extra.reason === "several_bookings") {
        severalBookings(error, body);
      } else {
        showError(box, error);
      }
    }
  });
}

function checkInByCode(text, button) {
  const code = text.trim();
  if (!code) {
    showMessage($("code-error"), t("Please type your booking code."));
    $("code").focus();
    return;
  }
  checkIn({ code }, button);
}

function severalBookings(error, body) {
  const askId = /last 4 characters/i.test(error.message) && !body.id_tail;
  if (askId) {
    state.phoneStep = "id_tail";
    $("id-tail-field").hidden = false;
    showMessage($("phone-error"), t("Several bookings today use this phone number. Please type the last 4 characters of the ID number of the person who booked."), { info: true });
    $("id-tail").focus();
    return;
  }
  state.phoneStep = "choose";
  const choices = $("choices");
  choices.replaceChildren(
    h("ul", {}, ...(error.extra.choices || []).map((choice) => h("li", {},
      h("button", {
        type: "button", class: "k-choice",
        onclick: (event) => checkIn({ ...body, service_id: choice.service_id }, event.currentTarget),
      },
      h("span", { class: "k-name", lang: HTML_LANG }, nameOf(choice)),
      h("span", { class: "k-other", lang: OTHER_LANG }, otherNameOf(choice)),
      h("span", { class: "k-time" }, choice.time))))),
  );
  choices.hidden = false;
  hideKeypad();
  phoneSubmit().hidden = true; // a choice checks in; the phone's own button would ask again
  showMessage($("phone-error"), t("Several bookings today use this phone number. Which one are you checking in for?"), { info: true });
  choices.querySelector("button")?.focus();
}

function submitPhone(event) {
  event.preventDefault();
  const button = event.submitter || phoneSubmit();
  const phone = $("phone").value.trim();
  if (!phone) {
    showMessage($("phone-error"), t("Please type your mobile number."));
    $("phone").focus();
    return;
  }
  const tail = $("id-tail").value.trim();
  // A scanner's link typed into the phone (or ID) field is still a booking code.
  const scanned = [phone, tail].find((text) => /[a-z]/i.test(text) && text.includes("/"))
    || (/[a-z]/i.test(phone) ? phone : null);
  if (scanned) {
    $("phone").value = "";
    $("id-tail").value = "";
    checkInByCode(scanned, button);
    return;
  }
  const body = { phone };
  if (state.phoneStep === "id_tail" || tail) {
    if (!tail) {
      showMessage($("phone-error"), t("Please type the last 4 characters of the ID number, like 123X."));
      $("id-tail").focus();
      return;
    }
    body.id_tail = tail;
  }
  checkIn(body, button);
}

function phoneSubmit() {
  return $("phone-form").querySelector('button[type="submit"]');
}

function phoneChanged() {
  if (state.phoneStep === null) return;
  state.phoneStep = null;
  phoneSubmit().hidden = false;
  $("id-tail").value = "";
  $("id-tail-field").hidden = true;
  $("choices").hidden = true;
  $("choices").replaceChildren();
  clearError($("phone-error"));
}

// ---------------------------------------------------------------- on-screen keys

const KEYSETS = { digits: true, id: true, code: true };

let keypadTarget = null;

function showKeypad(input) {
  const kind = input.dataset.keys;
  if (!KEYSETS[kind]) return;
  const keypad = $("keypad");
  if (keypadTarget !== input) {
    keypadTarget = input;
    const key = (char) => h("button", { type: "button", tabindex: "-1", "data-key": char }, char);
    const del = h("button", { type: "button", tabindex: "-1", class: "secondary k-key-delete", "data-key": "delete" }, t("Delete"));
    const clear = h("button", { type: "button", tabindex: "-1", class: "secondary k-key-clear", "data-key": "clear" }, t("Clear"));
    const layouts = {
      digits: () => [..."123456789"].map(key).concat([clear, key("0"), del]),
      id: () => [..."123456789X0"].map(key).concat([del, clear]),
      code: () => [...CODE_KEYS].map(key).concat([del, clear]),
    };
    keypad.className = `k-keypad k-keypad-${kind}`;
    keypad.replaceChildren(...layouts[kind]());
    input.closest(".k-field").after(keypad);
  }
  keypad.hidden = false;
}

function hideKeypad() {
  const keypad = $("keypad");
  keypad.hidden = true;
  keypadTarget = null;
}

function pressKey(key) {
  const input = keypadTarget;
  if (!input) return;
  if (key === "delete") input.value = input.value.slice(0, -1);
  else if (key === "clear") input.value = "";
  else input.value += key;
  input.dispatchEvent(new Event("input", { bubbles: true }));
  input.focus();
}

// ---------------------------------------------------------------- keyboard and scanner

const scan = { text: "", last: 0 };
let shortcutTimer = null;

function onKeyDown(event) {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  const now = performance.now();
  const gap = now - scan.last;
  if (event.key.length === 1) {
    if (gap > SCAN_GAP_MS) scan.text = "";
    scan.text += event.key;
    scan.last = now;
    if (scan.text.length > 1 && shortcutTimer !== null) {
      window.clearTimeout(shortcutTimer); // more keys at scanner speed: not a shortcut
      shortcutTimer = null;
    }
  }
  const inField = isTextField(document.activeElement);
  if (event.key === "Enter") {
    const scanned = scan.text;
    const wasScan = scanned.length >= 6 && gap <= SCAN_GAP_MS * 2;
    scan.text = "";
    if (wasScan && !inField && ["start", "priority", "result", "checkin"].includes(state.screen)) {
      // A QR scanner typed a booking link while no field had the focus.
      event.preventDefault();
      event.stopPropagation();
      openCheckIn();
      $("code").value = scanned;
      checkInByCode(scanned, $("code-form").querySelector('button[type="submit"]'));
    }
    return;
  }
  if (event.key === "Escape") {
    if (state.busy) return;
    if (["priority", "checkin", "result"].includes(state.screen)) {
      event.preventDefault();
      goHome();
    }
    return;
  }
  if (inField || !/^[0-9]$/.test(event.key)) return;
  if (state.screen !== "start" && state.screen !== "priority") return;
  if (scan.text.length > 1) return; // in the middle of a scan
  const digit = Number(event.key);
  const screen = state.screen;
  event.preventDefault();
  window.clearTimeout(shortcutTimer);
  shortcutTimer = window.setTimeout(() => {
    shortcutTimer = null;
    if (state.screen !== screen || state.busy) return;
    if (screen === "start") {
      if (digit === 0) { openCheckIn(); return; }
      $("matters").querySelectorAll("button.k-matter")[digit - 1]?.click();
    } else {
      const option = $("priority-options").querySelectorAll("input")[digit - 1];
      if (option) { option.checked = true; option.focus(); }
    }
  }, SHORTCUT_WAIT_MS);
}

// ---------------------------------------------------------------- setting up

function checkToken() {
  if (!TOKEN) return Promise.resolve(t("This page was opened without the kiosk's device token."));
  return api("GET", "/api/auth/me", { token: TOKEN }).then(
    (me) => (me.user.role === "kiosk" && me.user.hall_id === HALL
      ? null : t("The kiosk's device token is not valid for this hall.")),
    (error) => (error.status === 401 || error.status === 403
      ? t("The kiosk's device token is not valid for this hall.") : "retry"),
  );
}

function tickClock() {
  const tz = hallTz();
  if (!tz) return;
  const now = new Date();
  const date = new Intl.DateTimeFormat(HTML_LANG, { month: "long", day: "numeric", weekday: "long", timeZone: tz }).format(now);
  $("clock").textContent = `${date} ${clock(now.toISOString(), tz)}`;
}

function restoreResult() {
  // A visitor who switched the language on the result screen sees their number again.
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORED_RESULT) || "null");
    if (saved && Date.now() - saved.at < IDLE * 1000) {
      showResult(saved.ticket, saved.at);
      return true;
    }
  } catch (error) {
    console.warn(error);
  }
  sessionStorage.removeItem(STORED_RESULT);
  return false;
}

/** Tell the server this kiosk is there (staff are told when it goes silent), again when
 *  the answer says (every 30 s by default). */
async function heartbeat() {
  const answer = await api("POST", "/api/devices/heartbeat", { token: TOKEN }).catch(() => null);
  const next = answer ? Number(answer.next_in_seconds) * 1000 : HEARTBEAT_MS;
  window.setTimeout(heartbeat, Number.isFinite(next) ? Math.max(250, next) : HEARTBEAT_MS);
}

async function start() {
  if (!sessionStorage.getItem(HOME_LANG)) sessionStorage.setItem(HOME_LANG, LANG);
  show("loading");
  let problem = await checkToken();
  while (problem === "retry") {
    $("loading-offline").hidden = false;
    await new Promise((resolve) => window.setTimeout(resolve, 5000));
    problem = await checkToken();
  }
  if (problem) {
    $("setup-why").textContent = problem;
    show("setup");
    return;
  }
  heartbeat();
  followPrints();
  await refreshHall();
  while (!state.hall) {
    await new Promise((resolve) => window.setTimeout(resolve, 5000));
    await refreshHall();
  }
  tickClock();
  window.setInterval(tickClock, 10000);
  if (!(state.hall.open_now && restoreResult()) && state.screen === "loading") show("start");
  window.setInterval(() => {
    if (["start", "closed", "loading"].includes(state.screen)) refreshHall();
    // After a long day, pick up a new version of the page while nobody is using it.
    if (state.screen === "start" && Date.now() - state.loadedAt > 12 * 3600e3 && Date.now() - state.lastInput > 600e3) {
      location.reload();
    }
  }, state.hall.open_now ? 60000 : 30000);
}

// Events wired once; screens only change what they show.
document.addEventListener("keydown", onKeyDown, true);
for (const type of ["pointerdown", "keydown", "input"]) document.addEventListener(type, onActivity, true);
window.setInterval(tickIdle, 250);
$("priority-form").addEventListener("submit", (event) => { event.preventDefault(); issueTicket(); });
$("to-checkin").addEventListener("click", openCheckIn);
$("done").addEventListener("click", goHome);
$("idle-stay").addEventListener("click", onActivity);
for (const button of document.querySelectorAll("[data-home]")) button.addEventListener("click", goHome);
$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  checkInByCode($("code").value, event.submitter || $("code-form").querySelector('button[type="submit"]'));
});
$("phone-form").addEventListener("submit", submitPhone);
$("phone").addEventListener("input", phoneChanged);
for (const input of document.querySelectorAll("#s-checkin input[data-keys]")) {
  input.addEventListener("focus", () => showKeypad(input));
}
$("keypad").addEventListener("mousedown", (event) => event.preventDefault()); // keep the field focused
$("keypad").addEventListener("click", (event) => {
  const key = event.target.closest("button[data-key]");
  if (key) pressKey(key.dataset.key);
});

start();
