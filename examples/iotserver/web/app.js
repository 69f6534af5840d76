// @ts-check
// The dashboard: joins the staff room with state (@rthub/client), so the
// device cards' live fields (status, last reading) come from the hub's
// snapshot and then exactly the events after it: nothing published between
// loading the page and subscribing is lost or applied twice. REST gives
// the rest of the page state (device names, alerts, history ranges).
// Everything it shows comes from the events in README.md.

// snippet:begin import
import { RthubClient } from "./vendor/rthub-client.js";
// snippet:end
import { sparkline, chart, newSVG } from "./chart.js";

// The hub's contract, generated from the Go events and policy (contract/,
// TestContract keeps it fresh): the client's on() and emit() are checked
// against it by tsc (TestDashboardTypes).
/** @typedef {import("../contract/contract").Contract} Contract */
/** @typedef {import("../contract/contract").Alert} Alert */
/** @typedef {import("../contract/contract").ReadingEvent} ReadingEvent */
/** @typedef {import("../contract/contract").StatusEvent} StatusEvent */
/** @typedef {import("../contract/contract").Result} Command */
/** @typedef {import("../contract/contract").CommandRequest} CommandRequest */

const $ = (/** @type {string} */ id) => document.getElementById(id);
const input = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
const h = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
};

const HISTORY = 300; // points kept per device and metric
const UNITS = { temperature: "°C", humidity: "%", co2: "ppm" };
const SESSION_KEY = "rthub-iot-session";

const app = {
  session: null, // {token, expires, user: {username, name, roles}}
  client: /** @type {RthubClient<Contract> | null} */ (null),
  presence: null,
  devices: new Map(), // id → {id, name, kind, status, last, history: Map(metric → [[t, v]])}
  alerts: new Map(), // id → alert
  rules: new Map(), // metric → open threshold
  // Commands to devices (RPC device:command), by ID, the last 100: the
  // call's answer (queued) and then the device:command events.
  commands: /** @type {Map<string, Command>} */ (new Map()),
  selected: "",
  health: null,
  healthAt: 0,
  analytics: null,
  dirty: new Set(),
  // The readings applied to the cards, in order (the last 500), with where
  // each came from ("snapshot" or "event"): the browser test checks that
  // none is lost or applied twice.
  applied: /** @type {{device: string, at: string, offset: number, via: string, values: {[key: string]: number}}[]} */ ([]),
};
/** @type {any} */ (window).__iot = app; // for the browser test and the curious

// --- session and REST ---

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (s && s.token && new Date(s.expires) > new Date()) return s;
  } catch {}
  return null;
}

function saveSession(s) {
  app.session = s;
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

class HTTPError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (app.session) headers.Authorization = "Bearer " + app.session.token;
  if (opts.body) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { ...opts, headers });
  const body = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new HTTPError(res.status, body);
  return body;
}

const isAdmin = () => app.session && app.session.user.roles.includes("admin");

// token is the client's token function: the stored token while it has more
// than a minute left, a refreshed one otherwise, and always a refreshed one
// after a failed handshake, so that a token the server no longer accepts (a
// restart with a new secret) ends the session instead of retrying forever.
// (A token refused in the handshake usually arrives as close 4100 instead:
// see sessionEnded.)
async function token({ reason }) {
  const left = Date.parse(app.session.expires) - Date.now();
  if ((reason === "connect" || reason === "reconnect") && left > 60000) return app.session.token;
  try {
    const r = await api("/api/token", { method: "POST" });
    saveSession(r);
    return r.token;
  } catch (e) {
    if (e.status === 401) {
      const err = Object.assign(new Error("the server no longer accepts this sign-in"), { fatal: true }); // the client stops: sessionEnded signs out
      throw err;
    }
    throw e; // the server is down: the client retries
  }
}

// sessionEnded is the sign-in prompt's text when the client stopped for a
// reason that ends the session, or "" when it did not: a close code of the
// "do not reconnect" range 4100–4199 (docs/protocol.md §3: 4100 the token or
// identity refused, e.g. by a server restarted with a new secret; 4101 the
// server disconnected this user), or a fatal error of the token function.
function sessionEnded(info) {
  const code = info.closeCode || 0;
  if (code >= 4100 && code <= 4199) {
    const why = code === 4101 ? "disconnected by the server" : "the server refused the session";
    const reason = info.closeReason ? `: ${info.closeReason}` : "";
    return `Session ended (${why}${reason}, close ${code}): sign in again.`;
  }
  if (info.error && info.error.fatal) return `Session ended (${info.error.message}): sign in again.`;
  return "";
}

// --- login ---

function showLogin(msg = "") {
  $("login-view").hidden = false;
  $("dash").hidden = true;
  $("whoami").hidden = true;
  $("login-error").textContent = msg;
  $("username").focus();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const r = await api("/api/login", { method: "POST", body: JSON.stringify({ username: input("username").value, password: input("password").value }) });
    saveSession(r);
    input("password").value = "";
    start();
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong user name or password." : "Login failed: " + e.message;
  }
});

$("logout").addEventListener("click", () => logout());

function logout(msg) {
  const c = app.client;
  app.client = null; // first: the client's own "closed" below is not a session end
  if (c) c.close();
  saveSession(null);
  // Nothing of this session's data stays for the next one (the next sign-in
  // may reach a restarted server with other devices and alerts).
  Object.assign(app, { presence: null, devices: new Map(), alerts: new Map(), selected: "", health: null, healthAt: 0, analytics: null });
  app.dirty.clear();
  $("devices").replaceChildren();
  $("detail").hidden = true;
  setConn("idle", {});
  showLogin(msg);
}

// --- connection ---

function start() {
  const s = app.session;
  $("login-view").hidden = true;
  $("dash").hidden = false;
  $("whoami").hidden = false;
  $("me").textContent = `${s.user.name} (${s.user.roles.join(", ")})`;
  for (const e of document.querySelectorAll(".admin-only")) /** @type {HTMLElement} */ (e).hidden = !isAdmin();
  $("admin").hidden = !isAdmin();

  // snippet:begin client
  /** @type {RthubClient<Contract>} */
  const c = new RthubClient("/ws", { token, heartbeat: 10000, rooms: [{ room: "staff", state: true }] });
  // snippet:end
  app.client = c;
  c.onState((state, info) => {
    setConn(state, info);
    // Stopped for good by the server (41xx) or by the token function: back
    // to the sign-in, with the reason, at once; not a greyed page that
    // waits for nothing.
    const msg = state === "closed" && app.client === c ? sessionEnded(info) : "";
    if (msg) logout(msg);
  });
  c.onConnected(() => loadState(c).catch((e) => console.warn("loading state:", e)));
  // Events the server could not replay (history exceeded or lost): reload.
  c.onReset(() => loadState(c).catch((e) => console.warn("loading state:", e)));
  // The staff room's state: the latest reading and status of every device,
  // then the events after them (on every connection, and again whenever
  // the hub could not resume the room).
  c.onSnapshot((s) => {
    if (s.room !== "staff") return;
    for (const { data, meta } of s.events) {
      if (meta.event === "sensor:data") onReading(/** @type {ReadingEvent} */ (data), meta.offset, "snapshot");
      else if (meta.event === "device:status") onStatus(/** @type {StatusEvent} */ (data));
    }
  });
  c.on("sensor:data", (d, m) => m.room === "staff" && onReading(d, m.offset, "event"));
  c.on("device:status", (d, m) => m.room === "staff" && onStatus(d));
  c.on("alert:new", (a, m) => m.room === "staff" && onAlert(a));
  c.on("alert:resolved", (a, m) => m.room === "staff" && onAlert(a));
  c.on("alert:acked", (a, m) => m.room === "staff" && onAlert(a));
  c.on("system:health", (d) => {
    app.health = d;
    app.healthAt = Date.now();
    renderHealth();
  });
  c.on("analytics:update", (d) => {
    app.analytics = d;
    renderAnalytics();
  });
  c.on("audit:entry", (e) => prependAudit(e));
  c.on("device:command", (r, m) => m.room === "staff" && onCommand(r));
  const presence = c.presenceRoom("staff");
  app.presence = presence;
  presence.onChange(() => {
    if (app.presence !== presence) return; // a late answer of a session that ended
    renderOnline();
    for (const id of app.devices.keys()) app.dirty.add(id);
    schedule();
  });
  c.connect();
}

let ticker = null;
function setConn(state, info) {
  const box = $("conn");
  box.className = "conn conn-" + state;
  box.dataset.state = state;
  $("dash").classList.toggle("stale", state !== "live");
  const render = () => {
    let text = state;
    if (state === "reconnecting") {
      const s = Math.max(0, Math.ceil((info.nextRetryAt - Date.now()) / 1000));
      text = s > 0 ? `reconnecting in ${s} s (attempt ${info.attempt})` : `reconnecting (attempt ${info.attempt})`;
    } else if (state === "stale") {
      text = `stale: nothing heard for ${Math.round((Date.now() - info.lastHeard) / 1000)} s`;
    } else if (state === "closed") {
      text = "disconnected" + (info.closeCode ? ` (${info.closeCode})` : "");
    } else if (state === "idle") text = "offline";
    if (state !== "live" && app.healthAt) text += ` · data as of ${new Date(app.healthAt).toLocaleTimeString()}`;
    $("conn-text").textContent = text;
  };
  clearInterval(ticker);
  render();
  if (state === "reconnecting" || state === "stale") ticker = setInterval(render, 1000);
}

// loadState fetches the page state after every (re)connection of client c:
// what happened while disconnected is not replayed by the hub.
async function loadState(c) {
  const [devs, alerts, analytics, health] = await Promise.all([
    api("/api/devices"),
    api("/api/alerts"),
    api("/api/analytics"),
    api("/api/health"),
  ]);
  if (app.client !== c) return; // the session ended meanwhile
  for (const d of devs.devices) {
    // Status and last reading come from the hub's snapshot and events
    // (fromHub): REST only names the devices, and fills in what the hub
    // has never sent (a device with no reading since the hub started).
    const cur = app.devices.get(d.id) || { history: new Map() };
    Object.assign(cur, { id: d.id, name: d.name, kind: d.kind });
    if (!cur.fromHub) Object.assign(cur, { status: d.status, last: d.last });
    app.devices.set(d.id, cur);
    app.dirty.add(d.id);
  }
  app.rules = new Map(alerts.rules.map((r) => {
    const m = /^([a-z0-9_]+)([<>])(-?[\d.]+)/.exec(r);
    return [m[1], Number(m[3])];
  }));
  app.alerts = new Map(alerts.alerts.map((a) => [a.id, a]));
  app.analytics = analytics;
  app.health = health; // the server's latest (possibly a new process: no stale numbers)
  app.healthAt = Date.now();
  await Promise.all([...app.devices.keys()].map((id) => loadHistory(id, 120)));
  if (app.client !== c) return;
  if (isAdmin()) {
    const a = await api("/api/audit");
    $("audit").replaceChildren();
    for (const e of a.entries.reverse()) prependAudit(e);
  }
  renderAlerts();
  renderAnalytics();
  renderHealth();
  renderDetail();
  schedule();
}

async function loadHistory(id, limit) {
  const r = await api(`/api/devices/${encodeURIComponent(id)}/readings?limit=${limit}`);
  const d = app.devices.get(id);
  if (!d) return;
  d.history = new Map();
  for (const rd of r.readings) addPoint(d, rd);
  app.dirty.add(id);
}

function addPoint(d, r) {
  const t = Date.parse(r.at);
  for (const [m, v] of Object.entries(r.values)) {
    if (!d.history.has(m)) d.history.set(m, []);
    const pts = d.history.get(m);
    if (pts.length && pts[pts.length - 1][0] >= t) continue; // already have it (history + live overlap)
    pts.push([t, v]);
    if (pts.length > HISTORY) pts.splice(0, pts.length - HISTORY);
  }
}

// --- events ---

/**
 * @param {ReadingEvent} r
 * @param {number | undefined} offset its position in the staff room's stream
 * @param {string} via "snapshot" or "event"
 */
function onReading(r, offset, via) {
  let d = app.devices.get(r.device);
  if (!d) {
    d = { id: r.device, name: r.device, kind: "external", status: "unknown", history: new Map() };
    app.devices.set(r.device, d);
  }
  d.last = r;
  d.fromHub = true;
  app.applied.push({ device: r.device, at: String(r.at), offset: offset || 0, via, values: r.values });
  if (app.applied.length > 500) app.applied.splice(0, app.applied.length - 500);
  addPoint(d, r);
  app.dirty.add(r.device);
  schedule();
}

/** @param {StatusEvent} s */
function onStatus(s) {
  let d = app.devices.get(s.device);
  if (!d) {
    d = { id: s.device, name: s.device, kind: "external", status: "unknown", history: new Map() };
    app.devices.set(s.device, d);
  }
  d.status = s.status;
  d.fromHub = true;
  app.dirty.add(s.device);
  schedule();
}

/** @param {Alert} a */
function onAlert(a) {
  if (a.state === "open") app.alerts.set(a.id, a);
  else app.alerts.delete(a.id);
  app.dirty.add(a.device);
  renderAlerts();
  schedule();
}

// --- rendering (batched per animation frame) ---

let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const box = $("devices");
  const ids = [...app.devices.keys()].sort();
  if (box.children.length !== ids.length) {
    box.replaceChildren(...ids.map((id) => deviceCard(id)));
  } else {
    for (const id of app.dirty) updateCard(id);
  }
  if (app.dirty.has(app.selected)) renderDetail();
  app.dirty.clear();
  $("dev-summary").textContent = deviceSummary();
  renderCounts();
}

// deviceSummary is the devices panel's count, from the same state as its
// cards (REST at connection, then device:status events).
function deviceSummary() {
  let online = 0;
  for (const d of app.devices.values()) if (d.status === "online") online++;
  return `${online} of ${app.devices.size} online`;
}

function deviceCard(id) {
  const card = h("div", { class: "device", "data-device": id, "data-testid": "device-" + id });
  card.addEventListener("click", () => select(id));
  card.append(
    h("div", { class: "top" }, h("span", { class: "name" }), h("span", { class: "status" })),
    h("div", { class: "id" }, id),
    h("div", { class: "values" }),
    newSVG("spark"),
    h("div", { class: "viewers" }),
  );
  updateCard(id, card);
  return card;
}

function mainMetric(d) {
  return d.history.has("temperature") ? "temperature" : [...d.history.keys()][0];
}

function openAlertFor(id, metric) {
  for (const a of app.alerts.values()) if (a.device === id && (!metric || a.metric === metric)) return a;
  return null;
}

function updateCard(id, card = /** @type {HTMLElement | null} */ (document.querySelector(`[data-device="${CSS.escape(id)}"]`))) {
  const d = app.devices.get(id);
  if (!card || !d) return;
  card.querySelector(".name").textContent = d.name;
  const st = card.querySelector(".status");
  st.textContent = d.status;
  st.className = "status " + d.status;
  card.dataset.status = d.status;
  card.classList.toggle("offline", d.status === "offline");
  card.classList.toggle("selected", id === app.selected);
  card.classList.toggle("alerting", !!openAlertFor(id));
  const vals = card.querySelector(".values");
  vals.replaceChildren();
  if (d.last) {
    for (const [m, v] of Object.entries(d.last.values).sort()) {
      vals.append(h("span", { class: openAlertFor(id, m) ? "breach" : "", title: m }, h("b", {}, String(v)), " " + (UNITS[m] || m)));
    }
  }
  card.dataset.readingAt = d.last ? d.last.at : "";
  const m = mainMetric(d);
  sparkline(card.querySelector("svg"), (m && d.history.get(m)) || [], app.rules.get(m));
  const viewers = app.presence ? app.presence.viewersOf("device:" + id) : [];
  card.querySelector(".viewers").textContent = viewers.length ? "viewing: " + viewers.map((u) => u.name).join(", ") : "";
}

async function select(id) {
  const c = app.client;
  const prev = app.selected;
  if (prev === id) return;
  app.selected = id;
  app.dirty.add(prev);
  app.dirty.add(id);
  schedule();
  renderDetail();
  try {
    if (prev) await c.leave(`device:${prev}`);
    if (id) {
      await c.join(`device:${id}`);
      await c.viewing("device:" + id);
      await loadHistory(id, HISTORY);
    } else {
      await c.viewing("");
    }
  } catch (e) {
    console.warn("select:", e.message);
  }
  renderDetail();
}

$("detail-close").addEventListener("click", () => select(""));
$("dropout").addEventListener("click", async () => {
  if (!app.selected) return;
  try {
    await api(`/api/devices/${encodeURIComponent(app.selected)}/dropout?seconds=10`, { method: "POST" });
  } catch (e) {
    alert("dropout: " + e.message);
  }
});

function renderDetail() {
  const id = app.selected;
  const d = app.devices.get(id);
  $("detail").hidden = !d;
  if (!d) return;
  $("detail-title").textContent = `${d.name} (${id})`;
  $("detail-status").textContent = d.status;
  const viewers = app.presence ? app.presence.viewersOf("device:" + id) : [];
  $("detail-viewers").textContent = viewers.length ? "Viewing now: " + viewers.map((u) => u.name).join(", ") : "";
  const box = $("detail-charts");
  box.replaceChildren();
  let i = 0;
  for (const [m, pts] of [...d.history.entries()].sort()) {
    const svg = newSVG("chart");
    const thr = deviceLevel(id, m);
    const title = (UNITS[m] ? `${m} (${UNITS[m]})` : m) + (thr !== undefined ? ` · alert at ${thr}` : "");
    box.append(h("div", {}, h("h3", {}, title), svg));
    chart(svg, pts, { threshold: thr, cls: "m" + (i++ % 3) }); // after append: it reads the width
  }
  renderCommands();
}

// --- commands to devices ---

// A command's states: queued → sent → done | failed, or → expired. The
// call's answer (queued) may arrive after the first events: keep the latest.
const COMMAND_RANK = { queued: 0, sent: 1, done: 2, failed: 2, expired: 2 };
const commandLabel = (/** @type {string} */ s) => (s === "queued" || s === "sent" ? "pending" : s);

function onCommand(/** @type {Command} */ r) {
  const cur = app.commands.get(r.id);
  if (cur && COMMAND_RANK[cur.state] >= COMMAND_RANK[r.state]) return;
  app.commands.set(r.id, r);
  while (app.commands.size > 100) app.commands.delete(app.commands.keys().next().value);
  if (r.device !== app.selected) return;
  if (r.name === "set_threshold" && r.state === "done") renderDetail(); // the chart's alert line
  else renderCommands();
}

// sendCommand calls device:command (typed by the contract's calls; admins
// only: the hub answers staff with forbidden). The answer is the queued
// command; the device's acknowledgement arrives as device:command "done".
async function sendCommand(/** @type {CommandRequest} */ req) {
  $("cmd-error").textContent = "";
  try {
    onCommand(await app.client.call("device:command", req));
  } catch (e) {
    $("cmd-error").textContent = `${req.command}: ${e.message}`;
  }
}

$("cmd-interval").addEventListener("submit", (e) => {
  e.preventDefault();
  sendCommand({ device: app.selected, command: "set_interval", seconds: Number(input("cmd-seconds").value) });
});
$("cmd-threshold").addEventListener("submit", (e) => {
  e.preventDefault();
  const metric = /** @type {HTMLSelectElement} */ ($("cmd-metric")).value;
  sendCommand({ device: app.selected, command: "set_threshold", metric, value: Number(input("cmd-value").value) });
});

// deviceLevel is the alert level of a device's metric: the last
// set_threshold it acknowledged while this page watched, else the rule's.
function deviceLevel(/** @type {string} */ id, /** @type {string} */ metric) {
  let v = app.rules.get(metric);
  for (const r of app.commands.values()) {
    const a = /** @type {any} */ (r.args);
    if (r.device === id && r.name === "set_threshold" && r.state === "done" && a && a.metric === metric) v = a.value;
  }
  return v;
}

function describeCommand(/** @type {Command} */ r) {
  const a = /** @type {any} */ (r.args) || {};
  if (r.name === "set_interval") return `reporting interval ${a.seconds} s`;
  if (r.name === "set_threshold") return `${a.metric} alert at ${a.value}`;
  return r.name;
}

function renderCommands() {
  const id = app.selected;
  const sel = /** @type {HTMLSelectElement} */ ($("cmd-metric"));
  const d = app.devices.get(id);
  const metrics = d ? [...d.history.keys()].filter((m) => app.rules.has(m)).sort() : [];
  if (sel.dataset.for !== id || sel.options.length !== metrics.length) {
    sel.dataset.for = id;
    sel.replaceChildren(...metrics.map((m) => h("option", { value: m }, m)));
    if (metrics.length) input("cmd-value").value = String(app.rules.get(metrics[0]));
  }
  const list = [...app.commands.values()].filter((r) => r.device === id).reverse();
  $("commands").replaceChildren(
    ...(list.length
      ? list.map((r) => {
          const label = commandLabel(r.state);
          const why =
            r.state === "expired"
              ? r.sent_at ? " (sent, no reply: the device may have applied it)" : " (the device stayed offline)"
              : r.state === "failed" ? `: ${r.error}` : r.state === "sent" ? " (sent)" : r.state === "queued" ? " (waiting for the device)" : "";
          return h("li", { "data-command": r.id, "data-name": r.name, "data-state": r.state },
            h("span", { class: "state " + label }, label), ` ${describeCommand(r)}${why}`,
            h("small", {}, " " + new Date(r.finished_at || r.sent_at || r.created).toLocaleTimeString()));
        })
      : [h("li", { class: "empty" }, "none")]),
  );
}

function renderAlerts() {
  const ul = $("alerts");
  const list = [...app.alerts.values()].sort((a, b) => b.id - a.id);
  $("alert-count").textContent = String(list.length);
  renderCounts();
  ul.replaceChildren(
    ...(list.length
      ? list.map((a) =>
          h("li", { "data-alert": a.id, "data-device": a.device, "data-acked-by": a.acked_by || "" },
            `${a.device}: ${a.metric} ${a.value} (${a.rule})`,
            h("small", {}, "since " + new Date(a.opened_at).toLocaleTimeString()),
            a.acked_by
              ? h("small", { class: "acked" }, `acknowledged by ${a.acked_by} at ${new Date(a.acked_at).toLocaleTimeString()}`)
              : h("button", { type: "button", class: "ack", "data-testid": "ack-" + a.id, onclick: () => acknowledge(a) }, "Acknowledge"),
          ),
        )
      : [h("li", { class: "empty" }, "none")]),
  );
}

// acknowledge emits alert:ack (typed by the contract: a wrong payload does
// not compile); the page shows the acknowledgement when the server's
// alert:acked arrives, for every user at once.
async function acknowledge(/** @type {Alert} */ a) {
  try {
    await app.client.emit("alert:ack", "staff", { id: a.id });
  } catch (e) {
    alert(`acknowledge alert ${a.id}: ${e.message}`);
  }
}

function renderOnline() {
  const list = app.presence.list();
  $("online-count").textContent = String(list.length);
  $("online").replaceChildren(
    ...list.map((u) =>
      h("li", { "data-user": u.user },
        h("span", {}, u.name + (u.user === app.session.user.username ? " (you)" : ""), " ", h("span", { class: "role" }, u.roles.join(", "))),
        u.viewing.length ? h("span", { class: "viewing", "data-testid": "viewing-" + u.user }, "viewing " + u.viewing.map((v) => v.replace(/^device:/, "device ")).join(", ")) : null,
        u.conns > 1 ? h("small", {}, `${u.conns} tabs`) : null,
      ),
    ),
  );
}

// renderHealth shows the latest system:health sample. Its device and alert
// counts are the panels' own (renderCounts), updated with every event, so
// that the health panel never disagrees with them between two samples.
// Rates need two samples: until the server has them, "—", not 0.0/s.
function renderHealth() {
  const x = app.health;
  if (!x) return;
  const mb = (b) => (b / 1048576).toFixed(1) + " MB";
  const rate = (v) => (x.rates ? `${v(x.rates).toFixed(1)}/s` : "—");
  const sim = x.mqtt.sim_devices ? `, ${x.mqtt.sim_devices} simulated device${x.mqtt.sim_devices === 1 ? "" : "s"} connected` : "";
  const rows = [
    ["connections", `${x.connections} (${x.users} users, ${x.rooms} rooms)`],
    ["mqtt", [x.mqtt.status, x.mqtt.status === "connected" ? "ok" : "bad", `${x.mqtt.status}, ${x.mqtt.broker} broker${sim}`]],
    ["devices", ""], // renderCounts
    ["database", [x.db.status, x.db.status === "ok" ? "ok" : "bad", `${x.db.kind} ${x.db.status} (${x.db.latency_ms.toFixed(1)} ms)`]],
    ["event rate", `${rate((r) => r.published)} published, ${rate((r) => r.delivered)} delivered`],
    ["mqtt rate", `${rate((r) => r.mqtt)}, ${x.mqtt.decode_errors} bad, ${x.mqtt.dropped} dropped`],
    ["readings stored", `${x.db.written}` + (x.db.dropped ? ` (${x.db.dropped} dropped)` : "")],
    ["open alerts", ""], // renderCounts
    ["goroutines", String(x.goroutines)],
    ["memory", `${mb(x.heap_bytes)} heap, ${mb(x.rss_bytes)} RSS`],
    ["refused", `${x.refused.unauthorized} unauthorized, ${x.refused.forbidden} forbidden`],
    ["uptime", `${Math.round(x.uptime)} s (node ${x.node})`],
  ];
  $("health").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dd = Array.isArray(v) ? h("dd", { class: v[1] }, v[2]) : h("dd", {}, v);
      dd.dataset.key = k;
      return [h("dt", {}, k), dd];
    }),
  );
  $("health-age").textContent = "at " + new Date(x.at).toLocaleTimeString();
  renderCounts();
}

// renderCounts fills the health panel's device and alert counts from the
// state the devices and alerts panels show.
function renderCounts() {
  const dev = document.querySelector('#health dd[data-key="devices"]');
  if (dev) dev.textContent = deviceSummary();
  const al = document.querySelector('#health dd[data-key="open alerts"]');
  if (al) al.textContent = String(app.alerts.size);
}

function renderAnalytics() {
  const a = app.analytics;
  if (!a) return;
  const tb = $("analytics").querySelector("tbody");
  tb.replaceChildren(
    ...a.devices.map((r) =>
      h("tr", {}, h("td", {}, r.device), h("td", {}, r.metric), h("td", {}, r.avg.toFixed(1)), h("td", {}, r.min.toFixed(1)), h("td", {}, r.max.toFixed(1)), h("td", {}, String(r.count))),
    ),
  );
  $("analytics-age").textContent = "computed " + new Date(a.computed_at).toLocaleTimeString();
  $("analytics-alerts").textContent = `alerts: ${a.alerts.open} open, ${a.alerts.opened} opened and ${a.alerts.resolved} resolved in the window`;
}

function prependAudit(e) {
  const tb = $("audit");
  const tr = h("tr", { class: "audit-" + e.kind, "data-kind": e.kind },
    h("td", {}, new Date(e.at).toLocaleTimeString()),
    h("td", {}, e.kind),
    h("td", {}, e.username || "—"),
    h("td", {}, e.detail),
    h("td", {}, e.remote_addr),
  );
  tb.prepend(tr);
  while (tb.children.length > 200) tb.lastChild.remove();
}

// --- boot ---

app.session = loadSession();
if (app.session) start();
else showLogin();
