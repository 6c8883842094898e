// People and things: the hall's staff accounts, its devices (kiosks, boards, printers) with
// their one-time tokens, and the day's service ratings.
import { h, t } from "./common.js";
import { nameOf, onSubmit, reportTo, say, table, today, when } from "./admin-ui.js";

const $ = (id) => document.getElementById(id);

function roleName(role) {
  return { manager: t("Manager"), clerk: t("Clerk"), admin: t("Administrator") }[role] || role;
}

function kindName(kind) {
  return { kiosk: t("Kiosk"), board: t("Board"), printer: t("Printer") }[kind] || kind;
}

/** A password a person can read out and type: 4 groups of 4 from an unambiguous alphabet. */
function suggestPassword() {
  const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const chars = [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
  return chars.match(/.{4}/g).join("-");
}

/** Ask in a modal dialog; resolves true when confirmed. */
function confirmDialog(text, okLabel) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener("close", onClose);
      $("confirm-ok").removeEventListener("click", onOk);
      $("confirm-cancel").removeEventListener("click", onCancel);
      if (dialog.open) dialog.close();
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    };
    const onOk = () => done(true);
    const onCancel = () => done(false);
    const onClose = () => done(false);
    $("confirm-ok").addEventListener("click", onOk);
    $("confirm-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// ---------------------------------------------------------------- staff

export const staff = {
  id: "staff",
  init(ctx) {
    const form = $("staff-form");
    $("staff-password-suggest").addEventListener("click", () => {
      form.elements.password.value = suggestPassword();
      form.elements.password.focus();
      say(t("A password was suggested; give it to the person."));
    });
    onSubmit(form, async () => {
      const body = {
        username: form.elements.username.value.trim(),
        display_name: form.elements.display_name.value.trim(),
        password: form.elements.password.value,
        role: form.elements.role.value,
      };
      const made = await ctx.call("POST", ctx.base("/staff"), body);
      form.reset();
      await this.show(ctx);
      return t("{role} {username} added. They sign in with the password you gave.", {
        role: roleName(made.role), username: made.username,
      });
    });
    const dialog = $("password-dialog");
    const passwordForm = $("password-form");
    $("password-suggest").addEventListener("click", () => {
      passwordForm.elements.password.value = suggestPassword();
      passwordForm.elements.password.focus();
    });
    $("password-cancel").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      if (this.opener && this.opener.isConnected) this.opener.focus();
    });
    onSubmit(passwordForm, async () => {
      const user = this.resetting;
      await ctx.call("PATCH", ctx.base(`/staff/${user.id}`), { password: passwordForm.elements.password.value });
      dialog.close();
      const message = t("New password set for {username}.", { username: user.username });
      $("staff-messages").replaceChildren(h("p", { class: "form-ok" }, message));
      say(message);
      return "";
    });
  },
  resetPassword(user, opener) {
    const passwordForm = $("password-form");
    passwordForm.reset();
    passwordForm.querySelector(".form-error").replaceChildren();
    this.resetting = user;
    this.opener = opener;
    $("password-dialog-title").textContent = t("New password for {username}", { username: user.username });
    $("password-dialog").showModal();
    passwordForm.elements.password.focus();
  },
  async setActive(ctx, user, active) {
    const region = $("staff-messages");
    try {
      await ctx.call("PATCH", ctx.base(`/staff/${user.id}`), { active });
      await this.show(ctx);
      const message = active
        ? t("{username} can sign in again.", { username: user.username })
        : t("{username} is deactivated and can no longer sign in.", { username: user.username });
      region.replaceChildren(h("p", { class: "form-ok" }, message));
      say(message);
      const again = document.querySelector(`#staff-list tr[data-user-id="${user.id}"] button[data-action=active]`);
      if (again) again.focus();
    } catch (error) {
      reportTo(region, error);
    }
  },
  async show(ctx) {
    const manager = $("staff-role").querySelector("option[value=manager]");
    if (manager) manager.hidden = manager.disabled = !ctx.isAdmin;
    const list = await ctx.get("/staff");
    const me = ctx.user.user_id;
    $("staff-list").replaceChildren(table(
      [t("Username"), t("Full name"), t("Role"), t("Status"), t("Actions")],
      list.map((user) => {
        const mayChange = user.id !== me && (user.role !== "manager" || ctx.isAdmin);
        let actions;
        if (mayChange) {
          const toggle = h("button", {
            type: "button", class: user.active ? "danger small" : "secondary small", "data-action": "active",
            "aria-label": user.active ? t("Deactivate {username}", { username: user.username }) : t("Reactivate {username}", { username: user.username }),
          }, user.active ? t("Deactivate") : t("Reactivate"));
          toggle.addEventListener("click", () => this.setActive(ctx, user, !user.active));
          const reset = h("button", {
            type: "button", class: "secondary small", "data-action": "password",
            "aria-label": t("Reset password: {username}", { username: user.username }),
          }, t("Reset password"));
          reset.addEventListener("click", () => this.resetPassword(user, reset));
          actions = h("div", { class: "row" }, toggle, reset);
        } else {
          actions = h("span", { class: "hint" }, user.id === me ? t("This is you.") : t("Only an administrator changes a manager's account."));
        }
        return {
          attrs: { "data-user-id": user.id, "data-username": user.username, class: user.active ? "" : "inactive" },
          cells: [h("span", { class: "mono" }, user.username), user.display_name || "—", roleName(user.role),
            user.active ? t("Active") : h("strong", {}, t("Deactivated")), actions],
        };
      }),
      { label: t("Staff"), empty: t("No staff yet.") },
    ));
  },
};

// ---------------------------------------------------------------- devices

function statusText(device) {
  if (device.kind !== "printer") return t("Not reported");
  const s = device.status;
  if (!s) return t("No report yet");
  if (s.problem) return h("strong", { class: "bad" }, s.problem);
  return t("Working");
}

function connectionText(device, tz) {
  if (device.revoked_at) return h("span", {}, t("Revoked {time}", { time: when(device.revoked_at, tz) }));
  if (device.kind !== "printer") return t("Not reported");
  return device.connected ? h("span", { class: "good" }, t("Connected")) : h("strong", { class: "bad" }, t("Not connected"));
}

export const devices = {
  id: "devices",
  init(ctx) {
    const form = $("device-form");
    const kind = form.elements.kind;
    const kioskField = $("device-kiosk-field");
    const sync = () => {
      const printer = kind.value === "printer";
      kioskField.hidden = !printer;
      form.elements.kiosk_id.required = printer;
    };
    kind.addEventListener("change", sync);
    sync();
    $("device-show-revoked").addEventListener("change", () => this.render(ctx));
    $("device-token-copy").addEventListener("click", async () => {
      const input = $("device-token");
      let copied = false;
      try {
        await navigator.clipboard.writeText(input.value);
        copied = true;
      } catch (error) {
        input.select();
        copied = document.execCommand && document.execCommand("copy");
      }
      const message = copied ? t("Token copied.") : t("Copying is not allowed here: select the token and copy it by hand.");
      $("device-token-copied").textContent = message;
    });
    $("device-token-done").addEventListener("click", () => {
      $("device-token").value = "";
      $("device-token-panel").hidden = true;
      form.elements.name.focus();
    });
    onSubmit(form, async () => {
      const body = { kind: kind.value, name: form.elements.name.value.trim() };
      if (kind.value === "printer") body.kiosk_id = Number(form.elements.kiosk_id.value);
      const made = await ctx.call("POST", ctx.base("/devices"), body);
      form.reset();
      sync();
      this.showToken(ctx, made);
      await this.show(ctx);
      $("device-token-title").focus();
      return t("{kind} {name} registered.", { kind: kindName(made.kind), name: made.name });
    });
  },
  showToken(ctx, made) {
    $("device-token-title").textContent = t("Token for {kind} {name}", { kind: kindName(made.kind), name: made.name });
    $("device-token").value = made.token;
    $("device-token-copied").textContent = "";
    const link = $("device-board-link");
    if (made.kind === "board") {
      const url = `${location.origin}/board/${ctx.hallId}?token=${encodeURIComponent(made.token)}`;
      link.replaceChildren(t("Open this address on the board's screen:"), " ", h("code", { class: "mono wrap" }, url));
      link.hidden = false;
    } else {
      link.hidden = true;
    }
    $("device-token-panel").hidden = false;
  },
  async revoke(ctx, device) {
    const ok = await confirmDialog(
      t("Revoke {name}? The device is refused at once and needs a new registration to work again.", { name: device.name }),
      t("Revoke"));
    if (!ok) return;
    const region = $("device-messages");
    try {
      await ctx.call("DELETE", ctx.base(`/devices/${device.id}`));
      await this.show(ctx);
      const message = t("{name} is revoked.", { name: device.name });
      region.replaceChildren(h("p", { class: "form-ok" }, message));
      say(message);
      $("device-messages").focus();
    } catch (error) {
      reportTo(region, error);
    }
  },
  render(ctx) {
    const tz = ctx.hall.timezone;
    const all = this.list || [];
    const showRevoked = $("device-show-revoked").checked;
    const shown = all.filter((d) => showRevoked || !d.revoked_at);
    const names = new Map(all.map((d) => [d.id, d.name]));
    $("devices-list").replaceChildren(table(
      [t("Device name"), t("Kind"), t("Prints for"), t("Connection"), t("Status"), t("Last seen"), t("Token begins"), t("Actions")],
      shown.map((d) => {
        let action = "—";
        if (!d.revoked_at) {
          action = h("button", { type: "button", class: "danger small", "aria-label": t("Revoke {name}", { name: d.name }) }, t("Revoke"));
          action.addEventListener("click", () => this.revoke(ctx, d));
        }
        return {
          attrs: { "data-device-id": d.id, class: d.revoked_at ? "inactive" : "" },
          cells: [d.name, kindName(d.kind), d.kiosk_id ? names.get(d.kiosk_id) || `#${d.kiosk_id}` : "—",
            connectionText(d, tz), statusText(d), d.last_seen_at ? when(d.last_seen_at, tz) : "—",
            h("span", { class: "mono" }, `${d.token_hint}…`), action],
        };
      }),
      { label: t("Devices"), empty: t("No devices yet.") },
    ));
    const kiosks = all.filter((d) => d.kind === "kiosk" && !d.revoked_at);
    const select = $("device-kiosk");
    const before = select.value;
    select.replaceChildren(h("option", { value: "" }, t("Choose the kiosk")),
      ...kiosks.map((k) => h("option", { value: k.id }, k.name)));
    if (kiosks.some((k) => String(k.id) === before)) select.value = before;
  },
  async show(ctx) {
    this.list = await ctx.get("/devices");
    this.render(ctx);
  },
  hide() {
    // The token is shown once: leaving the section forgets it.
    $("device-token").value = "";
    $("device-token-panel").hidden = true;
  },
};

// ---------------------------------------------------------------- ratings

function stars(n) {
  return h("span", { class: "stars", role: "img", "aria-label": t("{n} of 5 stars", { n }) },
    h("span", { "aria-hidden": "true" }, "★".repeat(n) + "☆".repeat(5 - n)));
}

export const ratings = {
  id: "ratings",
  init(ctx) {
    const form = $("ratings-form");
    onSubmit(form, async () => {
      await this.load(ctx, form.elements.day.value);
      return "";
    });
  },
  async load(ctx, dayValue) {
    const tz = ctx.hall.timezone;
    const answer = await ctx.get(`/ratings?day=${encodeURIComponent(dayValue)}`);
    $("ratings-summary").replaceChildren(h("dl", { class: "tiles" },
      h("div", { class: "tile" }, h("dt", {}, t("Ratings")), h("dd", { class: "big" }, String(answer.count))),
      h("div", { class: "tile" }, h("dt", {}, t("Average")),
        h("dd", { class: "big" }, answer.average === null ? "—" : t("{n} of 5", { n: answer.average.toFixed(1) })))));
    $("ratings-list").replaceChildren(table(
      [t("Time"), t("Ticket"), t("Matter"), t("Counter"), t("Stars"), t("Comment")],
      answer.ratings.map((r) => ({
        attrs: { "data-ticket-id": r.ticket_id },
        cells: [when(r.created_at, tz), h("span", { class: "number" }, r.number),
          nameOf({ name_zh: r.service_zh, name_en: r.service_en }),
          r.counter_number === null ? "—" : String(r.counter_number), stars(r.stars), r.comment || "—"],
      })),
      { label: t("Ratings"), empty: t("No ratings on {day}.", { day: answer.day }) },
    ));
  },
  async show(ctx) {
    const input = $("ratings-form").elements.day;
    if (!input.value) input.value = today(ctx.hall.timezone);
    await this.load(ctx, input.value);
  },
};
