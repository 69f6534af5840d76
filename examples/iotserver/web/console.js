// @ts-check
// The admin console: rooms with member counts, presence, a live tail of a
// room's events (redacted by the server), disconnect / revoke / re-check.
// It talks only to the admin API under /console/api/ (package admin,
// docs/admin.md) with the session cookie set by POST /console/login, which
// is HttpOnly: this page never holds a token — not in the DOM, the URL,
// storage, or any response it reads — and opens no WebSocket. Everything it
// shows is written with textContent.

const $ = (/** @type {string} */ id) => document.getElementById(id);
const input = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (document.getElementById(id));

/**
 * el makes an element with text and data attributes.
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {(Node | string)[]} kids
 */
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...kids);
  return e;
}

class HTTPError extends Error {
  /** @param {number} status @param {any} body */
  constructor(status, body) {
    super((body && body.error && (body.error.message || body.error.code)) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error.code : "";
  }
}

/**
 * call makes a request to path (JSON in, JSON out) with the session cookie.
 * @param {string} path
 * @param {any} [body] sent as JSON with POST
 */
async function call(path, body) {
  /** @type {RequestInit} */
  const init = { credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const data = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new HTTPError(res.status, data);
  return data;
}

const state = {
  running: false,
  timer: 0,
  room: "staff", // the selected room
  since: "", // the tail's position in the selected room
  presence: false, // the selected room has presence
  tailed: 0, // events shown
};
/** @type {any} */ (window).__console = state; // for the browser test

// --- views ---

/** show shows one of the views: login, denied or console. @param {string} view @param {string} [msg] */
function show(view, msg = "") {
  $("login-view").hidden = view === "console";
  $("console").hidden = view !== "console";
  $("whoami").hidden = view !== "console";
  $("login-error").textContent = msg;
}

async function start() {
  try {
    await call("/console/api/stats");
  } catch (e) {
    if (e.status === 401) return show("login");
    if (e.status === 403) return show("login", "The console is for admins only (403).");
    return show("login", "The server is not answering: " + e.message);
  }
  show("console");
  state.running = true;
  await tick();
}

async function tick() {
  clearTimeout(state.timer);
  if (!state.running) return;
  try {
    await Promise.all([loadStats(), loadRooms(), loadActions()]);
    await Promise.all([loadPresence(), loadTail()]);
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      state.running = false;
      return show("login", e.status === 403 ? "The console is for admins only (403)." : "Signed out.");
    }
    console.warn("console:", e.message);
  }
  if (state.running) state.timer = window.setTimeout(tick, 1000);
}

async function loadStats() {
  const s = await call("/console/api/stats");
  const hub = s.hub;
  const rows = [
    ["connections", hub.Connections],
    ["users", hub.Users],
    ["rooms", hub.Rooms],
    ["accepted", hub.Accepted],
    ["refused", hub.Refused + hub.Unauthorized],
    ["forbidden", hub.Forbidden],
    ["slow consumers", hub.SlowConsumers],
  ];
  $("stats").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, String(k)), el("dd", { "data-key": String(k) }, String(v ?? "—"))]));
  $("stats-age").textContent = new Date(s.time).toLocaleTimeString();
}

async function loadRooms() {
  const r = await call("/console/api/rooms");
  state.presence = false;
  $("rooms").replaceChildren(
    ...r.rooms.map((/** @type {any} */ ri) => {
      if (ri.name === state.room) state.presence = ri.presence;
      const tr = el(
        "tr",
        { "data-room": ri.name, class: ri.name === state.room ? "selected" : "" },
        el("td", {}, ri.name),
        el("td", { class: "members" }, String(ri.members)),
        el("td", { class: "people" }, ri.presence ? String(ri.people) : "—"),
        el("td", {}, ri.presence ? "on" : "off"),
        el("td", {}, `${ri.position.offset}`),
      );
      tr.addEventListener("click", () => select(ri.name));
      return tr;
    }),
  );
  $("rooms-total").textContent = `${r.total} room(s)${r.truncated ? ", first " + r.rooms.length : ""}`;
}

/** select makes room the one whose presence and events are shown. @param {string} room */
function select(room) {
  if (room === state.room) return;
  state.room = room;
  state.since = "";
  state.tailed = 0;
  $("tail").replaceChildren();
  tick();
}

async function loadPresence() {
  $("presence-room").textContent = state.room;
  if (!state.presence) {
    $("presence").replaceChildren(el("li", { class: "muted" }, "no presence in this room"));
    return;
  }
  const p = await call("/console/api/presence?room=" + encodeURIComponent(state.room));
  $("presence").replaceChildren(
    ...p.users.map((/** @type {any} */ u) =>
      el(
        "li",
        { "data-user": u.user },
        el("span", { class: "who" }, `${u.name || u.user} (${u.user}) · ${u.conns.length} tab(s)`),
        button("Disconnect", `disconnect-${u.user}`, () => act("disconnect", u.user)),
        button("Revoke", `revoke-${u.user}`, () => act("revoke", u.user), "danger"),
      ),
    ),
  );
}

/** @param {string} text @param {string} testid @param {() => void} fn @param {string} [cls] */
function button(text, testid, fn, cls = "") {
  const b = el("button", { type: "button", "data-testid": testid, class: cls }, text);
  b.addEventListener("click", fn);
  return b;
}

async function loadTail() {
  const q = `?room=${encodeURIComponent(state.room)}&limit=50` + (state.since ? `&since=${encodeURIComponent(state.since)}` : "");
  const h = await call("/console/api/history" + q);
  $("tail-room").textContent = state.room;
  const list = $("tail");
  if (h.reset && state.since) list.append(el("li", { class: "muted" }, "… some events were missed …"));
  for (const p of h.publications) {
    list.append(el("li", { "data-offset": String(p.offset), "data-event": p.event }, `#${p.offset} ${p.event} ${JSON.stringify(p.data)}`));
    state.tailed++;
  }
  while (list.children.length > 200) list.firstElementChild?.remove();
  state.since = h.since || state.since;
}

async function loadActions() {
  const a = await call("/console/api/actions?limit=20");
  $("actions").replaceChildren(
    ...a.actions.map((/** @type {any} */ x) => {
      const target = x.user || x.token_id || x.room || "";
      const res = x.result ? ` → ${x.result.connections} connection(s) on ${x.result.nodes} node(s)${x.result.complete ? "" : " (incomplete)"}` : "";
      return el("li", {}, `${new Date(x.time).toLocaleTimeString()} ${x.actor} ${x.action} ${target} ${x.status}${res}`);
    }),
  );
}

/**
 * act runs a user action and shows its result.
 * @param {"disconnect" | "revoke" | "recheck"} action
 * @param {string} user
 */
async function act(action, user) {
  const out = $("action-result");
  out.className = "result";
  out.textContent = `${action} ${user}…`;
  try {
    const r = await call("/console/api/" + action, { user, reason: `${action} from the admin console` });
    out.textContent = `${action} ${user}: ${r.connections} connection(s) on ${r.nodes} node(s)` + (r.complete ? "" : `, ${r.missing} node(s) did not answer: repeat`);
    out.dataset.connections = String(r.connections);
    out.dataset.action = action;
  } catch (e) {
    out.className = "result bad";
    out.textContent = `${action} ${user}: ${e.message} (${e.status})`;
    out.dataset.action = action;
    out.dataset.connections = "";
  }
  tick();
}

// --- wiring ---

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await call("/console/login", { username: input("username").value, password: input("password").value });
    input("password").value = "";
    $("me").textContent = input("username").value;
    await start();
  } catch (e) {
    show("login", e.status === 403 ? "The console is for admins only (403)." : e.status === 401 ? "Wrong user name or password." : e.message);
  }
});
$("logout").addEventListener("click", async () => {
  state.running = false;
  await fetch("/console/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
  show("login", "Signed out.");
});
for (const action of /** @type {const} */ (["disconnect", "revoke", "recheck"])) {
  $("do-" + action).addEventListener("click", () => {
    const user = input("target-user").value.trim();
    if (user) act(action, user);
  });
}
start();
