// "My booking": find a booking by code and phone, see it, cancel it (after a confirmation),
// move it to another time of the same matter, and check in from the phone where the hall
// allows it. The address says where the visitor is (/book/manage?code=…&do=move&date=…);
// the phone number stays in this tab's sessionStorage, never in the address.

import { api, announce, clock, h, qrSrc, t } from "./common.js";
import {
  $, cleanPhone, dayName, fieldError, momentLabel, named, renderDays, renderNextFree,
  renderSlots, routeLinks, sameMoment, updateLangLinks, urlWith, zoneNote,
} from "./book.js";

const ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const SESSION = "onedoor-manage";
const SECTIONS = ["find", "view", "cancel", "move", "erase"];
let current = null; // the booking as the server last answered it
let hall = null;
let slotsCache = null;
let renderCount = 0;
let busy = false;

function cleanCode(text) {
  const tail = text.trim().replace(/\/+$/, "").split("/").pop();
  const cleaned = tail.toUpperCase().replace(/[\s-]/g, "");
  return cleaned.length === 8 && [...cleaned].every((ch) => ALPHABET.includes(ch)) ? cleaned : null;
}

function state() {
  const q = new URLSearchParams(location.search);
  return { code: q.get("code"), action: q.get("do"), date: q.get("date"), slot: q.get("slot") };
}

function remembered(code) {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION) || "null");
    return stored && stored.code === code ? stored.phone : null;
  } catch (error) {
    return null;
  }
}

function sectionOf(s) {
  const code = s.code && cleanCode(s.code);
  if (!code || !remembered(code)) return "find";
  if (s.action === "cancel") return "cancel";
  if (s.action === "move") return "move";
  if (s.action === "erase") return "erase";
  return "view";
}

function notice(text) {
  const box = $("notice");
  box.textContent = text || "";
  box.hidden = !text;
}

function problem(where, message) {
  const box = $(`problem-${where}`);
  box.textContent = message || "";
  box.hidden = !message;
}

async function loadBooking(code, force = false) {
  if (!force && current && current.code === code) return current;
  const phone = remembered(code);
  current = await api("GET", `/api/bookings/${encodeURIComponent(code)}?phone=${encodeURIComponent(phone)}`);
  return current;
}

async function loadHall(id) {
  if (!hall || hall.id !== id) hall = await api("GET", `/api/public/halls/${id}`);
  return hall;
}

const STATE_TEXT = {
  booked: () => t("Booked"),
  checked_in: () => t("Checked in"),
  cancelled: () => t("Cancelled"),
  no_show: () => t("Missed: not checked in in time"),
  expired_to_walk_in: () => t("Checked in late: queued as a walk-in"),
};

function codeNode(code) {
  return [
    h("span", { "aria-hidden": "true" }, h("span", { class: "group" }, code.slice(0, 4)), h("span", { class: "gap" }), h("span", { class: "group" }, code.slice(4))),
    h("span", { class: "visually-hidden" }, code.split("").join(" ")),
  ];
}

const fill = {
  async find(s) {
    if (s.code && !$("find-code").value) $("find-code").value = s.code;
  },

  async view(s) {
    // The links first, before anything is awaited: the section is shown as this starts,
    // and a tap on a link still pointing at the page itself went nowhere.
    $("move-link").href = urlWith({ do: "move", date: null, slot: null });
    $("cancel-link").href = urlWith({ do: "cancel", date: null, slot: null });
    $("erase-link").href = urlWith({ do: "erase", date: null, slot: null });
    const b = await loadBooking(cleanCode(s.code));
    const place = await loadHall(b.hall_id);
    const tz = b.timezone;
    const live = b.state === "booked";
    $("view-state").textContent = (STATE_TEXT[b.state] || (() => b.state))();
    $("view-state").className = `badge state-${b.state}`;
    $("view-code").dataset.code = b.code;
    $("view-code").replaceChildren(...codeNode(b.code));
    $("view-qr").hidden = !live;
    if (live) $("view-qr").src = qrSrc(b.qr_url);
    $("view-matter").textContent = named(b.service);
    $("view-when").textContent = `${dayName(b.local_date, tz)} ${b.local_time}`;
    $("view-zone").textContent = zoneNote(tz);
    $("view-hall").textContent = named(b, "hall_name");
    $("view-name").textContent = b.name;
    $("view-phone").textContent = b.phone || "";
    $("view-docs").replaceChildren(...b.service.documents.map((d) => h("li", {}, d)));
    $("view-docs-box").hidden = !live || b.service.documents.length === 0;
    // Check-in: from the phone where the hall allows it, else plainly at the kiosk.
    $("checkin-box").hidden = !live;
    $("checkin-remote").hidden = !place.remote_checkin;
    $("checkin-kiosk").hidden = Boolean(place.remote_checkin);
    const hours = { opens: clock(b.checkin_opens, tz), until: clock(b.checkin_until, tz) };
    $("checkin-remote-text").textContent = t(
      "You can check in from this phone from {opens} on the day of your booking. Come by {until} to be served at your time.", hours);
    $("checkin-kiosk-text").textContent = t(
      "This hall does not take check-in from a phone. When you arrive, check in at the kiosk in the hall (from {opens}; come by {until} to be served at your time).", hours);
    $("change-box").hidden = !live;
    $("rebook").hidden = live;
    const late = Date.now() > new Date(b.cancel_until).getTime();
    $("change-until").textContent = late
      ? t("Changing or cancelling online closed at {when}. Please ask at the hall.", { when: momentLabel(b.cancel_until, tz) })
      : t("You can change or cancel online until {when}.", { when: momentLabel(b.cancel_until, tz) });
    $("change-actions").hidden = late;
    // The server knows the ticket a checked-in booking became, wherever it was checked in
    // (kiosk, counter or this phone), so the link does not depend on this browser's storage.
    const token = b.follow_token;
    $("follow-box").hidden = !(b.state === "checked_in" || b.state === "expired_to_walk_in");
    $("follow-link").hidden = !token;
    if (token) $("follow-link").href = `/t/${encodeURIComponent(token)}`;
  },

  async cancel(s) {
    $("back-cancel").href = urlWith({ do: null });
    const b = await loadBooking(cleanCode(s.code));
    $("cancel-what").textContent = t("{matter}, {when}", {
      matter: named(b.service), when: `${dayName(b.local_date, b.timezone)} ${b.local_time}`,
    });
    $("cancel-yes").hidden = b.state !== "booked";
  },

  async erase(s) {
    $("back-erase").href = urlWith({ do: null });
    await loadBooking(cleanCode(s.code));
  },

  async move(s) {
    const b = await loadBooking(cleanCode(s.code));
    const tz = b.timezone;
    const phase = !s.date ? "date" : !s.slot ? "slot" : "confirm";
    for (const name of ["date", "slot", "confirm"]) $(`move-${name}`).hidden = name !== phase;
    const titles = { date: t("Choose a new day"), slot: t("Choose a new time"), confirm: t("Change to this time?") };
    $("title-move").textContent = titles[phase];
    $("back-move").href = phase === "date" ? urlWith({ do: null }) : phase === "slot" ? urlWith({ date: null }) : urlWith({ slot: null });
    $("move-now").textContent = t("Now booked: {matter}, {when}", {
      matter: named(b.service), when: `${dayName(b.local_date, tz)} ${b.local_time}`,
    });
    if (!slotsCache || slotsCache.key !== b.code || Date.now() - slotsCache.at > 60000 || phase === "date") {
      const data = await api("GET", `/api/public/halls/${b.hall_id}/services/${b.service.id}/slots?days=31`);
      slotsCache = { key: b.code, at: Date.now(), data };
    }
    const slots = slotsCache.data;
    if (phase === "date") {
      renderDays($("move-days"), slots.days, tz, (date) => urlWith({ date, slot: null }));
      return;
    }
    const theDay = slots.days.find((d) => d.date === s.date);
    if (phase === "slot") {
      $("move-zone").textContent = zoneNote(tz);
      $("move-day").textContent = theDay ? dayName(theDay.date, tz) : "";
      if (!theDay) {
        $("move-slots").replaceChildren();
        problem("move", t("This day cannot be booked. Please choose another day."));
        return;
      }
      renderSlots($("move-slots"), theDay.slots, (slot) => urlWith({ slot: slot.start }), b.slot_start);
      return;
    }
    $("move-to").textContent = `${dayName(s.date, tz)} ${clock(s.slot, tz)}`;
    $("move-next-free").hidden = true;
    const slot = theDay && theDay.slots.find((x) => sameMoment(x.start, s.slot));
    if (!slot || slot.free <= 0) problem("move", t("Sorry, this time is fully booked. Please choose another time."));
  },
};

async function render(focus = false) {
  const count = ++renderCount;
  const s = state();
  const section = sectionOf(s);
  for (const name of SECTIONS) {
    $(`section-${name}`).hidden = name !== section;
    problem(name, "");
  }
  if (section !== "view") notice(""); // a success message belongs to the booking's view
  updateLangLinks();
  try {
    await fill[section](s);
  } catch (error) {
    if (count !== renderCount) return;
    if (error.status === 404) {
      // The code and phone no longer match (or never did): ask again.
      sessionStorage.removeItem(SESSION);
      current = null;
      history.replaceState(history.state, "", urlWith({ do: null, date: null, slot: null }));
      await render(focus);
      problem("find", t("No booking has this code and phone number. Please check both."));
      return;
    }
    problem(section, error.message);
  }
  if (count !== renderCount) return;
  const heading = $(`section-${section}`).querySelector("h2");
  document.title = `${heading.textContent} · ${t("My booking")}`;
  if (focus) heading.focus();
}

async function find(event) {
  event.preventDefault();
  if (busy) return;
  const code = cleanCode($("find-code").value);
  const phone = cleanPhone($("find-phone").value);
  fieldError($("find-code"), code ? "" : t("Enter the booking code: 8 letters and digits (there is no 0, O, 1 or I)."));
  fieldError($("find-phone"), phone ? "" : t("Enter the mobile number you booked with, e.g. 138 0013 8000."));
  if (!code || !phone) {
    const first = code ? $("find-phone") : $("find-code");
    first.focus();
    announce(first.id === "find-code" ? $("find-code-error").textContent : $("find-phone-error").textContent);
    return;
  }
  busy = true;
  $("find-button").setAttribute("aria-disabled", "true");
  try {
    current = await api("GET", `/api/bookings/${encodeURIComponent(code)}?phone=${encodeURIComponent(phone)}`);
    sessionStorage.setItem(SESSION, JSON.stringify({ code, phone }));
    const url = urlWith({ code, do: null, date: null, slot: null });
    if (state().code === code) history.replaceState(history.state, "", url);
    else history.pushState({ app: true }, "", url);
    notice("");
    await render(true);
  } catch (error) {
    problem("find", error.status === 404 ? t("No booking has this code and phone number. Please check both.") : error.message);
  } finally {
    busy = false;
    $("find-button").removeAttribute("aria-disabled");
  }
}

/** Run a change on the booking (cancel, move, check in); show the server's refusal. */
async function act(where, button, work) {
  if (busy) return;
  busy = true;
  button.setAttribute("aria-disabled", "true");
  problem(where, "");
  try {
    await work(remembered(current.code));
  } catch (error) {
    if (error.status === 409 && error.extra && error.extra.reason === "slot_full") {
      problem(where, t("Sorry, this time has just been fully booked. Please choose another time."));
      renderNextFree($("move-next-free-list"), error.extra.next_free, current.timezone, (option) => {
        history.replaceState(history.state, "", urlWith({ date: option.start && dayOf(option.start), slot: option.start }));
        render(false).then(() => $("move-yes").focus());
      });
      $("move-next-free").hidden = false;
    } else {
      problem(where, `${t("This could not be done:")} ${error.message}`);
    }
    $(`problem-${where}`).scrollIntoView({ block: "center" });
  } finally {
    busy = false;
    button.removeAttribute("aria-disabled");
  }
}

function dayOf(iso) {
  return new Intl.DateTimeFormat("sv-SE", { timeZone: current.timezone }).format(new Date(iso));
}

function backToView(message) {
  history.replaceState(history.state, "", urlWith({ do: null, date: null, slot: null }));
  notice(message);
  return render(true).then(() => announce(message));
}

function setup() {
  routeLinks(render);
  $("find-form").addEventListener("submit", find);
  $("cancel-yes").addEventListener("click", (event) => act("cancel", event.currentTarget, async (phone) => {
    current = await api("POST", `/api/bookings/${current.code}/cancel`, { body: { phone } });
    await backToView(t("The booking is cancelled. Your place is free for others."));
  }));
  $("erase-yes").addEventListener("click", (event) => act("erase", event.currentTarget, async (phone) => {
    const erased = await api("POST", `/api/bookings/${current.code}/erase`, { body: { phone } });
    // Without a phone number the booking cannot be looked up again: back to the start.
    sessionStorage.removeItem(SESSION);
    current = null;
    history.replaceState(history.state, "", urlWith({ code: null, do: null, date: null, slot: null }));
    await render(true);
    const message = t("Your details are deleted from booking {code}.", { code: erased.code });
    notice(message);
    announce(message);
  }));
  $("move-yes").addEventListener("click", (event) => act("move", event.currentTarget, async (phone) => {
    const { slot } = state();
    current = await api("POST", `/api/bookings/${current.code}/reschedule`, { body: { phone, slot_start: slot } });
    slotsCache = null;
    await backToView(t("The time is changed: {when}. Your code stays the same.", {
      when: `${dayName(current.local_date, current.timezone)} ${current.local_time}`,
    }));
  }));
  $("checkin-button").addEventListener("click", (event) => act("view", event.currentTarget, async (phone) => {
    const ticket = await api("POST", `/api/bookings/${current.code}/check-in`, { body: { phone } });
    announce(t("Checked in. Your number is {number}.", { number: ticket.number }));
    location.assign(`/t/${encodeURIComponent(ticket.follow_token)}`);
  }));
  $("other-booking").addEventListener("click", () => {
    sessionStorage.removeItem(SESSION);
    current = null;
    notice("");
    $("find-code").value = "";
    $("find-phone").value = "";
    history.pushState({ app: true }, "", urlWith({ code: null, do: null, date: null, slot: null }));
    render(true);
  });
  window.onedoorManage = { ready: render(false) };
}

setup();
