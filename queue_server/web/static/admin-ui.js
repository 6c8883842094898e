// The manager pages' form kit: inline validation, the server's refusals (role=alert) and
// successes (role=status) next to each form, editors for opening periods, small helpers.
import { ApiError, announce, clock, day, h, t } from "./common.js";

export const LANG = document.documentElement.lang.startsWith("zh") ? "zh" : "en";
export const TIME_PATTERN = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
let uid = 0;

/** A fresh id for elements made on the fly. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A hall's or a matter's name in the page's language (the other one as a fallback). */
export function nameOf(item) {
  if (!item) return "";
  return (LANG === "zh" ? item.name_zh || item.name_en : item.name_en || item.name_zh) || "";
}

/** "2026-03-02 10:30" on the hall's clock. */
export function when(iso, timeZone) {
  if (!iso) return "";
  return `${day(iso, timeZone)} ${clock(iso, timeZone)}`;
}

/** Today's date on the hall's clock, as YYYY-MM-DD. */
export function today(timeZone) {
  return day(new Date().toISOString(), timeZone);
}

function errorFor(input) {
  const id = `${input.id}-error`;
  let element = document.getElementById(id);
  if (!element) {
    element = h("p", { id, class: "field-error" });
    const anchor = input.closest(".inline-field, .period") || input;
    anchor.after(element);
  }
  return element;
}

function describe(input, id, on) {
  const ids = new Set((input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean));
  if (on) ids.add(id);
  else ids.delete(id);
  if (ids.size) input.setAttribute("aria-describedby", [...ids].join(" "));
  else input.removeAttribute("aria-describedby");
}

/** What is wrong with one field, in words, or "" when it is fine. */
function problem(input) {
  const v = input.validity;
  if (v.valid) return "";
  if (v.customError) return input.validationMessage;
  if (v.valueMissing) return input.dataset.missing || t("Fill in this field.");
  if (v.badInput || v.stepMismatch || v.rangeUnderflow || v.rangeOverflow) {
    if (input.step === "any") return t("Give a number from {min} to {max}.", { min: input.min, max: input.max });
    if (input.min !== "" && input.max !== "") {
      return t("Give a whole number from {min} to {max}.", { min: input.min, max: input.max });
    }
    if (input.min !== "") return t("Give a whole number of at least {min}.", { min: input.min });
    return t("Give a whole number.");
  }
  if (v.tooShort) return t("Use at least {n} characters.", { n: input.minLength });
  if (v.tooLong) return t("Use at most {n} characters.", { n: input.maxLength });
  return input.dataset.error || t("Check this field.");
}

/** Show (or clear) the field's own message; true when the field is fine. */
export function checkField(input) {
  if (input.dataset.check) checkPeriod(input);
  const message = problem(input);
  if (message) {
    const element = errorFor(input);
    element.textContent = message;
    input.setAttribute("aria-invalid", "true");
    describe(input, element.id, true);
    return false;
  }
  const element = document.getElementById(`${input.id}-error`);
  if (element) {
    element.textContent = "";
    describe(input, element.id, false);
  }
  input.removeAttribute("aria-invalid");
  return true;
}

function minutesOf(text) {
  const [hh, mm] = text.split(":").map(Number);
  return hh * 60 + mm;
}

// A period's end must come after its start: the end field carries data-check="end".
function checkPeriod(input) {
  input.setCustomValidity("");
  if (input.dataset.check !== "end") return;
  const start = input.closest(".period").querySelector("[data-part=start]");
  const re = new RegExp(TIME_PATTERN);
  if (re.test(start.value) && re.test(input.value) && minutesOf(input.value) <= minutesOf(start.value)) {
    input.setCustomValidity(t("The end must come after the start."));
  }
}

/** Check every field of ``form``; focus the first wrong one. True when all are fine. */
export function validate(form) {
  let first = null;
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (input.matches(":disabled") || input.type === "hidden" || input.closest("[hidden]")) continue;
    if (!checkField(input) && !first) first = input;
  }
  if (first) first.focus();
  return first === null;
}

/** Re-check a field as it is corrected, once it has been marked wrong. */
function liveCheck(form) {
  const recheck = (event) => {
    const input = event.target;
    if (input.matches("input, select, textarea") && input.getAttribute("aria-invalid") === "true") {
      checkField(input);
    }
  };
  form.addEventListener("input", recheck);
  form.addEventListener("change", recheck);
  // Not on leaving a field: a message appearing then moves the button being clicked.
}

function box(form, kind) {
  let element = form.querySelector(`.form-${kind}`);
  if (!element) {
    element = h("div", { class: `form-${kind}`, role: kind === "error" ? "alert" : "status" });
    const actions = form.querySelector(".actions");
    if (actions) actions.before(element);
    else form.append(element);
  }
  return element;
}

/** Clear a form's messages. */
export function clearMessages(form) {
  box(form, "error").replaceChildren();
  box(form, "ok").replaceChildren();
}

/** Show the server's refusal (its ``detail``, and each field it names) in the form. */
export function showError(form, error, title = t("Not saved:")) {
  const element = box(form, "error");
  const detail = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  const items = [];
  const extra = error && error.extra;
  if (Array.isArray(extra)) {
    for (const entry of extra) {
      if (entry && entry.message) items.push(entry.key ? `${entry.key}: ${entry.message}` : entry.message);
      const field = entry && entry.key && form.querySelector(`[name="${entry.key}"]`);
      if (field) {
        const message = errorFor(field);
        message.textContent = entry.message;
        field.setAttribute("aria-invalid", "true");
        describe(field, message.id, true);
      }
    }
  }
  element.replaceChildren(
    h("p", { class: "error-title" }, title, " ", h("span", { class: "detail" }, detail)),
    items.length ? h("ul", {}, items.map((item) => h("li", {}, item))) : null,
  );
  box(form, "ok").replaceChildren();
}

/** Say in the form's status region that it worked. */
export function showOk(form, text) {
  box(form, "error").replaceChildren();
  box(form, "ok").replaceChildren(h("p", {}, text));
}

/** Handle a form's submit: validate, run ``action`` (resolving to a success message or
 *  nothing), show the refusal if it fails. Never disables the focused button (that would
 *  lose the keyboard user's place); a second submit while one runs is ignored. */
export function onSubmit(form, action) {
  form.noValidate = true;
  liveCheck(form);
  let running = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (running) return;
    clearMessages(form);
    if (!validate(form)) {
      box(form, "error").replaceChildren(h("p", {}, t("Please correct the marked fields.")));
      return;
    }
    running = true;
    form.setAttribute("aria-busy", "true");
    try {
      const message = await action(event.submitter || null);
      if (message) showOk(form, message);
    } catch (error) {
      showError(form, error);
      if (!(error instanceof ApiError)) console.error(error);
    } finally {
      running = false;
      form.removeAttribute("aria-busy");
    }
  });
}

/** Report an error of an action outside a form (a row's button) in ``region``. */
export function reportTo(region, error) {
  region.replaceChildren(h("div", { class: "form-error", role: "alert" },
    h("p", { class: "error-title" }, t("Not done:"), " ", h("span", { class: "detail" }, error.message))));
}

/** A labelled input: { element, input }. */
export function field({ label, hint, name, value = "", type = "text", attrs = {}, inline = false }) {
  const id = newId(name || "field");
  const hintId = hint ? `${id}-hint` : null;
  const input = h("input", { id, name, type, value, "aria-describedby": hintId, ...attrs });
  const element = h("div", { class: inline ? "inline-field" : "field" },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    input);
  return { element, input };
}

/** A time of day field (HH:MM; 24:00 for the end of the day). */
export function timeInput(label, value, part) {
  const { element, input } = field({
    label, name: part, value,
    attrs: {
      required: true, pattern: TIME_PATTERN, inputmode: "numeric", maxlength: 5, size: 5,
      placeholder: "08:30", autocomplete: "off", class: "time", "data-part": part,
      "data-check": part, "data-error": t("Write the time as HH:MM, e.g. 08:30 (24:00 for midnight)."),
    },
    inline: true,
  });
  return { element, input };
}

/** An editor for a list of [start, end] periods: { element, get(), set(periods) }. */
export function periodsEditor({ legend, hint, empty, periods = [], addLabel, defaultPeriod = ["08:30", "12:00"] }) {
  const list = h("ol", { class: "periods" });
  const emptyNote = h("p", { class: "hint empty-note" }, empty);
  const hintId = newId("periods-hint");
  const add = h("button", { type: "button", class: "secondary small" }, addLabel || t("Add a period"));
  const fieldset = h("fieldset", { class: "periods-editor", "aria-describedby": hint ? hintId : null },
    h("legend", {}, legend),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    emptyNote, list, h("div", { class: "row" }, add));

  const renumber = () => {
    const rows = [...list.children];
    rows.forEach((row, i) => {
      row.querySelector(".period").setAttribute("aria-label", t("Period {n}", { n: i + 1 }));
      row.querySelector(".remove").setAttribute("aria-label",
        t("Remove period {n} of {what}", { n: i + 1, what: legend }));
    });
    emptyNote.hidden = rows.length > 0;
  };
  const addRow = ([from, to], focus = false) => {
    const start = timeInput(t("From"), from, "start");
    const end = timeInput(t("To"), to, "end");
    const remove = h("button", { type: "button", class: "secondary small remove" }, t("Remove"));
    const row = h("li", {}, h("div", { class: "period", role: "group" },
      start.element, h("span", { class: "dash", "aria-hidden": "true" }, "–"), end.element, remove));
    remove.addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      (next ? next.querySelector("input") : add).focus();
    });
    list.append(row);
    renumber();
    if (focus) start.input.focus();
  };
  add.addEventListener("click", () => {
    const last = list.lastElementChild;
    let next = defaultPeriod;
    if (last) {
      const end = last.querySelector("[data-part=end]").value;
      if (new RegExp(TIME_PATTERN).test(end) && end < "23:00") {
        const hh = Math.min(23, Number(end.slice(0, 2)) + 1);
        next = [`${String(hh).padStart(2, "0")}${end.slice(2)}`, hh + 3 >= 24 ? "24:00" : `${String(hh + 3).padStart(2, "0")}${end.slice(2)}`];
      }
    }
    addRow(next, true);
  });
  const set = (values) => {
    list.replaceChildren();
    for (const period of values || []) addRow(period);
    renumber();
  };
  set(periods);
  return {
    element: fieldset,
    get: () => [...list.children].map((row) => [
      row.querySelector("[data-part=start]").value.trim(),
      row.querySelector("[data-part=end]").value.trim(),
    ]),
    set,
  };
}

/** A table that becomes a stack of cards on a phone: ``headers`` name the columns, each
 *  row is ``{ attrs, cells: [node or text, ...] }``; ARIA roles keep it a table for screen
 *  readers whatever CSS does to it. */
export function table(headers, rows, { label, empty, cards = true } = {}) {
  if (!rows.length && empty) return h("p", { class: "empty" }, empty);
  const head = h("tr", { role: "row" }, headers.map((text) => h("th", { scope: "col", role: "columnheader" }, text)));
  const body = rows.map(({ attrs = {}, cells }) => h("tr", { role: "row", ...attrs },
    cells.map((cell, i) => h("td", { role: "cell", "data-label": headers[i] || "" }, cell))));
  return h("div", { class: cards ? "table-wrap" : "table-wrap plain-table", role: "region", "aria-label": label, tabindex: "0" },
    h("table", { role: "table", class: cards ? "cards" : "compact" },
      h("thead", { role: "rowgroup" }, head), h("tbody", { role: "rowgroup" }, body)));
}

/** Let the screen reader know too. */
export function say(text) {
  announce(text);
}
