// The hall's configuration: its names, timezone, opening hours and priority boosts; its
// matters; its counters and their profiles; its calendar; each matter's booking rules.
import { ApiError, h, t } from "./common.js";
import { checkField, nameOf, newId, onSubmit, periodsEditor, say, showError, table } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function weekdayName(key) {
  return {
    mon: t("Monday"), tue: t("Tuesday"), wed: t("Wednesday"), thu: t("Thursday"),
    fri: t("Friday"), sat: t("Saturday"), sun: t("Sunday"),
  }[key];
}

function priorityName(key) {
  return { elderly: t("Elderly visitors"), disability: t("Visitors with disabilities"), pregnancy: t("Pregnant visitors") }[key] || key;
}

function levelName(level) {
  return { primary: t("Primary"), secondary: t("Secondary") }[level] || level;
}

function fillTimezones() {
  const list = $("timezones");
  if (list.children.length || !Intl.supportedValuesOf) return;
  list.append(...Intl.supportedValuesOf("timeZone").map((zone) => h("option", { value: zone })));
}

// ---------------------------------------------------------------- hall

const hallState = { days: {}, boosts: null };

function boostRow(key, value, isNew = false) {
  const id = newId("boost");
  const minutes = h("input", {
    id: `${id}-minutes`, type: "number", min: "0", max: "240", step: "1", required: true, value: String(value),
    inputmode: "numeric", class: "short", name: "boost-minutes",
  });
  const remove = h("button", { type: "button", class: "secondary small" }, t("Remove"));
  let row;
  if (isNew) {
    const keyInput = h("input", {
      id: `${id}-key`, name: "boost-key", required: true, pattern: "^[a-z][a-z0-9_]{0,31}$", maxlength: "32",
      autocomplete: "off", spellcheck: "false", class: "medium", "aria-describedby": `${id}-key-hint`,
      "data-error": t("Use small letters a–z, digits and _, starting with a letter, e.g. veteran."),
    });
    remove.setAttribute("aria-label", t("Remove this new priority"));
    row = h("li", { class: "boost" },
      h("div", { class: "inline-field" },
        h("label", { for: keyInput.id }, t("Priority code")),
        h("p", { class: "hint", id: `${id}-key-hint` }, t("What the kiosk sends, e.g. veteran.")), keyInput),
      h("div", { class: "inline-field" }, h("label", { for: minutes.id }, t("Minutes")), minutes),
      remove);
  } else {
    remove.setAttribute("aria-label", t("Remove the priority {name}", { name: priorityName(key) }));
    row = h("li", { class: "boost" },
      h("input", { type: "hidden", name: "boost-key", value: key }),
      h("div", { class: "inline-field" },
        h("label", { for: minutes.id }, t("{name} ({code}): minutes", { name: priorityName(key), code: key })),
        h("div", { class: "row" }, minutes, remove)));
  }
  remove.addEventListener("click", () => {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    (next ? next.querySelector("input:not([type=hidden])") : $("hall-boost-add")).focus();
  });
  return row;
}

function fillHall(data) {
  const form = $("hall-form");
  form.elements.name_zh.value = data.name_zh;
  form.elements.name_en.value = data.name_en;
  form.elements.timezone.value = data.timezone;
  form.elements.secondary_after_minutes.value = data.secondary_after_minutes;
  form.elements.repeat_window_days.value = data.repeat_window_days;
  form.elements.personal_data_days.value = data.personal_data_days;
  const days = $("hall-hours-days");
  days.replaceChildren();
  hallState.days = {};
  for (const key of WEEKDAYS) {
    const editor = periodsEditor({
      legend: weekdayName(key), periods: data.opening_hours[key] || [],
      empty: t("Closed on this day."), addLabel: t("Add opening period"), defaultPeriod: ["08:30", "12:00"],
    });
    editor.element.dataset.day = key;
    hallState.days[key] = editor;
    days.append(editor.element);
  }
  $("hall-boosts-list").replaceChildren(...Object.entries(data.priority_boosts).map(([key, value]) => boostRow(key, value)));
}

function readHours(days) {
  const hours = {};
  for (const key of WEEKDAYS) {
    const periods = days[key].get();
    if (periods.length) hours[key] = periods;
  }
  return hours;
}

function readBoosts() {
  const boosts = {};
  for (const row of $("hall-boosts-list").children) {
    const key = row.querySelector("[name=boost-key]").value.trim();
    const minutes = Number(row.querySelector("[name=boost-minutes]").value);
    if (key in boosts) throw new Error(t("The priority {code} is listed twice.", { code: key }));
    boosts[key] = minutes;
  }
  return boosts;
}


/** A change that would close booked times comes back 409 with those bookings: list them in
 *  the form's panel, where the manager may confirm with a reason (the next submit sends it). */
function withStranded(prefix, body) {
  const panel = document.getElementById(`${prefix}-stranded`);
  const confirmed = !panel.hidden && document.getElementById(`${prefix}-confirm`).checked;
  if (confirmed) {
    body.cancel_stranded = true;
    body.reason = document.getElementById(`${prefix}-reason`).value.trim();
  }
  return confirmed;
}

async function strandedCall(prefix, ctx, call) {
  const panel = document.getElementById(`${prefix}-stranded`);
  try {
    const answer = await call();
    panel.hidden = true;
    document.getElementById(`${prefix}-confirm`).checked = false;
    document.getElementById(`${prefix}-reason`).value = "";
    return answer;
  } catch (error) {
    const stranded = error instanceof ApiError && error.status === 409 && error.extra && error.extra.stranded;
    if (stranded) {
      document.getElementById(`${prefix}-stranded-list`).replaceChildren(table(
        [t("Booking code"), t("Matter"), t("Day"), t("Time"), t("Name"), t("Phone")],
        stranded.map((b) => ({ cells: [b.code, nameOf({ name_zh: b.service_zh, name_en: b.service_en }),
          b.local_date, b.local_time, b.name, b.phone || "—"] })),
        { label: t("Bookings this change would cancel") },
      ));
      panel.hidden = false;
    }
    throw error;
  }
}

export const hall = {
  id: "hall",
  init(ctx) {
    fillTimezones();
    const form = $("hall-form");
    $("hall-boost-add").addEventListener("click", () => {
      const row = boostRow("", 15, true);
      $("hall-boosts-list").append(row);
      row.querySelector("input").focus();
    });
    $("hall-copy-monday").addEventListener("click", () => {
      const monday = hallState.days.mon.get();
      for (const key of ["tue", "wed", "thu", "fri"]) hallState.days[key].set(monday);
      say(t("Monday's hours copied to Tuesday to Friday."));
    });
    onSubmit(form, async () => {
      const body = {
        name_zh: form.elements.name_zh.value.trim(),
        name_en: form.elements.name_en.value.trim(),
        timezone: form.elements.timezone.value.trim(),
        secondary_after_minutes: Number(form.elements.secondary_after_minutes.value),
        repeat_window_days: Number(form.elements.repeat_window_days.value),
        personal_data_days: Number(form.elements.personal_data_days.value),
        opening_hours: readHours(hallState.days),
        priority_boosts: readBoosts(),
      };
      const cancelled = withStranded("hall", body);
      const saved = await strandedCall("hall", ctx, () => ctx.call("PATCH", ctx.base(), body));
      ctx.hallChanged(saved);
      fillHall(saved);
      return cancelled ? t("Saved; the bookings listed are cancelled and each visitor will be told.")
        : t("Hall settings saved.");
    });
    const create = $("hall-create-form");
    const newHours = periodsEditor({
      legend: t("Opening hours, Monday to Friday"), periods: [["08:30", "12:00"], ["13:30", "17:00"]],
      empty: t("Closed on this day."), addLabel: t("Add opening period"),
      hint: t("Weekends start closed; change any day after creating the hall."),
    });
    $("new-hall-hours").replaceChildren(newHours.element);
    onSubmit(create, async () => {
      const periods = newHours.get();
      const opening = {};
      for (const key of ["mon", "tue", "wed", "thu", "fri"]) if (periods.length) opening[key] = periods;
      const made = await ctx.call("POST", "/api/halls", {
        name_zh: create.elements.name_zh.value.trim(),
        name_en: create.elements.name_en.value.trim(),
        timezone: create.elements.timezone.value.trim() || null,
        opening_hours: opening,
      });
      create.reset();
      ctx.hallChanged(made);
      await ctx.switchHall(made.id);
      say(t("Hall {name} created.", { name: nameOf(made) }));
      return t("Hall {name} created.", { name: nameOf(made) });
    });
  },
  async show(ctx) {
    $("hall-form").hidden = !ctx.hall;
    $("hall-create-form").hidden = !ctx.isAdmin;
    if (ctx.hall) fillHall(await ctx.get(""));
  },
};

// ---------------------------------------------------------------- matters

let matterList = [];

function matterRow(s, edit) {
  const button = h("button", { type: "button", class: "secondary small", "aria-label": t("Edit {name}", { name: `${s.prefix} ${nameOf(s)}` }) }, t("Edit"));
  button.addEventListener("click", () => edit(s));
  return {
    attrs: { "data-service-id": s.id, class: s.active ? "" : "inactive" },
    cells: [h("span", { class: "prefix" }, s.prefix),
      h("span", {}, h("span", { lang: "zh-CN" }, s.name_zh), h("br"), h("span", { lang: "en", class: "hint" }, s.name_en)),
      t("{n} min", { n: s.typical_minutes }),
      s.documents.length ? h("ul", { class: "plain" }, s.documents.map((d) => h("li", {}, d))) : t("None"),
      h("span", {}, s.active ? t("Active") : h("strong", {}, t("Inactive")),
        s.desk ? [h("br"), h("strong", { class: "desk" }, t("The hall's desk"))] : []),
      button],
  };
}

export const matters = {
  id: "matters",
  init(ctx) {
    const form = $("matter-form");
    const prefix = form.elements.prefix;
    prefix.addEventListener("input", () => {
      const upper = prefix.value.toUpperCase();
      if (upper !== prefix.value) prefix.value = upper;
    });
    const reset = () => {
      form.reset();
      form.elements.id.value = "";
      $("matter-form-title").textContent = t("Add a matter");
      $("matter-submit").textContent = t("Add matter");
      $("matter-active-field").hidden = true;
      $("matter-cancel").hidden = true;
    };
    this.edit = (s) => {
      reset();
      form.elements.id.value = String(s.id);
      form.elements.name_zh.value = s.name_zh;
      form.elements.name_en.value = s.name_en;
      form.elements.prefix.value = s.prefix;
      form.elements.typical_minutes.value = String(s.typical_minutes);
      form.elements.documents.value = s.documents.join("\n");
      form.elements.active.checked = s.active;
      form.elements.desk.checked = s.desk;
      $("matter-form-title").textContent = t("Edit matter {name}", { name: `${s.prefix} ${nameOf(s)}` });
      $("matter-submit").textContent = t("Save changes");
      $("matter-active-field").hidden = false;
      $("matter-cancel").hidden = false;
      $("matter-form-title").focus();
    };
    $("matter-cancel").addEventListener("click", () => { reset(); $("matter-form-title").focus(); });
    onSubmit(form, async () => {
      const documents = form.elements.documents.value.split("\n").map((line) => line.trim()).filter(Boolean);
      const long = documents.find((d) => d.length > 200);
      if (long) throw new Error(t("Keep each document to 200 characters: {doc}", { doc: long.slice(0, 40) }));
      const body = {
        name_zh: form.elements.name_zh.value.trim(),
        name_en: form.elements.name_en.value.trim(),
        prefix: form.elements.prefix.value.trim(),
        typical_minutes: Number(form.elements.typical_minutes.value),
        documents,
        desk: form.elements.desk.checked,
      };
      const id = form.elements.id.value;
      let saved;
      if (id) {
        body.active = form.elements.active.checked;
        saved = await ctx.call("PATCH", ctx.base(`/services/${id}`), body);
      } else {
        saved = await ctx.call("POST", ctx.base("/services"), body);
      }
      reset();
      await this.show(ctx);
      return id
        ? t("Matter {name} saved.", { name: `${saved.prefix} ${nameOf(saved)}` })
        : t("Matter {name} added. Give it to counters under Counters and profiles.", { name: `${saved.prefix} ${nameOf(saved)}` });
    });
    reset();
  },
  async show(ctx) {
    matterList = await ctx.get("/services");
    $("matters-list").replaceChildren(table(
      [t("Prefix"), t("Matter name"), t("Typical time"), t("Documents to bring"), t("Status"), t("Actions")],
      matterList.map((s) => matterRow(s, this.edit)),
      { label: t("Matters"), empty: t("This hall has no matters yet.") },
    ));
  },
};

// ---------------------------------------------------------------- counters

function profileSummary(profile, services) {
  if (!profile.length) return t("No matters yet");
  return h("ul", { class: "plain" }, profile.map((p) => {
    const s = services.find((x) => x.id === p.service_id);
    return h("li", {}, `${s ? `${s.prefix} ${nameOf(s)}` : `#${p.service_id}`} · `, h("span", { class: `level ${p.level}` }, levelName(p.level)));
  }));
}

function profileEditor(services, profile) {
  const levels = new Map(profile.map((p) => [p.service_id, p.level]));
  const container = $("counter-profile");
  container.replaceChildren(...services.map((s) => {
    const id = `counter-profile-${s.id}`;
    const select = h("select", { id, name: "profile", "data-service-id": s.id },
      h("option", { value: "" }, t("Not served here")),
      h("option", { value: "primary" }, t("Primary")),
      h("option", { value: "secondary" }, t("Secondary")));
    select.value = levels.get(s.id) || "";
    return h("div", { class: "inline-field profile-entry" },
      h("label", { for: id }, `${s.prefix} ${nameOf(s)}${s.active ? "" : ` (${t("inactive")})`}`), select);
  }));
}

export const counters = {
  id: "counters",
  init(ctx) {
    const form = $("counter-form");
    const reset = () => {
      form.reset();
      form.elements.id.value = "";
      $("counter-form-title").textContent = t("Add a counter");
      $("counter-submit").textContent = t("Add counter");
      $("counter-cancel").hidden = true;
      profileEditor(this.services || [], []);
    };
    this.reset = reset;
    this.edit = (c) => {
      reset();
      form.elements.id.value = String(c.id);
      form.elements.number.value = String(c.number);
      form.elements.name.value = c.name;
      profileEditor(this.services, c.profile);
      $("counter-form-title").textContent = t("Edit counter {n}", { n: c.number });
      $("counter-submit").textContent = t("Save changes");
      $("counter-cancel").hidden = false;
      $("counter-form-title").focus();
    };
    $("counter-cancel").addEventListener("click", () => { reset(); $("counter-form-title").focus(); });
    onSubmit(form, async () => {
      const profile = [...form.querySelectorAll("select[name=profile]")]
        .filter((select) => select.value)
        .map((select) => ({ service_id: Number(select.dataset.serviceId), level: select.value }));
      const body = { number: Number(form.elements.number.value), name: form.elements.name.value.trim(), profile };
      const id = form.elements.id.value;
      const saved = id
        ? await ctx.call("PATCH", ctx.base(`/counters/${id}`), body)
        : await ctx.call("POST", ctx.base("/counters"), body);
      await this.show(ctx);
      return id ? t("Counter {n} saved.", { n: saved.number }) : t("Counter {n} added.", { n: saved.number });
    });
  },
  async show(ctx) {
    const [services, list] = await Promise.all([ctx.get("/services"), ctx.get("/counters")]);
    this.services = services;
    this.list = list;
    const form = $("counter-form");
    const editing = form.elements.id.value && list.find((c) => String(c.id) === form.elements.id.value);
    if (editing) profileEditor(services, editing.profile);
    else this.reset();
    $("counters-list").replaceChildren(table(
      [t("Counter number"), t("Counter name"), t("State"), t("Matters served"), t("Actions")],
      list.map((c) => {
        const button = h("button", { type: "button", class: "secondary small", "aria-label": t("Edit counter {n}", { n: c.number }) }, t("Edit"));
        button.addEventListener("click", () => this.edit(c));
        return {
          attrs: { "data-counter-number": c.number },
          cells: [h("span", { class: "number" }, String(c.number)), c.name,
            { open: t("Open"), paused: t("Paused"), closed: t("Closed") }[c.state] || c.state,
            profileSummary(c.profile, services), button],
        };
      }),
      { label: t("Counters"), empty: t("This hall has no counters yet.") },
    ));
  },
};

// ---------------------------------------------------------------- calendar

const calendarState = { breaks: null, holidays: [], special: new Map() };

function weekdayOf(date) {
  const d = new Date(`${date}T12:00:00Z`);
  return weekdayName(WEEKDAYS[(d.getUTCDay() + 6) % 7]);
}

function renderHolidays() {
  const list = $("holiday-list");
  const sorted = [...calendarState.holidays].sort();
  list.replaceChildren(...sorted.map((date) => {
    const remove = h("button", { type: "button", class: "secondary small", "aria-label": t("Remove holiday {date}", { date }) }, t("Remove"));
    remove.addEventListener("click", () => {
      calendarState.holidays = calendarState.holidays.filter((x) => x !== date);
      renderHolidays();
      $("holiday-new").focus();
      say(t("Holiday {date} removed; save to keep the change.", { date }));
    });
    return h("li", { "data-date": date }, h("span", {}, `${date} · ${weekdayOf(date)}`), remove);
  }));
  $("holiday-empty").hidden = sorted.length > 0;
}

function addSpecial(date, periods, focus = false) {
  const editor = periodsEditor({
    legend: t("Hours on {date} ({weekday})", { date, weekday: weekdayOf(date) }), periods,
    empty: t("No period: closed on this day."), addLabel: t("Add opening period"),
  });
  const remove = h("button", { type: "button", class: "secondary small", "aria-label": t("Remove special day {date}", { date }) }, t("Remove special day"));
  const item = h("li", { "data-date": date }, editor.element, remove);
  remove.addEventListener("click", () => {
    calendarState.special.delete(date);
    item.remove();
    $("special-new").focus();
    $("special-empty").hidden = calendarState.special.size > 0;
    say(t("Special day {date} removed; save to keep the change.", { date }));
  });
  calendarState.special.set(date, editor);
  const after = [...$("special-list").children].find((li) => li.dataset.date > date);
  $("special-list").insertBefore(item, after || null);
  $("special-empty").hidden = true;
  if (focus) editor.element.querySelector("input").focus();
}

function dateProblem(input, taken) {
  input.setCustomValidity("");
  if (!input.value) input.setCustomValidity(t("Choose a date first."));
  else if (taken) input.setCustomValidity(t("{date} is in the list already.", { date: input.value }));
  return checkField(input);
}

export const calendar = {
  id: "calendar",
  init(ctx) {
    calendarState.breaks = periodsEditor({
      legend: t("Daily breaks"), hint: t("The hall closes every day during these times, e.g. lunch 12:00 to 13:30. No slots are offered in a break."),
      empty: t("No breaks."), addLabel: t("Add a break"), defaultPeriod: ["12:00", "13:30"],
    });
    $("calendar-breaks").replaceChildren(calendarState.breaks.element);
    $("holiday-add").addEventListener("click", () => {
      const input = $("holiday-new");
      if (!dateProblem(input, calendarState.holidays.includes(input.value))) { input.focus(); return; }
      calendarState.holidays.push(input.value);
      renderHolidays();
      say(t("Holiday {date} added; save to keep it.", { date: input.value }));
      input.value = "";
      input.setCustomValidity("");
    });
    $("special-add").addEventListener("click", () => {
      const input = $("special-new");
      if (!dateProblem(input, calendarState.special.has(input.value))) { input.focus(); return; }
      addSpecial(input.value, [["09:00", "12:00"], ["13:30", "17:00"]], true);
      input.value = "";
      input.setCustomValidity("");
    });
    for (const id of ["holiday-new", "special-new"]) {
      $(id).addEventListener("input", (event) => { event.target.setCustomValidity(""); checkField(event.target); });
    }
    const form = $("calendar-form");
    onSubmit(form, async () => {
      for (const [id, button] of [["holiday-new", "holiday-add"], ["special-new", "special-add"]]) {
        const input = $(id);
        if (input.value) {
          input.setCustomValidity(t("This date is not in the list yet: press “{button}”, or clear the field.", {
            button: $(button).textContent.trim(),
          }));
          checkField(input);
          input.focus();
          throw new Error(t("A date was chosen but not added."));
        }
      }
      const special = {};
      for (const [date, editor] of calendarState.special) special[date] = editor.get();
      const body = {
        breaks: calendarState.breaks.get(),
        holidays: [...calendarState.holidays].sort(),
        special_days: special,
        remote_checkin: $("calendar-remote").checked,
        day_close_time: $("calendar-close").value.trim(),
      };
      const cancelled = withStranded("calendar", body);
      fill(await strandedCall("calendar", ctx, () => ctx.call("PUT", ctx.base("/booking-calendar"), body)));
      return cancelled ? t("Saved; the bookings listed are cancelled and each visitor will be told.")
        : t("Calendar saved.");
    });
    const fill = (data) => {
      calendarState.breaks.set(data.breaks);
      calendarState.holidays = [...data.holidays];
      renderHolidays();
      calendarState.special = new Map();
      $("special-list").replaceChildren();
      for (const [date, periods] of Object.entries(data.special_days).sort()) addSpecial(date, periods);
      $("special-empty").hidden = calendarState.special.size > 0;
      $("calendar-remote").checked = data.remote_checkin;
      $("calendar-close").value = data.day_close_time;
    };
    this.fill = fill;
  },
  async show(ctx) {
    // The holiday and special-day fields are not part of what is saved: skip them.
    $("holiday-new").setCustomValidity("");
    $("special-new").setCustomValidity("");
    this.fill(await ctx.get("/booking-calendar"));
  },
};

// ---------------------------------------------------------------- booking rules

// New rules: places from what the counters can serve (per_counter and capacity null).
const DEFAULT_RULES = {
  slot_minutes: 30, capacity: null, per_counter: null, walk_in_share: 0, target_load: null, window_days: 7,
  release_time: "08:00", cancel_cutoff_minutes: 60, reschedule_cutoff_minutes: 60, checkin_early_minutes: 30,
  checkin_late_minutes: 15, late_policy: "walk_in", max_active_per_matter: 1, max_per_day: 3, remind_before_minutes: 120,
};
const NUMBERS = ["slot_minutes", "window_days", "cancel_cutoff_minutes", "reschedule_cutoff_minutes",
  "checkin_early_minutes", "checkin_late_minutes", "max_active_per_matter", "max_per_day", "remind_before_minutes"];
// Shares are shown as percents; a field left as shown saves the stored share exactly.
const PERCENTS = ["walk_in_share", "target_load"];

const bookingState = { services: [], counters: [], rules: null, shown: {} };

function servingCount(serviceId) {
  return bookingState.counters.filter((c) => c.profile.some((p) => p.service_id === serviceId)).length;
}

/** Counter time the matter gets: each counter serving it as primary shares its time
 *  equally among its primary matters (as the server counts it). */
function counterShare(serviceId) {
  let share = 0;
  for (const c of bookingState.counters) {
    const primaries = c.profile.filter((p) => p.level === "primary");
    if (primaries.some((p) => p.service_id === serviceId)) share += 1 / primaries.length;
  }
  return share;
}

function capacityMode() {
  const chosen = $("booking-form").querySelector("input[name=capacity_mode]:checked");
  return chosen ? chosen.value : "counters";
}

function percentText(share) {
  return share === null || share === undefined ? "" : String(Number((share * 100).toFixed(2)));
}

function readPercent(name) {
  const text = $("booking-form").elements[name].value.trim();
  if (text === "") return null;
  if (text === bookingState.shown[name]) return bookingState.rules[name];
  return Number((Number(text) / 100).toFixed(6));
}

function preview() {
  const form = $("booking-form");
  const out = $("booking-preview");
  const serviceId = Number($("booking-matter").value);
  if (!form.elements.online.checked) {
    out.textContent = t("Walk-in only: nobody can book this matter online.");
    return;
  }
  const mode = capacityMode();
  const counters = servingCount(serviceId);
  const lines = [];
  let raw;
  if (mode === "fixed") {
    raw = Number(form.elements.capacity.value);
  } else if (mode === "per_counter") {
    raw = Number(form.elements.per_counter.value || 0) * counters;
  } else {
    const matter = bookingState.services.find((x) => x.id === serviceId);
    const typical = matter ? matter.typical_minutes : 0;
    const share = counterShare(serviceId);
    const slot = Number(form.elements.slot_minutes.value);
    raw = typical > 0 ? Math.floor(Math.round((slot * share / typical) * 1e6) / 1e6) : 0;
    lines.push(t("(The counters serving it as primary give it {share} of a counter's time; a visit takes {minutes} min.)", {
      share: Number(share.toFixed(2)), minutes: typical,
    }));
  }
  const share = Number(form.elements.walk_in_share.value || 0) / 100;
  if (!Number.isFinite(raw) || !Number.isFinite(share)) { out.textContent = ""; return; }
  const online = Math.max(0, Math.floor(raw * (1 - share) + 1e-9));
  const planned = form.elements.target_load.value.trim() !== "";
  if (planned && mode !== "fixed") {
    lines.unshift(t("Each slot: up to {raw} places, planned from the walk-ins expected then: fewer at busy times, more at quiet ones. Until there is history: {online} can be booked online, {walk} are kept for walk-ins.", {
      raw, online, walk: Math.max(0, raw - online),
    }));
  } else {
    lines.unshift(t("Each slot: {raw} places; {online} can be booked online, {walk} are kept for walk-ins.", {
      raw, online, walk: Math.max(0, raw - online),
    }));
    if (planned) lines.push(t("Planning from walk-in history does not change a fixed number of places."));
  }
  if (mode === "per_counter") lines.push(t("({counters} counters serve this matter now.)", { counters }));
  out.textContent = lines.join(" ");
}

function showMode() {
  const form = $("booking-form");
  const mode = capacityMode();
  form.elements.capacity.disabled = mode !== "fixed";
  form.elements.per_counter.disabled = mode !== "per_counter";
  // A first choice of a mode starts from a sensible number.
  if (mode === "per_counter" && form.elements.per_counter.value === "") form.elements.per_counter.value = "1";
}

function fillRules(answer) {
  const form = $("booking-form");
  const rules = { ...DEFAULT_RULES, ...(answer.rules || {}) };
  bookingState.rules = rules;
  form.elements.online.checked = answer.bookable;
  for (const name of NUMBERS) form.elements[name].value = String(rules[name]);
  form.elements.capacity.value = rules.capacity === null ? "" : String(rules.capacity);
  form.elements.per_counter.value = rules.per_counter === null ? "" : String(rules.per_counter);
  const mode = rules.capacity !== null ? "fixed" : rules.per_counter !== null ? "per_counter" : "counters";
  form.querySelector(`input[name=capacity_mode][value=${mode}]`).checked = true;
  bookingState.shown = {};
  for (const name of PERCENTS) {
    bookingState.shown[name] = percentText(rules[name]);
    form.elements[name].value = bookingState.shown[name];
  }
  form.elements.release_time.value = rules.release_time;
  form.elements.late_policy.value = rules.late_policy;
  $("booking-state").textContent = answer.bookable ? t("This matter is booked online.") : t("This matter is walk-in only.");
  toggleSettings();
}

function toggleSettings() {
  const form = $("booking-form");
  $("booking-settings").disabled = !form.elements.online.checked;
  showMode();
  preview();
}

function readRules() {
  const form = $("booking-form");
  const body = {};
  for (const name of NUMBERS) body[name] = Number(form.elements[name].value);
  const mode = capacityMode();
  const capacity = form.elements.capacity.value.trim();
  const perCounter = form.elements.per_counter.value.trim();
  body.capacity = mode === "fixed" ? Number(capacity) : null;
  // Places per counter is kept beside a fixed number (unused, as stored) but dropped
  // when the counters' own capacity is chosen.
  body.per_counter = mode === "counters" || perCounter === "" ? null : Number(perCounter);
  body.walk_in_share = readPercent("walk_in_share") ?? 0;
  body.target_load = readPercent("target_load");
  body.release_time = form.elements.release_time.value.trim();
  body.late_policy = form.elements.late_policy.value;
  return body;
}

export const booking = {
  id: "booking",
  init(ctx) {
    const form = $("booking-form");
    const chooser = $("booking-matter");
    chooser.addEventListener("change", () => {
      this.load(ctx).catch((error) => showError(form, error, t("Could not load this section:")));
    });
    form.elements.online.addEventListener("change", toggleSettings);
    for (const radio of form.querySelectorAll("input[name=capacity_mode]")) {
      radio.addEventListener("change", () => { showMode(); preview(); });
    }
    form.addEventListener("input", preview);
    onSubmit(form, async () => {
      const serviceId = Number(chooser.value);
      const body = form.elements.online.checked ? readRules() : null;
      const saved = await ctx.call("PUT", ctx.base(`/services/${serviceId}/booking`), body);
      fillRules(saved);
      const s = bookingState.services.find((x) => x.id === serviceId);
      const name = s ? `${s.prefix} ${nameOf(s)}` : `#${serviceId}`;
      return saved.bookable
        ? t("Booking rules for {name} saved: it can be booked online.", { name })
        : t("{name} is now walk-in only; bookings already made stay valid.", { name });
    });
  },
  async load(ctx) {
    const serviceId = Number($("booking-matter").value);
    if (!serviceId) return;
    const answer = await ctx.get(`/services/${serviceId}/booking`);
    if (Number($("booking-matter").value) !== serviceId) return; // another matter was chosen meanwhile
    fillRules(answer);
    $("booking-form").dataset.serviceId = String(serviceId);
  },
  async show(ctx) {
    const [services, list] = await Promise.all([ctx.get("/services"), ctx.get("/counters")]);
    bookingState.services = services;
    bookingState.counters = list;
    const chooser = $("booking-matter");
    const before = chooser.value;
    chooser.replaceChildren(...services.map((s) => h("option", { value: s.id },
      `${s.prefix} ${nameOf(s)}${s.active ? "" : ` (${t("inactive")})`}`)));
    if (services.some((s) => String(s.id) === before)) chooser.value = before;
    $("booking-form").hidden = services.length === 0;
    $("booking-none").hidden = services.length > 0;
    await this.load(ctx);
  },
};
