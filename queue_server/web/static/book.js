// The booking site: hall → matter → day → time → details → confirmation. Each step is an
// address (/book?hall=1&service=2&date=2026-03-02&slot=…), so Back, reload and sharing work;
// choices are plain links, usable by keyboard alone. Also exports the day and time pickers
// that "My booking" (manage.js) reuses for rescheduling.

import { api, announce, clock, day, h, qrSrc, t } from "./common.js";

export const ZH = document.documentElement.lang.startsWith("zh");
const LOCALE = ZH ? "zh-CN" : "en-GB";
export const $ = (id) => document.getElementById(id);

/** A hall's, matter's or booking's name in the page language. */
export function named(thing, prefix = "name") {
  const zh = thing[`${prefix}_zh`];
  const en = thing[`${prefix}_en`];
  return (ZH ? zh : en) || zh || en || "";
}

/** "3月2日 星期一" / "Monday 2 March" for a hall date "2026-03-02". */
export function dayLabel(date) {
  const moment = new Date(`${date}T12:00:00Z`);
  return new Intl.DateTimeFormat(LOCALE, {
    weekday: "long", month: "long", day: "numeric", timeZone: "UTC",
  }).format(moment);
}

/** The hall's date today (and tomorrow), on its own clock. */
export function hallToday(timeZone) {
  const today = day(new Date().toISOString(), timeZone);
  const next = new Date(`${today}T12:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return { today, tomorrow: next.toISOString().slice(0, 10) };
}

/** A date with "today"/"tomorrow" said out (``inline``: for the middle of a sentence). */
export function dayName(date, timeZone, inline = false) {
  const { today, tomorrow } = hallToday(timeZone);
  const label = dayLabel(date);
  if (date === today) return inline ? t("today, {day}", { day: label }) : t("Today, {day}", { day: label });
  if (date === tomorrow) return inline ? t("tomorrow, {day}", { day: label }) : t("Tomorrow, {day}", { day: label });
  return label;
}

/** "3月2日 星期一 10:30" for a moment on the hall's clock, for the middle of a sentence. */
export function momentLabel(iso, timeZone) {
  return `${dayName(day(iso, timeZone), timeZone, true)} ${clock(iso, timeZone)}`;
}

/** A note when the phone's clock is in another timezone than the hall's. */
export function zoneNote(timeZone) {
  const mine = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return mine === timeZone ? "" : t("All times are the hall's local time ({zone}).", { zone: timeZone });
}

export function sameMoment(a, b) {
  return new Date(a).getTime() === new Date(b).getTime();
}

/** The address of this page with some query values changed (null removes one). */
export function urlWith(changes, keep = true) {
  const query = new URLSearchParams(keep ? location.search : "");
  const lang = new URLSearchParams(location.search).get("lang");
  if (!keep && lang) query.set("lang", lang);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined) query.delete(key);
    else query.set(key, String(value));
  }
  const text = query.toString();
  return `${location.pathname}${text ? `?${text}` : ""}`;
}

/** Keep the language links of the header pointing at the current address. */
export function updateLangLinks() {
  for (const link of document.querySelectorAll("header a.lang")) {
    const target = new URL(link.href, location.href).searchParams.get("lang");
    if (!target) continue;
    const query = new URLSearchParams(location.search);
    query.set("lang", target);
    link.href = `?${query}`;
  }
}

/** Intercept in-page links (``data-nav``): the address changes, the page re-renders. */
export function routeLinks(render) {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    if (link.hasAttribute("data-back") && history.state && history.state.app) {
      history.back();
      return;
    }
    const method = link.hasAttribute("data-back") ? "replaceState" : "pushState";
    history[method]({ app: true }, "", link.href);
    render(true);
  });
  window.addEventListener("popstate", () => render(true));
}

/** The days of a slot list as big choices; a day without a free place is not a link. */
export function renderDays(list, days, timeZone, hrefFor) {
  list.replaceChildren();
  if (!days.length) {
    list.append(h("li", {}, h("p", { class: "alert" }, t("No day can be booked at the moment."))));
    return;
  }
  for (const d of days) {
    const free = d.slots.filter((s) => s.free > 0).length;
    const title = h("span", { class: "title" }, dayName(d.date, timeZone));
    if (free > 0) {
      const sub = h("span", { class: "sub" }, t("{n} times with free places", { n: free }));
      list.append(h("li", {}, h("a", { class: "choice", href: hrefFor(d.date), "data-nav": true, "data-date": d.date }, title, sub)));
    } else {
      const why = d.slots.length ? t("Fully booked") : t("No times left");
      list.append(h("li", {}, h("div", { class: "choice unavailable", "data-date": d.date }, title,
        h("span", { class: "sub" }, why))));
    }
  }
}

function partOfDay(time) {
  const hour = Number(time.slice(0, 2));
  if (hour < 6) return t("Early hours");
  if (hour < 12) return t("Morning");
  if (hour < 18) return t("Afternoon");
  return t("Evening");
}

/** A day's slots, grouped into morning, afternoon and evening; full ones are shown but not
 *  links. ``current`` marks the visitor's present slot when rescheduling. */
export function renderSlots(box, slots, hrefFor, current = null) {
  box.replaceChildren();
  if (!slots.length) {
    box.append(h("p", { class: "alert" }, t("No times left on this day. Please choose another day.")));
    return;
  }
  let group = null;
  let list = null;
  for (const s of slots) {
    const part = partOfDay(s.time);
    if (part !== group) {
      group = part;
      list = h("ul", { class: "slots" });
      box.append(h("div", { class: "slot-group" }, h("h3", {}, part), list));
    }
    const time = h("span", { class: "time" }, s.time);
    if (current && sameMoment(current, s.start)) {
      list.append(h("li", {}, h("div", { class: "slot full current", "data-start": s.start }, time,
        h("span", { class: "places" }, t("Your current time")))));
    } else if (s.free > 0) {
      const places = h("span", { class: "places" }, t("{n} places left", { n: s.free }));
      list.append(h("li", {}, h("a", { class: "slot", href: hrefFor(s), "data-nav": true, "data-start": s.start }, time, places)));
    } else {
      list.append(h("li", {}, h("div", { class: "slot full", "data-start": s.start }, time,
        h("span", { class: "places" }, t("Full")))));
    }
  }
}

/** Buttons for the next free slots a "slot full" refusal offers. */
export function renderNextFree(box, nextFree, timeZone, onPick) {
  box.replaceChildren();
  if (!nextFree || !nextFree.length) {
    box.append(h("p", {}, t("No other time is free soon. Please choose another day.")));
    return;
  }
  box.append(h("p", {}, t("These times are still free:")));
  const list = h("ul", { class: "slots" });
  for (const option of nextFree) {
    list.append(h("li", {}, h("button", {
      type: "button", class: "slot secondary", "data-start": option.start,
      onclick: () => onPick(option),
    }, h("span", { class: "time" }, clock(option.start, timeZone)),
    h("span", { class: "places" }, dayName(day(option.start, timeZone), timeZone)))));
  }
  box.append(list);
}

/** The mobile number in stored form, or null when it is not one. */
export function cleanPhone(text) {
  let digits = text.normalize("NFKC").replace(/[\s\-().]/g, "");
  for (const prefix of ["+86", "0086", "86"]) {
    if (digits.startsWith(prefix) && digits.length === prefix.length + 11) {
      digits = digits.slice(prefix.length);
      break;
    }
  }
  return /^1[3-9]\d{9}$/.test(digits) ? digits : null;
}

/** Show or clear a field's inline error (the message sits between label and input). */
export function fieldError(input, message) {
  const error = $(`${input.id}-error`);
  const hint = $(`${input.id}-hint`);
  error.textContent = message || "";
  error.hidden = !message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
  const described = [message ? error.id : null, hint ? hint.id : null].filter(Boolean).join(" ");
  if (described) input.setAttribute("aria-describedby", described);
}

// --- the booking site ------------------------------------------------------------------

const STEPS = ["hall", "service", "date", "slot", "details"];
const cache = { halls: null, hall: new Map(), slots: new Map() };
const typed = { name: "", phone: "", id_tail: "" };
let renderCount = 0;

function state() {
  const q = new URLSearchParams(location.search);
  return {
    hall: q.get("hall"), service: q.get("service"), date: q.get("date"),
    slot: q.get("slot"), booked: q.get("booked"),
  };
}

function stepOf(s) {
  if (s.booked) return "done";
  if (!s.hall) return "hall";
  if (!s.service) return "service";
  if (!s.date) return "date";
  if (!s.slot) return "slot";
  return "details";
}

async function loadHall(id) {
  if (!cache.hall.has(id)) cache.hall.set(id, await api("GET", `/api/public/halls/${encodeURIComponent(id)}`));
  return cache.hall.get(id);
}

async function loadSlots(hallId, serviceId, maxAgeMs = 60000) {
  const key = `${hallId}/${serviceId}`;
  const stored = cache.slots.get(key);
  if (stored && Date.now() - stored.at < maxAgeMs) return stored.data;
  const data = await api("GET", `/api/public/halls/${encodeURIComponent(hallId)}/services/${encodeURIComponent(serviceId)}/slots?days=31`);
  cache.slots.set(key, { at: Date.now(), data });
  return data;
}

function bookableService(hall, serviceId) {
  const id = Number(serviceId);
  const service = hall.services.find((s) => s.id === id);
  if (!service || !hall.bookable_service_ids.includes(id)) {
    throw new Error(t("This matter cannot be booked online. Please choose another."));
  }
  return service;
}

function setBack(step, s) {
  const back = $(`back-${step}`);
  if (!back) return;
  const parent = {
    service: { hall: null, service: null, date: null, slot: null },
    date: { service: null, date: null, slot: null },
    slot: { date: null, slot: null },
    details: { slot: null },
  }[step];
  back.href = urlWith(parent);
}

function showSummary(items) {
  const box = $("summary");
  const list = box.querySelector("dl");
  list.replaceChildren();
  for (const [label, value] of items) list.append(h("dt", {}, label), h("dd", {}, value));
  box.hidden = items.length === 0;
}

function showProgress(step) {
  const box = $("progress");
  const index = STEPS.indexOf(step);
  box.hidden = index < 0;
  if (index < 0) return;
  box.querySelector("p").textContent = t("Step {n} of {total}", { n: index + 1, total: STEPS.length });
  box.querySelectorAll("li").forEach((li, i) => {
    li.className = i < index ? "done" : i === index ? "current" : "";
  });
}

function problem(step, message, link = null) {
  const box = $(`problem-${step}`);
  box.replaceChildren(h("p", {}, message));
  if (link) box.append(h("p", {}, h("a", { href: link.href, "data-nav": true }, link.text)));
  box.hidden = false;
}

const fill = {
  async hall() {
    cache.halls = cache.halls || (await api("GET", "/api/public/halls"));
    showSummary([]);
    const list = $("halls");
    list.replaceChildren();
    for (const hall of cache.halls) {
      list.append(h("li", {}, h("a", { class: "choice", href: urlWith({ hall: hall.id, service: null, date: null, slot: null }), "data-nav": true, "data-hall": hall.id },
        h("span", { class: "title" }, named(hall)))));
    }
    if (!cache.halls.length) list.append(h("li", {}, h("p", {}, t("No hall takes bookings at the moment."))));
  },

  async service(s) {
    const hall = await loadHall(s.hall);
    showSummary([[t("Hall"), named(hall)]]);
    const list = $("services");
    list.replaceChildren();
    const services = hall.services.filter((m) => hall.bookable_service_ids.includes(m.id));
    for (const m of services) {
      const docs = m.documents.length
        ? [h("span", { class: "sub" }, t("Bring:")), h("ul", { class: "docs" }, m.documents.map((d) => h("li", {}, d)))]
        : [h("span", { class: "sub" }, t("No materials needed."))];
      list.append(h("li", {}, h("a", { class: "choice", href: urlWith({ service: m.id, date: null, slot: null }), "data-nav": true, "data-service": m.id },
        h("span", { class: "title" }, named(m)), ...docs)));
    }
    if (!services.length) list.append(h("li", {}, h("p", {}, t("This hall takes no bookings online. Please come to the hall and take a number."))));
  },

  async date(s) {
    const hall = await loadHall(s.hall);
    const service = bookableService(hall, s.service);
    showSummary([[t("Hall"), named(hall)], [t("Matter"), named(service)]]);
    const slots = await loadSlots(s.hall, s.service);
    renderDays($("days"), slots.days, slots.timezone, (date) => urlWith({ date, slot: null }));
    const note = $("release-note");
    note.textContent = slots.next_release
      ? t("Another day opens for booking at {time} on {day}.", {
        time: clock(slots.next_release, slots.timezone), day: dayLabel(day(slots.next_release, slots.timezone)),
      })
      : "";
    $("docs-reminder").replaceChildren(...service.documents.map((d) => h("li", {}, d)));
    $("docs-reminder-box").hidden = service.documents.length === 0;
  },

  async slot(s) {
    const hall = await loadHall(s.hall);
    const service = bookableService(hall, s.service);
    const slots = await loadSlots(s.hall, s.service);
    showSummary([[t("Hall"), named(hall)], [t("Matter"), named(service)], [t("Day"), dayName(s.date, slots.timezone)]]);
    $("zone-note").textContent = zoneNote(slots.timezone);
    const theDay = slots.days.find((d) => d.date === s.date);
    if (!theDay) {
      $("slots").replaceChildren();
      problem("slot", t("This day cannot be booked. Please choose another day."),
        { href: urlWith({ date: null, slot: null }), text: t("Choose another day") });
      return;
    }
    renderSlots($("slots"), theDay.slots, (slot) => urlWith({ slot: slot.start }));
  },

  async details(s) {
    const hall = await loadHall(s.hall);
    const service = bookableService(hall, s.service);
    const slots = await loadSlots(s.hall, s.service, Infinity);
    const theDay = slots.days.find((d) => d.date === s.date);
    const slot = theDay && theDay.slots.find((x) => sameMoment(x.start, s.slot));
    showSummary([
      [t("Hall"), named(hall)], [t("Matter"), named(service)],
      [t("Day"), dayName(s.date, slots.timezone)], [t("Time"), slot ? slot.time : clock(s.slot, slots.timezone)],
    ]);
    $("details-zone-note").textContent = zoneNote(slots.timezone);
    if (!slot) {
      problem("details", t("This time cannot be booked. Please choose another time."),
        { href: urlWith({ slot: null }), text: t("Choose another time") });
    } else if (slot.free <= 0) {
      problem("details", t("Sorry, this time is fully booked. Please choose another time."),
        { href: urlWith({ slot: null }), text: t("Choose another time") });
    }
    for (const key of Object.keys(typed)) $(key).value = typed[key];
    $("next-free").hidden = true;
    $("form-error").hidden = true;
  },

  async done(s) {
    showSummary([]);
    const stored = sessionStorage.getItem(`onedoor-booking-${s.booked}`);
    const box = $("confirmation");
    if (!stored) {
      box.hidden = true;
      problem("done", t("This page no longer holds the booking's details. Look it up with its code and your phone number."),
        null);
      $("problem-done").append(h("p", {}, h("a", { class: "button", href: `/book/manage?code=${encodeURIComponent(s.booked)}` }, t("Look up my booking"))));
      return;
    }
    box.hidden = false;
    showBooking(JSON.parse(stored));
  },
};

/** Fill the confirmation with a booking as the server answered it. */
async function showBooking(b) {
  const tz = b.timezone;
  const code = $("code");
  code.dataset.code = b.code;
  code.replaceChildren(
    h("span", { "aria-hidden": "true" }, h("span", { class: "group" }, b.code.slice(0, 4)), h("span", { class: "gap" }), h("span", { class: "group" }, b.code.slice(4))),
    h("span", { class: "visually-hidden" }, b.code.split("").join(" ")),
  );
  $("qr").src = qrSrc(b.qr_url);
  $("done-matter").textContent = named(b.service);
  $("done-when").textContent = `${dayName(b.local_date, tz)} ${b.local_time}`;
  $("done-zone").textContent = zoneNote(tz);
  $("done-hall").textContent = named(b, "hall_name");
  $("done-name").textContent = b.name;
  $("done-phone").textContent = b.phone || "";
  $("done-docs").replaceChildren(...b.service.documents.map((d) => h("li", {}, d)));
  $("done-docs-box").hidden = b.service.documents.length === 0;
  $("done-checkin").textContent = t(
    "On the day, check in at the kiosk in the hall from {opens}. Come by {until} to be served at your time.",
    { opens: clock(b.checkin_opens, tz), until: clock(b.checkin_until, tz) },
  );
  $("done-cancel").textContent = t("You can cancel or change the time online until {when}.",
    { when: momentLabel(b.cancel_until, tz) });
  $("manage-link").href = `/book/manage?code=${encodeURIComponent(b.code)}`;
  $("done-remote").hidden = true;
  try {
    const hall = await loadHall(String(b.hall_id));
    if (hall.remote_checkin) {
      $("done-remote").textContent = t("You can also check in from your phone from {opens}: open “My booking”.",
        { opens: clock(b.checkin_opens, tz) });
      $("done-remote").hidden = false;
    }
  } catch (error) {
    // The confirmation stands without it.
  }
}

function readForm() {
  return { name: $("name").value, phone: $("phone").value, id_tail: $("id_tail").value };
}

function validate(values) {
  const errors = {};
  const name = values.name.normalize("NFKC").trim().replace(/\s+/g, " ");
  if (!name) errors.name = t("Enter the name of the person who will come.");
  else if (name.length > 50) errors.name = t("The name is too long: at most 50 characters.");
  if (!values.phone.trim()) errors.phone = t("Enter a mobile phone number.");
  else if (!cleanPhone(values.phone)) errors.phone = t("Enter an 11-digit mobile number, e.g. 138 0013 8000.");
  const tail = values.id_tail.normalize("NFKC").replace(/[\s\-().]/g, "").toUpperCase();
  if (tail && !(tail.length >= 4 && /^[0-9A-Z]+$/.test(tail))) {
    errors.id_tail = t("Enter the last 4 characters of the ID number, e.g. 123X.");
  }
  return { errors, clean: { name, phone: cleanPhone(values.phone), id_tail: tail ? tail.slice(-4) : null } };
}

function showErrors(errors) {
  for (const key of ["name", "phone", "id_tail"]) fieldError($(key), errors[key]);
  const first = ["name", "phone", "id_tail"].find((key) => errors[key]);
  if (first) {
    $(first).focus();
    announce(errors[first]);
  }
  return Boolean(first);
}

function fieldOf(detail) {
  if (/mobile|phone/i.test(detail)) return "phone";
  if (/ID number|id_tail/i.test(detail)) return "id_tail";
  if (/name/i.test(detail)) return "name";
  return null;
}

let sending = false;

async function submit(event) {
  event.preventDefault();
  if (sending) return;
  const s = state();
  const values = readForm();
  Object.assign(typed, values);
  const { errors, clean } = validate(values);
  $("form-error").hidden = true;
  $("next-free").hidden = true;
  if (showErrors(errors)) return;
  const button = $("book-button");
  sending = true;
  button.setAttribute("aria-disabled", "true");
  button.textContent = t("Booking…");
  try {
    const booking = await api("POST", `/api/public/halls/${encodeURIComponent(s.hall)}/bookings`, {
      body: { service_id: Number(s.service), slot_start: s.slot, name: clean.name, phone: clean.phone,
              ...(clean.id_tail ? { id_tail: clean.id_tail } : {}) },
    });
    sessionStorage.setItem(`onedoor-booking-${booking.code}`, JSON.stringify(booking));
    cache.slots.delete(`${s.hall}/${s.service}`);
    for (const key of Object.keys(typed)) typed[key] = "";
    history.replaceState(history.state, "", urlWith({ service: null, date: null, slot: null, booked: booking.code }));
    await render(true);
    announce(t("Booked. Your booking code is {code}.", { code: booking.code.split("").join(" ") }));
  } catch (error) {
    cache.slots.delete(`${s.hall}/${s.service}`);
    const box = $("form-error");
    if (error.status === 409 && error.extra && error.extra.reason === "slot_full") {
      box.textContent = t("Sorry, this time has just been fully booked. Please choose another time.");
      box.hidden = false;
      const hall = cache.hall.get(s.hall);
      const tz = (hall && hall.timezone) || "Asia/Shanghai";
      renderNextFree($("next-free-list"), error.extra.next_free, tz, (option) => {
        history.replaceState(history.state, "", urlWith({ date: day(option.start, tz), slot: option.start }));
        render(false).then(() => {
          $("book-button").focus();
          announce(t("Time changed to {when}. Check your details and confirm.", { when: momentLabel(option.start, tz) }));
        });
      });
      $("next-free").hidden = false;
    } else if (error.status === 400 && fieldOf(error.message)) {
      showErrors({ [fieldOf(error.message)]: error.message });
    } else {
      box.replaceChildren(h("strong", {}, t("The booking could not be made:")), " ", error.message);
      box.hidden = false;
    }
  } finally {
    sending = false;
    button.removeAttribute("aria-disabled");
    button.textContent = t("Confirm booking");
  }
}

async function render(focus = false) {
  const count = ++renderCount;
  const s = state();
  const step = stepOf(s);
  for (const name of [...STEPS, "done"]) {
    $(`step-${name}`).hidden = name !== step;
    $(`problem-${name}`).hidden = true;
  }
  showProgress(step);
  setBack(step, s);
  updateLangLinks();
  const heading = $(`step-${step}`).querySelector("h2");
  document.title = `${heading.textContent} · ${t("Book an appointment")}`;
  try {
    await fill[step](s);
  } catch (error) {
    if (count !== renderCount) return;
    const back = step === "hall" ? null : { href: urlWith({ hall: null, service: null, date: null, slot: null, booked: null }), text: t("Start again") };
    problem(step, error.message, back);
  }
  if (count !== renderCount) return;
  if (focus) heading.focus();
}

if ($("book-app")) {
  routeLinks(render);
  $("details").addEventListener("submit", submit);
  $("print").addEventListener("click", () => window.print());
  for (const key of Object.keys(typed)) {
    $(key).addEventListener("input", (event) => { typed[key] = event.target.value; });
  }
  window.onedoorBook = { ready: render(false) };
}
