// What every OneDoor page shares: translated strings, API calls with clear errors, live
// feeds that reconnect, spoken/visible status, the larger-text switch. No build step.

const dataTag = document.getElementById("page-data");
export const page = dataTag ? JSON.parse(dataTag.textContent || "{}") : {};
const stringsTag = document.getElementById("strings");
const strings = stringsTag ? JSON.parse(stringsTag.textContent || "{}") : {};

/** The page's translation of an English message id; {name} placeholders are filled in. */
export function t(message, values = {}) {
  const text = strings[message] ?? message;
  return text.replace(/\{(\w+)\}/g, (_, key) => (key in values ? String(values[key]) : `{${key}}`));
}

export class ApiError extends Error {
  constructor(status, detail, extra) {
    super(detail);
    this.status = status;
    this.extra = extra;
  }
}

/** Call the API; resolves to the JSON answer, or rejects with an ApiError whose message is
 *  the server's explanation of what to fix (or a plain "network" one). */
export async function api(method, url, { body, token, csrf, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (csrf) init.headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, t("The server cannot be reached. Please try again."), null);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    const detail = (data && data.detail) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, detail, data && data.extra);
  }
  return data;
}

/** Say ``text`` to screen readers (and keep it in the live region for everyone). */
export function announce(text) {
  const live = document.getElementById("live");
  if (!live) return;
  live.textContent = "";
  window.setTimeout(() => { live.textContent = text; }, 30);
}

/** Follow a websocket feed: ``onMessage(json)`` for each message; reconnects with a
 *  growing pause after a drop, and ``onState("open" | "closed")`` says how it stands. A
 *  feed the server ended for good (access ended, 4401/4403; gone, 4404) is not reopened. */
export function follow(path, onMessage, onState = () => {}) {
  let delay = 500;
  let socket;
  let stopped = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const connect = () => {
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.addEventListener("open", () => { delay = 500; onState("open"); });
    socket.addEventListener("message", (event) => {
      try { onMessage(JSON.parse(event.data)); } catch (error) { console.error(error); }
    });
    socket.addEventListener("close", (event) => {
      onState("closed");
      // 4401: signed out or revoked, 4403: no longer allowed, 4404: gone — the page decides.
      if (stopped || [4401, 4403, 4404].includes(event.code)) return;
      window.setTimeout(connect, delay + Math.random() * 250);
      delay = Math.min(delay * 2, 10000);
    });
  };
  connect();
  return { stop() { stopped = true; socket.close(); } };
}

/** A time on the hall's clock: "10:30". */
export function clock(iso, timeZone) {
  return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", timeZone })
    .format(new Date(iso));
}

/** A date on the hall's clock: "2026-03-02". */
export function day(iso, timeZone) {
  return new Intl.DateTimeFormat("sv-SE", { timeZone }).format(new Date(iso));
}

export function qrSrc(data) {
  return `/qr.svg?data=${encodeURIComponent(data)}`;
}

/** Make an element from a tag, attributes and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    // Through the CSSOM: the pages' content security policy refuses style attributes.
    else if (key === "style") element.style.cssText = value;
    else if (key === "text") element.textContent = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function setupLargeText() {
  const root = document.documentElement;
  const apply = (on) => {
    root.classList.toggle("large", on);
    for (const button of document.querySelectorAll("[data-large-text]")) {
      button.setAttribute("aria-pressed", String(on));
    }
  };
  apply(localStorage.getItem("onedoor-large-text") === "1");
  for (const button of document.querySelectorAll("[data-large-text]")) {
    button.addEventListener("click", () => {
      const on = !root.classList.contains("large");
      localStorage.setItem("onedoor-large-text", on ? "1" : "0");
      apply(on);
    });
  }
}

setupLargeText();
