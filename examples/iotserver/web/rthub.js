// rthub.js — browser client for an rthub hub (protocol rthub.v1,
// docs/protocol.md). An ES module with no dependencies; copy it into any
// page.
//
//   import { RthubClient } from "./rthub.js";
//   const c = new RthubClient("wss://example.com/ws", {
//     token: async ({ reason }) => fetchToken(reason), // before every connection and refresh
//     rooms: ["device:42"],                           // joined (and rejoined) after each connection
//   });
//   c.onState((state, info) => badge.textContent = state);
//   c.on("sensor:data", (data, { room }) => draw(room, data));
//   c.connect();
//   await c.join("device:7");                         // rejects with an RthubError (code "forbidden", ...)
//   const people = c.presenceRoom("staff");           // live list of who is there
//   people.onChange(() => render(people.list()));
//   await c.viewing("device:7");                      // tell the room what this tab shows
//
// Connection states: "connecting" (first attempt), "live", "stale" (open
// but nothing heard for staleAfter: the data on screen may be old),
// "reconnecting" (waiting to retry, or retrying), "closed" (stopped for
// good: see the info's closeCode, closeReason and error). A page should end
// its session on "closed" with a closeCode of 4100–4199 (the server refused
// the token or the identity, or disconnected the user: reconnecting with
// the same sign-in cannot work) or an error with `fatal` set.
//
// Reconnection follows the protocol's close codes (§3): 1001, 1006, 1011,
// 1012–1014 and 4000–4099 reconnect (4002, token expired, with a fresh
// token); 1000, 1002, 1003, 1007, 1008, 1009 and 4100–4199 stop. Waits
// before attempts: 1, 2, 4, 8, 16, then 30 s, each ± 20 % jitter, from 1 s
// again after a connection that lasted. A browser cannot see why a handshake
// failed (a 401 and a dead server both look like 1006 before open), so after
// a failed attempt the token function is called with reason
// "handshake-failed": throw an error with `fatal = true` from it (for
// example when your login endpoint says the session is over) to stop.

const PROTOCOL = "rthub.v1";
const BEARER = "rthub.bearer.";

/** Error of a command the server refused, or of the client itself. */
export class RthubError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "RthubError";
    this.code = code; // "forbidden", "bad_room", "rate_limited", ..., or "disconnected", "timeout", "closed"
  }
}

/** Whether a close code means "reconnect" (docs/protocol.md §3). */
export function shouldReconnect(code) {
  if ([1001, 1006, 1011, 1012, 1013, 1014].includes(code)) return true;
  return code >= 4000 && code <= 4099;
}

/** The wait before reconnection attempt n (from 0), in ms. */
export function backoffDelay(n, { min = 1000, max = 30000, factor = 2, jitter = 0.2 } = {}, rand = Math.random) {
  const d = Math.min(max, min * Math.pow(factor, n));
  return Math.round(d * (1 + jitter * (2 * rand() - 1)));
}

export class RthubClient {
  /**
   * @param {string} url ws:// or wss:// URL of the hub (relative URLs are
   *   resolved against the page: "/ws" works).
   * @param {object} opts
   * @param {(ctx: {reason: string}) => Promise<string>|string} opts.token
   *   returns the JWT; reason is "connect", "reconnect", "handshake-failed",
   *   "expired" (after close 4002) or "expiring" (refresh on the server's
   *   warning) or "refresh" (refresh()).
   * @param {string[]} [opts.rooms] rooms to join after every connection.
   * @param {object} [opts.backoff] {min, max, factor, jitter} in ms.
   * @param {number} [opts.heartbeat] ms between two pings when nothing else
   *   is heard (default: the server's ping interval from its welcome, 25 s).
   * @param {number} [opts.staleAfter] ms of silence before "stale" (default
   *   heartbeat + 5 s); after 2 × heartbeat + 5 s the connection is dropped
   *   and reconnected.
   * @param {number} [opts.commandTimeout] ms (default 10 s).
   */
  constructor(url, opts = {}) {
    if (typeof opts.token !== "function") throw new TypeError("opts.token must be a function");
    this.url = new URL(url, globalThis.location ? globalThis.location.href : undefined).href.replace(/^http/, "ws");
    this.opts = { commandTimeout: 10000, ...opts };
    this.backoff = { min: 1000, max: 30000, factor: 2, jitter: 0.2, ...(opts.backoff || {}) };
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.state = "idle";
    this.rooms = new Set(opts.rooms || []); // the client's own rooms, rejoined
    this.serverRooms = new Set(); // joined by the server (welcome, "joined")
    this.welcome = null; // the latest welcome message
    this.lastHeard = 0; // Date.now() of the latest message
    this.attempt = 0;
    this.nextRetryAt = 0;
    this.closeCode = 0;
    this.closeReason = ""; // the close frame's reason, e.g. "token_signature_invalid"
    this.error = null;
    this._viewing = "";
    this._pos = new Map(); // room → {offset, epoch} of the last event seen: sent back to resume
    this._resetFns = new Set();
    this._handlers = new Map(); // event → Set(fn)
    this._stateFns = new Set();
    this._connFns = new Set();
    this._pending = new Map(); // id → {resolve, reject, timer}
    this._waiters = []; // commands waiting for a connection
    this._nextId = 1;
    this._ws = null;
    this._stopped = false;
    this._timer = null;
    this._tick = null;
  }

  /** Starts connecting (once). */
  connect() {
    if (this.state !== "idle") return;
    this._setState("connecting");
    this._open("connect");
    this._tick = setInterval(() => this._checkLiveness(), 1000);
    this._tick.unref?.(); // outside browsers (node), do not keep the process alive
  }

  /** Stops for good: no reconnection. */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    clearInterval(this._tick);
    if (this._ws) this._ws.close(1000, "client closed");
    this._failAll(new RthubError("closed", "client closed"));
    this._setState("closed");
  }

  /** Calls fn(data, {event, room}) for each event named event; returns an unsubscribe function. */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this._handlers.get(event).delete(fn);
  }

  /** Calls fn(state, info) on every state change (and once now). */
  onState(fn) {
    this._stateFns.add(fn);
    fn(this.state, this._info());
    return () => this._stateFns.delete(fn);
  }

  /**
   * Calls fn(room) when events of room were missed and cannot be replayed (the
   * server's history was exceeded or lost): reload that room's state. Otherwise
   * a reconnection resumes every room exactly where it stopped (the client
   * sends its last positions; duplicates are dropped).
   */
  onReset(fn) {
    this._resetFns.add(fn);
    return () => this._resetFns.delete(fn);
  }

  /** Calls fn(welcome) after every (re)connection, once rooms are rejoined: reload page state here. */
  onConnected(fn) {
    this._connFns.add(fn);
    return () => this._connFns.delete(fn);
  }

  /** Sends a command and resolves with its reply's data; rejects with an RthubError. */
  command(op, fields = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        this._waiters = this._waiters.filter((w) => w !== send);
        reject(new RthubError("timeout", `${op}: no reply within ${this.opts.commandTimeout} ms`));
      }, this.opts.commandTimeout);
      const id = this._nextId++;
      const send = () => {
        this._pending.set(id, { resolve, reject, timer, op });
        this._ws.send(JSON.stringify({ id, op, ...fields }));
      };
      if (this._isOpen()) send();
      else if (this.state === "closed") {
        clearTimeout(timer);
        reject(new RthubError("closed", "client closed"));
      } else this._waiters.push(send);
    });
  }

  /** Joins a room; it is rejoined after every reconnection until leave(). */
  async join(room) {
    const since = this._pos.get(room);
    const data = await this.command("join", since ? { room, since } : { room });
    this.rooms.add(room);
    this._joinedAt(room, data);
    return data;
  }

  /** Leaves a room (and stops rejoining it). */
  async leave(room) {
    this.rooms.delete(room);
    this._pos.delete(room);
    return this.command("leave", { room });
  }

  /** Emits an event to a room (the server's handler decides what happens). */
  emit(event, room, data) {
    return this.command("emit", { event, room, data });
  }

  ping() {
    return this.command("ping");
  }

  /** Gets a fresh token and sends it: the server moves the expiry and re-evaluates rooms. */
  async refresh(reason = "refresh") {
    const token = await this.opts.token({ reason });
    return this.command("refresh", { token });
  }

  /** Who is in a room with presence: {room, count, users: [{user, name, roles, conns: [{conn, viewing}]}], truncated}. */
  presence(room) {
    return this.command("presence", { room });
  }

  /** Declares what this connection is viewing ("" clears); restored after reconnection. */
  async viewing(target) {
    this._viewing = target || "";
    if (!this._isOpen()) return null; // sent after the next connection
    return this.command("viewing", { target: this._viewing });
  }

  /** A live presence list of room (see PresenceRoom). */
  presenceRoom(room) {
    return new PresenceRoom(this, room);
  }

  // --- internals ---

  _info() {
    return {
      attempt: this.attempt,
      nextRetryAt: this.nextRetryAt,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      error: this.error,
      lastHeard: this.lastHeard,
      user: this.welcome && this.welcome.user,
    };
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    const info = this._info();
    for (const fn of this._stateFns) {
      try {
        fn(s, info);
      } catch (e) {
        console.error(e);
      }
    }
  }

  _isOpen() {
    return this._ws && this._ws.readyState === 1 && this.welcome && (this.state === "live" || this.state === "stale");
  }

  _heartbeat() {
    if (this.opts.heartbeat) return this.opts.heartbeat;
    return ((this.welcome && this.welcome.ping) || 25) * 1000;
  }

  async _open(reason) {
    if (this._stopped) return;
    let token;
    try {
      token = await this.opts.token({ reason });
    } catch (e) {
      if (e && e.fatal) return this._stop(0, e);
      this.error = e;
      return this._retry();
    }
    if (this._stopped) return;
    let ws;
    try {
      ws = new this.WebSocket(this._sinceURL(), [PROTOCOL, BEARER + token]);
    } catch (e) {
      this.error = e;
      return this._retry();
    }
    this._ws = ws;
    let opened = false;
    let welcomed = false;
    ws.onopen = () => {
      opened = true;
      this.lastHeard = Date.now();
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m.type === "welcome") {
        welcomed = true;
        this._onWelcome(m);
      } else this._dispatch(m);
    };
    const onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this.welcome = null;
      this.closeCode = ev.code;
      this.closeReason = ev.reason || "";
      this._failAll(new RthubError("disconnected", `connection closed (${ev.code})`));
      if (this._stopped) return;
      if (opened && !welcomed && ev.code === 4002) return this._retry("expired"); // token refused in-band (protocol §1)
      if (opened && !welcomed && ev.code >= 4100 && ev.code <= 4199) {
        return this._stop(ev.code, new Error(`token refused: ${ev.reason || ev.code}`));
      }
      if (!opened || !welcomed) {
        // The handshake failed: a refused token looks the same as a dead server.
        this.error = new Error(`connection failed (${ev.code})`);
        return this._retry("handshake-failed");
      }
      if (!shouldReconnect(ev.code)) return this._stop(ev.code, new Error(`closed by the server: ${ev.code} ${ev.reason}`));
      this.error = new Error(`connection lost: ${ev.code} ${ev.reason}`);
      this._retry(ev.code === 4002 ? "expired" : "reconnect");
    };
    ws.onclose = onclose;
    // Drops a connection that went silent, as if the network had.
    this._drop = () => {
      ws.onclose = null;
      ws.close();
      onclose({ code: 1006, reason: "no answer from the server" });
    };
  }

  async _onWelcome(m) {
    this.welcome = m;
    this.serverRooms = new Set(m.rooms || []);
    this.error = null;
    this.attempt = 0; // the backoff starts again from its minimum
    for (const [room, st] of Object.entries(m.streams || {})) this._joinedAt(room, st);
    // Rejoin our own rooms, then restore viewing, before calling it live.
    const ws = this._ws;
    const sendRaw = (op, fields) =>
      new Promise((resolve, reject) => {
        const id = this._nextId++;
        const timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new RthubError("timeout", op));
        }, this.opts.commandTimeout);
        this._pending.set(id, { resolve, reject, timer, op });
        ws.send(JSON.stringify({ id, op, ...fields }));
      });
    const joins = [...this.rooms].filter((r) => !this.serverRooms.has(r)).map((room) => {
      const since = this._pos.get(room);
      return sendRaw("join", since ? { room, since } : { room }).then((d) => this._joinedAt(room, d)).catch((e) => {
        if (e.code !== "rate_limited" && e.code !== "internal" && e.code !== "disconnected" && e.code !== "timeout") {
          this.rooms.delete(room); // refused now: dropped, as the Go client does
        }
        console.warn(`rthub: rejoin ${room}: ${e.message}`);
      });
    });
    await Promise.all(joins);
    if (this._viewing) await sendRaw("viewing", { target: this._viewing }).catch(() => {});
    if (this._ws !== ws) return;
    this._setState("live");
    const waiters = this._waiters;
    this._waiters = [];
    for (const send of waiters) send();
    for (const fn of this._connFns) {
      try {
        fn(m);
      } catch (e) {
        console.error(e);
      }
    }
  }

  _dispatch(m) {
    switch (m.type) {
      case "event": {
        if (m.offset) {
          // Resume bookkeeping: drop what was seen (a replay overlapping live events).
          const p = this._pos.get(m.room);
          if (p && p.epoch === m.epoch && m.offset <= p.offset) return;
          this._pos.set(m.room, { offset: m.offset, epoch: m.epoch });
        }
        const fns = this._handlers.get(m.event);
        if (fns)
          for (const fn of [...fns]) {
            try {
              fn(m.data, { event: m.event, room: m.room });
            } catch (e) {
              console.error(e);
            }
          }
        const any = this._handlers.get("*");
        if (any) for (const fn of [...any]) fn(m.data, { event: m.event, room: m.room });
        return;
      }
      case "reply": {
        const p = this._pending.get(m.id);
        if (!p) return;
        this._pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.error) p.reject(new RthubError(m.error.code, m.error.message));
        else p.resolve(m.data === undefined ? null : m.data);
        return;
      }
      case "joined":
        this.serverRooms.add(m.room);
        return;
      case "left":
        this.serverRooms.delete(m.room);
        this.rooms.delete(m.room);
        this._pos.delete(m.room);
        return;
      case "reset":
        this._pos.set(m.room, { offset: m.offset, epoch: m.epoch });
        this._reset(m.room);
        return;
      case "expiring":
        this.refresh("expiring").catch((e) => console.warn("rthub: token refresh failed:", e.message));
        return;
    }
  }

  // _joinedAt records where a join (or the welcome) left us in a room's
  // stream, and reports a resume the server could not honour.
  _joinedAt(room, st) {
    if (!st || !st.epoch) return;
    const p = this._pos.get(room);
    if (!p || st.recovered !== true || p.epoch !== st.epoch) this._pos.set(room, { offset: st.offset, epoch: st.epoch });
    if (st.recovered === false) this._reset(room);
  }

  _reset(room) {
    for (const fn of [...this._resetFns]) {
      try {
        fn(room);
      } catch (e) {
        console.error(e);
      }
    }
  }

  // _sinceURL is the URL with the positions of our rooms, for the server to
  // resume the rooms it joins by itself (protocol §5).
  _sinceURL() {
    const rooms = new Set([...this.rooms, ...this.serverRooms]);
    const since = {};
    let n = 0;
    for (const [room, p] of this._pos) {
      if (rooms.has(room)) {
        since[room] = p;
        n++;
      }
    }
    if (n === 0) return this.url;
    const b64 = btoa(JSON.stringify(since)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return this.url + (this.url.includes("?") ? "&" : "?") + "since=" + b64;
  }

  _failAll(err) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this._pending.delete(id);
    }
  }

  _retry(reason = "reconnect") {
    if (this._stopped) return;
    const d = backoffDelay(this.attempt, this.backoff);
    this.attempt++;
    this.nextRetryAt = Date.now() + d;
    if (this.state === "reconnecting") {
      // Same state, new countdown: tell the listeners anyway.
      for (const fn of this._stateFns) fn(this.state, this._info());
    } else this._setState("reconnecting");
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(reason), d);
  }

  _stop(code, err) {
    this._stopped = true;
    if (code !== this.closeCode) this.closeReason = ""; // not stopped by this close (a fatal token error)
    this.closeCode = code;
    this.error = err;
    clearTimeout(this._timer);
    clearInterval(this._tick);
    this._failAll(new RthubError("closed", err ? err.message : "stopped"));
    this._setState("closed");
  }

  // Once a second: ping when quiet, "stale" when silent too long, drop the
  // connection when silent much too long (a half-open TCP connection never
  // closes by itself).
  _checkLiveness() {
    if (!this._ws || !this.welcome) return;
    const hb = this._heartbeat();
    const quiet = Date.now() - this.lastHeard;
    const staleAfter = this.opts.staleAfter || hb + 5000;
    if (quiet > 2 * hb + 5000) {
      this._drop();
      return;
    }
    if (quiet > staleAfter) this._setState("stale");
    else if (this.state === "stale") this._setState("live");
    if (quiet > hb && (!this._lastPing || Date.now() - this._lastPing > hb)) {
      this._lastPing = Date.now();
      this.ping().catch(() => {});
    }
  }
}

/**
 * PresenceRoom keeps the list of people in a room with presence: a
 * snapshot (the "presence" command) after every connection, updated by the
 * room's user:online, user:offline and user:viewing events.
 */
export class PresenceRoom {
  constructor(client, room) {
    this.client = client;
    this.room = room;
    this.users = new Map(); // user → {user, name, roles, conns: Map(conn → viewing)}
    this.count = 0;
    this._fns = new Set();
    // user → seq of the last online/offline event applied. Two nodes can
    // publish one person's online and offline at the same moment and they
    // can arrive in either order; "seq" says which came last (protocol §2.3).
    this._seqs = new Map();
    const mine = (fn) => (data, meta) => {
      if (meta.room === room) {
        fn(data);
        this._changed();
      }
    };
    const fresh = (d) => {
      if (!d.seq) return true;
      if ((this._seqs.get(d.user) || 0) >= d.seq) return false; // older than what we applied
      this._seqs.set(d.user, d.seq);
      return true;
    };
    this._offs = [
      client.on("user:online", mine((d) => {
        if (fresh(d) && !this.users.has(d.user)) this.users.set(d.user, { user: d.user, name: d.name || d.user, roles: d.roles || [], conns: new Map() });
      })),
      client.on("user:offline", mine((d) => {
        if (fresh(d)) this.users.delete(d.user);
      })),
      client.on("user:viewing", mine((d) => {
        let u = this.users.get(d.user);
        if (!u) {
          u = { user: d.user, name: d.user, roles: [], conns: new Map() };
          this.users.set(d.user, u);
        }
        u.conns.set(d.conn, d.viewing || "");
      })),
      client.onConnected(() => this.reload()),
    ];
    if (client.state === "live") this.reload();
  }

  /** Fetches the snapshot again. */
  async reload() {
    try {
      const p = await this.client.presence(this.room);
      this.users = new Map();
      for (const u of p.users) {
        this.users.set(u.user, {
          user: u.user,
          name: u.name || u.user,
          roles: u.roles || [],
          conns: new Map(u.conns.map((c) => [c.conn, c.viewing || ""])),
        });
      }
      this.count = p.count;
      this.truncated = p.truncated;
      this._changed();
    } catch (e) {
      console.warn(`rthub: presence ${this.room}: ${e.message}`);
    }
  }

  /** Calls fn(list) on every change. */
  onChange(fn) {
    this._fns.add(fn);
    return () => this._fns.delete(fn);
  }

  /** The people, sorted by name: [{user, name, roles, viewing: [targets]}]. */
  list() {
    return [...this.users.values()]
      .map((u) => ({ user: u.user, name: u.name, roles: u.roles, conns: u.conns.size, viewing: [...new Set([...u.conns.values()].filter(Boolean))] }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The people viewing target (e.g. "device:42"). */
  viewersOf(target) {
    return this.list().filter((u) => u.viewing.includes(target));
  }

  close() {
    for (const off of this._offs) off();
  }

  _changed() {
    this.count = this.truncated ? Math.max(this.count, this.users.size) : this.users.size;
    const l = this.list();
    for (const fn of this._fns) fn(l);
  }
}
