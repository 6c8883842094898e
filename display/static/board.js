// The hall board: follows /ws/halls/{id}/board, renders the server's board view, flashes
// and announces new calls, and reconnects by itself (resuming from the last sequence).
const hallId = document.body.dataset.hall;
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const state = { seq: null, announced: null, socket: null, backoff: 500, lastMessage: 0, spoken: [] };
window.onedoorBoard = state; // read by the browser tests

function feedUrl() {
  const query = new URLSearchParams({ token });
  if (state.seq !== null) query.set("since", String(state.seq));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws/halls/${hallId}/board?${query}`;
}

function setLink(up) {
  const link = $("link");
  link.classList.toggle("down", !up);
  link.textContent = up ? "" : "连接中断，正在重连… Reconnecting…";
}

function connect() {
  const socket = new WebSocket(feedUrl());
  state.socket = socket;
  socket.onopen = () => { state.backoff = 500; state.revoked = false; state.lastMessage = Date.now(); setLink(true); };
  socket.onmessage = (e) => { state.lastMessage = Date.now(); handle(JSON.parse(e.data)); };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    setLink(false);
    // 4401: this screen's token was revoked. Say so until a connection opens again, and
    // look again only once a minute (this link will not work again; a new one will).
    if (event.code === 4401) state.revoked = true;
    if (state.revoked) {
      $("link").textContent = "此屏幕的访问已被撤销，请联系管理员 This screen's access was revoked: ask a manager";
    }
    const wait = state.revoked ? 60000 : state.backoff * (0.8 + Math.random() * 0.4);
    state.backoff = Math.min(state.backoff * 2, 10000);
    setTimeout(connect, wait);
  };
}

// Pings come every 15 s: silence for 40 s means a dead link the browser has not noticed.
setInterval(() => {
  if (state.socket && Date.now() - state.lastMessage > 40000) state.socket.close();
}, 5000);

function resync() { if (state.socket) state.socket.close(); }

function handle(message) {
  if (message.type === "ping") {
    if (state.seq !== null && message.seq > state.seq) resync();
    return;
  }
  if (message.type === "event" && state.seq !== null && message.seq > state.seq + 1) {
    resync(); // a gap: reconnect with ?since= and get what was missed, or a snapshot
    return;
  }
  if (message.type === "event" && state.seq !== null && message.seq <= state.seq) return;
  state.seq = message.seq;
  render(message.board);
  const announcements = message.board.announcements || [];
  if (state.announced === null) {
    // A fresh board does not read out calls made before it was switched on.
    state.announced = announcements.length ? announcements[announcements.length - 1].seq : message.seq;
    return;
  }
  for (const a of announcements) {
    if (a.seq > state.announced) {
      state.announced = a.seq;
      flash();
      queueAnnouncement(a);
    }
  }
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render(board) {
  state.board = board;
  const now = $("now");
  const call = board.recent_calls[0];
  now.replaceChildren();
  if (call) {
    now.append(el("span", "number", call.number), " ");
    const to = el("span", "to");
    to.append(el("span", "", `请到 ${call.counter_number} 号窗口`), " ",
      el("span", "en", `Counter ${call.counter_number}`));
    to.firstChild.lang = "zh-CN";
    to.lastChild.lang = "en";
    now.append(to);
  } else {
    const idle = el("span", "idle");
    idle.append(el("span", "", "请留意叫号"), " ", el("span", "en", "Please watch for your number"));
    now.append(idle);
  }
  $("counters").replaceChildren(...board.counters.map((c) => {
    const li = el("li", [c.state, c.ticket_state || ""].join(" "));
    li.append(el("div", "no", `${c.number} 号 · Counter ${c.number}`));
    if (c.ticket) li.append(el("div", "ticket", c.ticket));
    else li.append(el("div", "state-label", c.state === "open" ? "空闲 Free" : c.state === "paused" ? "暂停 Paused" : "关闭 Closed"));
    li.dataset.counter = String(c.number);
    return li;
  }));
  $("recent").replaceChildren(...board.recent_calls.map((r) => {
    const li = el("li");
    li.append(el("span", "num", r.number), el("span", "", `→ ${r.counter_number} 号窗口`));
    return li;
  }));
  $("waiting").replaceChildren(...board.matters.map((m) => {
    const li = el("li");
    const name = el("span", "", `${m.prefix} ${m.name_zh} `);
    name.append(el("span", "en", m.name_en));
    li.append(name, el("span", "count", String(m.waiting)));
    return li;
  }));
  $("notice").textContent = board.notice || "";
  $("notice-box").hidden = !board.notice;
  fitSide();
}

/** Every matter's waiting line must be on the screen. When the side column is too short
 *  for the recent calls and the waiting lines both, the oldest recent calls give way down to
 *  three, then the column's type gets smaller (to 0.6 of the screen's), then the last
 *  recent calls go too. */
function fitSide() {
  const side = document.querySelector(".side");
  const recent = $("recent");
  const over = () => side.scrollHeight > side.clientHeight + 1;
  let scale = 0.85;
  side.style.fontSize = "";
  recent.closest("section").hidden = false;
  while (over() && recent.children.length > 3) recent.lastElementChild.remove();
  while (over() && scale > 0.6) {
    scale -= 0.05;
    side.style.fontSize = `${scale.toFixed(2)}em`;
  }
  while (over() && recent.children.length > 0) recent.lastElementChild.remove();
  if (over() && !recent.children.length) recent.closest("section").hidden = true;
}
window.addEventListener("resize", () => { if (state.board) render(state.board); });

function flash() {
  const now = $("now");
  now.classList.remove("flash");
  void now.offsetWidth; // restart the animation
  now.classList.add("flash");
}

// --- sound: server speech (espeak-ng), else the browser's voice, else a chime -----------
const queue = [];
let playing = false;
let audioContext = null;

function queueAnnouncement(a) {
  queue.push(a);
  if (!playing) playNext();
}

async function playNext() {
  const a = queue.shift();
  if (!a) { playing = false; return; }
  playing = true;
  state.spoken.push(a.number);
  await chime();
  for (const [lang, text] of [["zh", a.text_zh], ["en", a.text_en]]) {
    if (!(await serverSpeech(a, lang)) && !(await browserSpeech(text, lang))) break;
  }
  playNext();
}

function serverSpeech(a, lang) {
  const query = new URLSearchParams({ number: a.number, counter: String(a.counter_number), lang, token });
  const audio = new Audio(`/api/halls/${hallId}/speech?${query}`);
  return new Promise((resolve) => {
    audio.onended = () => resolve(true);
    audio.onerror = () => resolve(false);
    audio.play().catch((err) => { if (err.name === "NotAllowedError") askForSound(); resolve(false); });
  });
}

function browserSpeech(text, lang) {
  if (!("speechSynthesis" in window)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = lang === "zh" ? "zh-CN" : "en-GB";
    utterance.rate = 0.9;
    utterance.onend = () => resolve(true);
    utterance.onerror = () => resolve(false);
    speechSynthesis.speak(utterance);
    setTimeout(() => resolve(false), 8000);
  });
}

function chime() {
  try {
    audioContext = audioContext || new AudioContext();
    if (audioContext.state === "suspended") { askForSound(); return Promise.resolve(); }
    const now = audioContext.currentTime;
    for (const [i, freq] of [880, 660].entries()) {
      const osc = audioContext.createOscillator();
      const gain = audioContext.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.3, now + i * 0.35);
      gain.gain.exponentialRampToValueAtTime(0.001, now + i * 0.35 + 0.3);
      osc.connect(gain).connect(audioContext.destination);
      osc.start(now + i * 0.35);
      osc.stop(now + i * 0.35 + 0.32);
    }
    return new Promise((resolve) => setTimeout(resolve, 750));
  } catch {
    return Promise.resolve();
  }
}

function askForSound() { $("sound").hidden = false; }
$("sound").addEventListener("click", () => {
  audioContext = audioContext || new AudioContext();
  audioContext.resume();
  $("sound").hidden = true;
});

// The hall's clock, whatever time zone the screen's computer is set to.
const HALL_ZONE = document.body.dataset.timezone || undefined;

function tick() {
  const now = new Date();
  $("clock-time").textContent = now.toLocaleTimeString("zh-CN", { hour12: false, timeZone: HALL_ZONE });
  $("clock-date").textContent = now.toLocaleDateString("zh-CN",
    { month: "long", day: "numeric", weekday: "short", timeZone: HALL_ZONE });
}
tick();
setInterval(tick, 1000);
connect();

// "This board is there", every 30 s or as the answer says: staff hear when it goes silent.
async function heartbeat() {
  let next = 30000;
  try {
    const answer = await fetch("/api/devices/heartbeat", {
      method: "POST", headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10000),
    });
    if (answer.ok) next = Number((await answer.json()).next_in_seconds) * 1000;
  } catch (error) {
    // the server is away; try again later
  }
  setTimeout(heartbeat, Number.isFinite(next) ? Math.max(250, next) : 30000);
}
if (token) heartbeat();
