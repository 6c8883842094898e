// The hall manager's pages (/admin): sign-in, the hall to manage, and one section per hash
// route (#dashboard, #hall, #matters, ..., #simulation). Each section lives in an admin-*.js
// module.
import { ApiError, api, h, t } from "./common.js";
import { dashboard } from "./admin-dashboard.js";
import { booking, calendar, counters, hall, matters } from "./admin-config.js";
import { devices, ratings, staff } from "./admin-people.js";
import { cases, hooks, outcomes } from "./admin-desk.js";
import { auditLog } from "./admin-audit.js";
import { finished } from "./admin-finished.js";
import { statistics } from "./admin-stats.js";
import { simulation } from "./admin-simulation.js";
import { clearMessages, nameOf, onSubmit, say, showError } from "./admin-ui.js";

const SECTIONS = [dashboard, hall, matters, counters, calendar, booking, staff, devices, ratings,
  cases, outcomes, finished, statistics, hooks, auditLog, simulation];
// Clerks come in for the desk's cases only (the can't-get-it-done desk is a clerk's counter).
const MANAGER_ROLES = new Set(["manager", "admin", "clerk"]);
const CLERK_SECTIONS = new Set(["cases"]);
const HALL_KEY = "onedoor-admin-hall";
const $ = (id) => document.getElementById(id);

const state = { user: null, csrf: "", halls: [], hall: null, current: null, started: new Set() };

/** What every section gets: the signed-in user, the hall, and API calls that carry the
 *  CSRF token and send the user back to sign-in when the session has ended. */
export const ctx = {
  get user() { return state.user; },
  get hall() { return state.hall; },
  get hallId() { return state.hall ? state.hall.id : null; },
  get isAdmin() { return Boolean(state.user && state.user.role === "admin"); },
  base(path = "") { return `/api/halls/${state.hall.id}${path}`; },
  async call(method, url, body) {
    try {
      return await api(method, url, { body, csrf: method === "GET" ? undefined : state.csrf });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && state.user) {
        signedOut(t("Your session has ended. Please sign in again."));
      }
      throw error;
    }
  },
  get(path) { return this.call("GET", this.base(path)); },
  /** The hall changed (renamed, a new hall): show it in the bar. */
  hallChanged(updated) {
    state.hall = updated;
    const index = state.halls.findIndex((x) => x.id === updated.id);
    if (index >= 0) state.halls[index] = updated;
    else state.halls.push(updated);
    renderHallBar();
  },
  async switchHall(id) { await chooseHall(id); },
};

function showSignIn(message = "") {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("boot").hidden = true;
  const note = $("signin-note");
  note.textContent = message;
  note.hidden = !message;
  document.title = `${t("Sign in")} · ${t("Hall management")}`;
}

function signedOut(message) {
  stopSections();
  state.user = null;
  state.csrf = "";
  state.hall = null;
  showSignIn(message);
  $("signin-username").focus();
}

function stopSections() {
  if (state.current && state.current.hide) state.current.hide();
  state.current = null;
}

async function enter(user, csrf) {
  state.user = user;
  state.csrf = csrf;
  $("signin").hidden = true;
  $("boot").hidden = true;
  $("app").hidden = false;
  $("who").textContent = t("Signed in as {name} ({role})", {
    name: user.name || "", role: roleWord(user.role),
  });
  for (const element of document.querySelectorAll("[data-admin-only]")) element.hidden = user.role !== "admin";
  for (const link of document.querySelectorAll("#sections-nav a")) {
    link.parentElement.hidden = user.role === "clerk" && !link.hasAttribute("data-clerk");
  }
  for (const element of document.querySelectorAll("[data-manager-only]")) element.hidden = user.role === "clerk";
  state.halls = await ctx.call("GET", "/api/halls");
  let id = user.hall_id;
  if (id === null) {
    const remembered = Number(sessionStorage.getItem(HALL_KEY));
    id = state.halls.some((x) => x.id === remembered) ? remembered : (state.halls[0] || {}).id ?? null;
  }
  await chooseHall(id, false);
}

function renderHallBar() {
  const title = $("hall-title");
  title.textContent = state.hall ? nameOf(state.hall) : t("No hall yet");
  const chooser = $("hall-choice");
  const admin = state.user && state.user.role === "admin";
  $("hall-chooser").hidden = !admin || state.halls.length === 0;
  if (admin) {
    chooser.replaceChildren(...state.halls.map((x) => h("option", { value: x.id }, `${nameOf(x)} (#${x.id})`)));
    if (state.hall) chooser.value = String(state.hall.id);
  }
}

async function chooseHall(id, focus = true) {
  stopSections();
  state.hall = id === null || id === undefined ? null : await ctx.call("GET", `/api/halls/${id}`);
  if (state.hall && state.user.role === "admin") sessionStorage.setItem(HALL_KEY, String(state.hall.id));
  renderHallBar();
  $("no-hall").hidden = Boolean(state.hall);
  $("sections-nav").hidden = !state.hall;
  route(focus && Boolean(state.hall));
}

function roleWord(role) {
  return role === "admin" ? t("administrator") : role === "clerk" ? t("clerk") : t("manager");
}

function sectionFor(hash) {
  const id = hash.replace(/^#/, "") || "dashboard";
  const found = SECTIONS.find((s) => s.id === id) || dashboard;
  if (state.user && state.user.role === "clerk" && !CLERK_SECTIONS.has(found.id)) return cases;
  return found;
}

/** Show the section the address names; ``focus`` moves keyboard focus to its heading. */
function route(focus) {
  if (!state.user) return;
  let section = sectionFor(location.hash);
  if (!state.hall) section = hall; // an admin without halls creates one there
  if (state.current && state.current !== section && state.current.hide) state.current.hide();
  for (const s of SECTIONS) {
    const element = $(`section-${s.id}`);
    element.hidden = s !== section;
  }
  for (const link of document.querySelectorAll("#sections-nav a")) {
    if (link.getAttribute("href") === `#${section.id}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  state.current = section;
  const heading = $(`section-${section.id}`).querySelector("h1");
  document.title = `${heading.textContent} · ${t("Hall management")}`;
  if (!state.started.has(section.id)) {
    state.started.add(section.id);
    if (section.init) section.init(ctx);
  }
  const element = $(`section-${section.id}`);
  element.dataset.state = "loading";
  element.setAttribute("aria-busy", "true");
  clearMessages(element.querySelector(".section-error"));
  Promise.resolve(section.show(ctx)).then(() => {
    element.dataset.state = "ready";
  }, (error) => {
    if (!(error instanceof ApiError)) console.error(error);
    element.dataset.state = "failed";
    showError(element.querySelector(".section-error"), error, t("Could not load this section:"));
  }).finally(() => element.removeAttribute("aria-busy"));
  if (focus) heading.focus();
}

function setupSignIn() {
  const form = $("signin-form");
  onSubmit(form, async () => {
    const answer = await api("POST", "/api/auth/login", {
      body: { username: $("signin-username").value.trim(), password: $("signin-password").value },
    });
    if (!MANAGER_ROLES.has(answer.user.role)) {
      await api("POST", "/api/auth/logout", { csrf: answer.csrf_token }).catch(() => {});
      throw new Error(t("This page is for hall managers and administrators. Clerks use the counter console."));
    }
    $("signin-password").value = "";
    await enter(answer.user, answer.csrf_token);
    say(t("Signed in as {name} ({role})", {
      name: answer.user.name, role: roleWord(answer.user.role),
    }));
    $(`section-${state.current ? state.current.id : "dashboard"}`).querySelector("h1").focus();
    return "";
  });
}

function setupBar() {
  $("sign-out").addEventListener("click", async () => {
    const csrf = state.csrf;
    stopSections();
    try {
      await api("POST", "/api/auth/logout", { csrf });
    } catch (error) {
      // Signed out already (an ended session): nothing more to do.
    }
    signedOut(t("You have signed out."));
    say(t("You have signed out."));
  });
  $("sign-out-everywhere").addEventListener("click", async () => {
    const csrf = state.csrf;
    let message = t("You have signed out on every browser.");
    try {
      await api("POST", "/api/auth/logout-everywhere", { csrf });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) message = error.message;
    }
    stopSections();
    signedOut(message);
    say(message);
  });
  $("hall-choice").addEventListener("change", (event) => {
    chooseHall(Number(event.target.value)).catch((error) => console.error(error));
  });
  window.addEventListener("hashchange", () => route(true));
}

async function boot() {
  setupSignIn();
  setupBar();
  try {
    const me = await api("GET", "/api/auth/me");
    if (!MANAGER_ROLES.has(me.user.role)) {
      showSignIn(t("This page is for hall managers and administrators. Clerks use the counter console."));
      return;
    }
    await enter(me.user, me.csrf_token);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) showSignIn();
    else showSignIn(error.message);
  }
}

window.onedoorAdmin = ctx; // read by the browser tests
boot();
