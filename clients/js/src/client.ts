import { backoffDelay, isAuthClose, shouldReconnect, type BackoffOptions } from "./backoff.js";
import { RthubError, type AuthErrorInfo } from "./errors.js";
import { PresenceRoom } from "./presence.js";
import type {
  AnyContract,
  CallName,
  CallRequest,
  CallResult,
  ClientOptions,
  ConnState,
  ContractShape,
  EmitName,
  EventHandler,
  EventMeta,
  EventName,
  ExpiredInfo,
  JoinOptions,
  JoinReply,
  OutboxStats,
  PresenceSnapshot,
  Snapshot,
  Room,
  SendOptions,
  StateInfo,
  StreamPosition,
  TokenFn,
  TokenReason,
  WebSocketCtor,
  WebSocketLike,
  Welcome,
} from "./types.js";

const PROTOCOL = "rthub.v1";
const BEARER = "rthub.bearer.";

/** A message from the server (protocol §2.1), as far as the client reads it. */
interface ServerMessage {
  type: string;
  id?: number;
  event?: string;
  room?: string;
  data?: unknown;
  offset?: number;
  epoch?: string;
  cid?: string;
  error?: { code: string; message?: string };
}

/** A join reply's data as sent (protocol §2.2). */
type RawJoin = JoinReply & { state?: ServerMessage[] };

interface Pending {
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Waiter {
  send: () => void;
  fail: (e: Error) => void;
}

// Errors of a rejoin that say "try again later", not "refused": the room is kept.
const TRANSIENT = ["rate_limited", "internal", "disconnected", "timeout"];

/**
 * A client of an rthub hub (protocol rthub.v1, docs/protocol.md): it
 * connects with the token in the subprotocol, reconnects with backoff after
 * the close codes that allow it, rejoins its rooms and resumes them where it
 * stopped (dropping duplicates, reporting what cannot be replayed with
 * onReset), refreshes its token on the server's "expiring" warning, pings
 * when quiet and reports "stale" when the server goes silent, and stops for
 * good after 4100–4199 (onAuthError).
 *
 * The type parameter is the contract (see {@link ContractShape}): with the
 * generated `Contract`, on(), emit(), join() and the rest are checked at
 * compile time; without it, anything goes.
 *
 * ```ts
 * const hub = new RthubClient<Contract>("/ws", { token: ({ reason }) => fetchToken(reason) });
 * hub.on("sensor:data", (r, { room }) => draw(room, r.values));
 * hub.connect();
 * await hub.join("device:7");
 * ```
 */
export class RthubClient<C extends ContractShape = AnyContract> {
  /** The hub's URL; from connect() on, its ws:// or wss:// form (relative URLs resolved against the page). */
  url: string;
  /** The current state (see {@link ConnState}). */
  state: ConnState = "idle";
  /** The rooms the client joined itself: rejoined after every reconnection until leave(). */
  readonly rooms: Set<string>;
  /** The rooms the server joined by itself (welcome, "joined" pushes). */
  serverRooms: Set<string> = new Set();
  /** The latest welcome; null while not connected. */
  welcome: Welcome | null = null;
  /** Date.now() of the latest message from the server. */
  lastHeard = 0;
  /** Reconnection attempts since the last welcome. */
  attempt = 0;
  /** Date.now() of the next attempt while reconnecting. */
  nextRetryAt = 0;
  /** The latest close code. */
  closeCode = 0;
  /** The latest close frame's reason. */
  closeReason = "";
  /** Why the connection was lost or the client stopped; null when live. */
  error: Error | null = null;
  /** The outbox's counters (see {@link OutboxStats}). */
  readonly outbox: OutboxStats = { pending: 0, sent: 0, retries: 0, expired: 0 };

  private readonly opts: ClientOptions<C>;
  private readonly tokenFn: TokenFn;
  private readonly backoff: BackoffOptions;
  private WS!: WebSocketCtor;
  private readonly commandTimeout: number;
  private readonly connectTimeout: number;
  private readonly maxPending: number;
  private readonly maxListeners: number;
  /** @internal Where errors the client can only report go (opts.logger). */
  readonly log: Pick<Console, "warn" | "error">;
  private viewingTarget = "";
  private readonly pos = new Map<string, StreamPosition>();
  private readonly handlers = new Map<string, Set<EventHandler<any>>>();
  private readonly stateFns = new Set<(s: ConnState, info: StateInfo) => void>();
  private readonly connFns = new Set<(w: Welcome) => void>();
  private readonly resetFns = new Set<(room: string) => void>();
  private readonly snapFns = new Set<(s: Snapshot) => void>();
  private readonly gapFns = new Set<(room: string) => void>();
  private readonly expFns = new Set<(info: ExpiredInfo) => void>();
  /** Own rooms joined with state. */
  private readonly stateRooms = new Set<string>();
  /** Events held per room while a join with state is pending. */
  private readonly held = new Map<string, ServerMessage[]>();
  private readonly heldOver = new Set<string>();
  private readonly authFns = new Set<(info: AuthErrorInfo) => void>();
  private readonly pending = new Map<number, Pending>();
  private waiters: Waiter[] = [];
  private nextId = 1;
  private ws: WebSocketLike | null = null;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private tick: ReturnType<typeof setInterval> | undefined;
  private lastPing = 0;
  private drop: (() => void) | null = null;

  /**
   * @param url ws:// or wss:// URL of the hub; in a page, relative URLs
   *   ("/ws") and http(s):// URLs work too.
   * @param opts the token and the rest (see {@link ClientOptions}).
   */
  constructor(url: string, opts: ClientOptions<C>) {
    const t = opts && opts.token;
    if (typeof t !== "function" && typeof t !== "string") throw new TypeError("opts.token must be a function or a string");
    this.url = url;
    this.opts = opts;
    this.tokenFn = typeof t === "string" ? () => t : t;
    this.backoff = { min: 1000, max: 30000, factor: 2, jitter: 0.2, ...opts.backoff };
    this.commandTimeout = opts.commandTimeout ?? 10000;
    this.connectTimeout = opts.connectTimeout ?? 10000;
    this.maxPending = opts.maxPending ?? 1000;
    this.maxListeners = opts.maxListeners ?? 1000;
    this.log = opts.logger || console;
    this.rooms = new Set();
    for (const r of opts.rooms || []) {
      const room = typeof r === "string" ? r : r.room;
      this.rooms.add(room);
      if (typeof r !== "string" && r.state) this.stateRooms.add(room);
    }
    if (opts.onAuthError) this.authFns.add(opts.onAuthError);
  }

  /**
   * Starts connecting (once; later calls do nothing). Constructing a client
   * touches neither the network nor the page (it can be done while
   * rendering on a server); connect() needs a WebSocket and, for a relative
   * URL, a page: it throws a TypeError without them.
   */
  connect(): void {
    if (this.state !== "idle") return;
    const WS = this.opts.WebSocket || (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (!WS) throw new TypeError("no WebSocket: pass opts.WebSocket (in Node 20: the ws package, or run with --experimental-websocket)");
    this.WS = WS;
    const base = (globalThis as { location?: { href: string } }).location?.href;
    this.url = new URL(this.url, base).href.replace(/^http/, "ws");
    this.setState("connecting");
    void this.open("connect");
    const o = this.opts;
    const shortest = Math.min(o.heartbeat ?? 4000, o.staleAfter ?? 4000, o.deadAfter ?? 4000);
    this.tick = setInterval(() => this.checkLiveness(), Math.max(25, Math.min(1000, shortest / 4)));
    (this.tick as { unref?: () => void }).unref?.(); // in Node, do not keep the process alive
  }

  /** Stops for good: closes the connection (1000), fails pending commands with "closed", no reconnection. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.tick);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onerror = ws.onmessage = ws.onopen = null;
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    this.failAll(new RthubError("closed", "client closed"));
    this.setState("closed");
  }

  /**
   * Calls fn(data, meta) for each event named event; returns the function
   * that unsubscribes. With a contract, event must be one of its events and
   * data has that event's payload type.
   */
  on<K extends EventName<C>>(event: K, fn: (data: C["events"][K], meta: EventMeta) => void): () => void {
    return this.listen(event, fn);
  }

  /** Calls fn(data, meta) for every event, whatever its name; returns the function that unsubscribes. */
  onAny(fn: (data: unknown, meta: EventMeta) => void): () => void {
    return this.listen("*", fn);
  }

  /** Calls fn(state, info) on every state change, and once now; returns the function that unsubscribes. */
  onState(fn: (state: ConnState, info: StateInfo) => void): () => void {
    this.add(this.stateFns, fn);
    fn(this.state, this.info());
    return () => void this.stateFns.delete(fn);
  }

  /**
   * Calls fn(room) when events of room were missed and cannot be replayed
   * (a reset, or recovered:false after a resume: the server's history was
   * exceeded or lost): reload that room's state. Otherwise a reconnection
   * resumes every room exactly where it stopped.
   */
  onReset(fn: (room: string) => void): () => void {
    this.add(this.resetFns, fn);
    return () => void this.resetFns.delete(fn);
  }

  /**
   * Calls fn(snapshot) for every state snapshot of a room joined with
   * state (the join's, and each one asked for again), before any later
   * event of the room: replace the room's view with it.
   */
  onSnapshot(fn: (snapshot: Snapshot) => void): () => void {
    this.add(this.snapFns, fn);
    return () => void this.snapFns.delete(fn);
  }

  /**
   * Calls fn(room) when the server dropped events of room for this
   * connection rather than close it (a "gap": the room's overflow policy).
   * A room joined with state gets a new snapshot next.
   */
  onGap(fn: (room: string) => void): () => void {
    this.add(this.gapFns, fn);
    return () => void this.gapFns.delete(fn);
  }

  /**
   * Calls fn(info) for each emit or call of the outbox whose TTL passed
   * before the server answered it (its promise rejects with "expired").
   */
  onExpired(fn: (info: ExpiredInfo) => void): () => void {
    this.add(this.expFns, fn);
    return () => void this.expFns.delete(fn);
  }

  /** Calls fn(welcome) after every (re)connection, once rooms are rejoined: reload page state here. */
  onConnected(fn: (welcome: Welcome) => void): () => void {
    this.add(this.connFns, fn);
    return () => void this.connFns.delete(fn);
  }

  /**
   * Calls fn(info) when the client stops because of who it is: a close
   * 4100–4199 (token refused, user disconnected by the server, token
   * revoked: 4102, info.revoked) or a token function that threw an error with `fatal` set. The
   * page should end its session (sign in again).
   */
  onAuthError(fn: (info: AuthErrorInfo) => void): () => void {
    this.add(this.authFns, fn);
    return () => void this.authFns.delete(fn);
  }

  /**
   * Sends a command (protocol §2.2) and resolves with its reply's data
   * (null when none); rejects with an {@link RthubError}. While not
   * connected, the command waits for the connection (up to timeout ms,
   * default commandTimeout). Aborting signal rejects with "canceled" (and
   * cancels a call on the server).
   */
  command<T = unknown>(op: string, fields: Record<string, unknown> = {}, timeout = this.commandTimeout, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((res, rej) => {
      if (this.state === "closed") return rej(new RthubError("closed", "client closed"));
      if (this.pending.size + this.waiters.length >= this.maxPending) {
        return rej(new RthubError("overloaded", `${op}: ${this.maxPending} commands pending`));
      }
      const id = this.nextId++;
      const abort = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        if (this.pending.delete(id) && op == "call" && this.isOpen()) this.sendTo(this.ws!, 0, { op: "cancel", call: id });
        rej(new RthubError("canceled", `${op}: canceled`));
      };
      const done = () => signal?.removeEventListener("abort", abort);
      const resolve = (v: T) => (done(), res(v));
      const reject = (e: Error) => (done(), rej(e));
      const waiter: Waiter = {
        send: () => {
          this.pending.set(id, { resolve, reject, timer });
          this.sendTo(this.ws!, id, { id, op, ...fields });
        },
        fail: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new RthubError("timeout", `${op}: no reply within ${timeout} ms`));
      }, timeout);
      if (signal?.aborted) return abort();
      signal?.addEventListener("abort", abort);
      if (this.isOpen()) waiter.send();
      else this.waiters.push(waiter);
    });
  }

  /**
   * Calls an RPC (docs/rpc.md) and resolves with its result; rejects with
   * an {@link RthubError}: the server's code ("forbidden", "unknown_rpc",
   * "bad_payload", "timeout", or the handler's own), "canceled" (opts.signal),
   * "expired" (unanswered past outboxTTL), "outbox_full". The call waits
   * in the outbox: sent again, with the same idempotency key, after a
   * reconnection, so the server runs it once. With a contract, rpc must be
   * one of its calls and data has its request type.
   */
  call<K extends CallName<C>>(rpc: K, data: CallRequest<C, K>, opts: SendOptions = {}): Promise<CallResult<C, K>> {
    return this.keyed("call", { rpc, data }, opts, opts.timeout || 30000);
  }

  // keyed sends a command with an idempotency key through the outbox: again
  // on each connection until answered, for at most wait ms (and outboxTTL).
  private keyed<T>(op: "emit" | "call", fields: Record<string, unknown>, o: SendOptions, wait: number): Promise<T> {
    const ob = this.outbox;
    const size = this.opts.outboxSize || 1000;
    const ttl = this.opts.outboxTTL || 120000;
    if (ob.pending >= size) return Promise.reject(new RthubError("outbox_full", `${op}: ${size} entries wait`));
    const key = o.key || Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => (b + 256).toString(16).slice(1)).join("");
    const end = Date.now() + Math.min(wait, ttl);
    const name = String(fields.rpc || fields.event);
    let attempts = 0;
    const expire = (): Promise<T> => {
      ob.expired++;
      this.fire(this.expFns, { op, name, room: fields.room as string | undefined, key, attempts });
      return Promise.reject(new RthubError("expired", `${op} ${name}: unanswered after ${attempts} attempts (key ${key})`));
    };
    const attempt = (): Promise<T> => {
      const left = end - Date.now();
      if (left <= 0) return wait > ttl || op == "emit" ? expire() : Promise.reject(new RthubError("timeout", `${op} ${name}`));
      ob.sent++;
      if (attempts++) ob.retries++;
      // A timeout is this attempt's own deadline unless time is left: the
      // timer and Date.now() drift apart by a ms or two, and an attempt with
      // nothing left would only be sent to expire.
      return this.command<T>(op, { ...fields, idem: key, ...(op == "call" && { timeout: left }) }, left, o.signal).catch((e: RthubError) =>
        e.code == "disconnected" || (e.code == "timeout" && end - Date.now() > 20) ? attempt() : e.code == "timeout" && (wait > ttl || op == "emit") ? expire() : Promise.reject(e),
      );
    };
    ob.pending++;
    return attempt().finally(() => ob.pending--);
  }

  /**
   * Joins a room (resuming it where this client stopped, if it was in it);
   * it is rejoined after every reconnection until leave(). Rejects with an
   * RthubError ("forbidden", "bad_room", "too_many_rooms", ...).
   */
  async join(room: Room<C>, opts: JoinOptions = {}): Promise<JoinReply> {
    if (!opts.state) {
      const since = this.pos.get(room);
      const data = await this.command<JoinReply>("join", since ? { room, since } : { room });
      this.rooms.add(room);
      this.stateRooms.delete(room);
      this.joinedAt(room, data);
      return data;
    }
    const p = this.joinState(room, (f) => this.command<RawJoin>("join", f));
    this.rooms.add(room);
    this.stateRooms.add(room);
    return p;
  }

  // joinState sends a join with state (send does it, since when resuming):
  // the room's events are held until the reply, which applies the snapshot
  // (onSnapshot) and then releases them.
  private joinState(room: string, send: (f: Record<string, unknown>) => Promise<RawJoin>, since?: StreamPosition): Promise<JoinReply> {
    this.held.set(room, []);
    return send(since ? { room, state: true, since } : { room, state: true }).then(
      (d) => {
        const held = this.held.get(room) || [];
        this.held.delete(room);
        const { state, ...reply } = d || ({ room } as RawJoin);
        if (state) {
          const position = { offset: reply.offset || 0, epoch: reply.epoch || "" };
          this.pos.set(room, position);
          reply.snapshot = { room, position, events: state.map((m) => ({ data: m.data, meta: this.meta(m) })) };
          this.fire(this.snapFns, reply.snapshot);
        } else this.joinedAt(room, reply);
        for (const m of held) this.dispatch(m);
        if (this.heldOver.delete(room)) this.lost(room);
        return reply;
      },
      (e) => {
        this.held.delete(room);
        throw e;
      },
    );
  }

  // lost asks again for the state of a room joined with state (not when a
  // join with state is pending already).
  private lost(room: string): void {
    if (this.stateRooms.has(room) && !this.held.has(room))
      this.joinState(room, (f) => this.command<RawJoin>("join", f)).catch((e: Error) => this.log.warn(`rthub: state of ${room}: ${e.message}`));
  }

  /** Leaves a room (and stops rejoining it). */
  async leave(room: Room<C>): Promise<void> {
    this.rooms.delete(room);
    this.stateRooms.delete(room);
    this.pos.delete(room);
    await this.command("leave", { room });
  }

  /**
   * Emits an event to a room; resolves with the reply's data (what the
   * server's handler returned, often null) or rejects with an RthubError
   * ("forbidden", "bad_payload", "unknown_event", ...). With opts (even
   * `{}`), the emit carries an idempotency key and waits in the outbox: it
   * is sent again after a reconnection until the server answers, which runs
   * it once ("expired" past outboxTTL, "outbox_full" when full).
   */
  emit<K extends EmitName<C>>(event: K, room: Room<C>, data: C["emits"][K], opts?: SendOptions): Promise<unknown> {
    return opts ? this.keyed("emit", { event, room, data }, opts, Infinity) : this.command("emit", { event, room, data });
  }

  /** Application-level ping: resolves when the server answers. */
  ping(): Promise<void> {
    return this.command<void>("ping");
  }

  /** Gets a fresh token (reason "refresh" by default) and sends it: the server moves the expiry and re-evaluates rooms. */
  async refresh(reason: TokenReason = "refresh"): Promise<{ expires: number }> {
    const token = await this.tokenFn({ reason });
    return this.command("refresh", { token });
  }

  /** Who is in a room with presence (one snapshot; see presenceRoom for a live list). */
  presence(room: Room<C>): Promise<PresenceSnapshot> {
    return this.command("presence", { room });
  }

  /** Declares what this connection is viewing ("" clears); restored after reconnection. */
  async viewing(target: string): Promise<void> {
    this.viewingTarget = target || "";
    if (!this.isOpen()) return; // sent after the next connection
    await this.command("viewing", { target: this.viewingTarget });
  }

  /** A live presence list of room (see {@link PresenceRoom}); close() it when done. */
  presenceRoom(room: Room<C>): PresenceRoom {
    return new PresenceRoom(this as unknown as RthubClient<AnyContract>, room);
  }

  /** The stream position of the last event seen in room (sent back to resume), if any. */
  position(room: string): StreamPosition | undefined {
    const p = this.pos.get(room);
    return p && { ...p };
  }

  // --- internals ---

  /** @internal Subscribes to an event by name, whatever the contract (PresenceRoom's events). */
  listen(event: string, fn: EventHandler<any>): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    this.add(set, fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.handlers.get(event) === set) this.handlers.delete(event);
    };
  }

  private add<F>(set: Set<F>, fn: F): void {
    if (typeof fn !== "function") throw new TypeError("not a function");
    if (set.size >= this.maxListeners) throw new RangeError(`rthub: more than ${this.maxListeners} listeners`);
    set.add(fn);
  }

  private info(): StateInfo {
    return {
      attempt: this.attempt,
      nextRetryAt: this.nextRetryAt,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      error: this.error,
      lastHeard: this.lastHeard,
      user: this.welcome?.user,
    };
  }

  private fire<A extends unknown[]>(fns: Iterable<(...a: A) => void>, ...args: A): void {
    for (const fn of [...fns]) {
      try {
        fn(...args);
      } catch (e) {
        this.log.error(e);
      }
    }
  }

  private setState(s: ConnState, force = false): void {
    if (this.state === s && !force) return;
    this.state = s;
    this.fire(this.stateFns, s, this.info());
  }

  private isOpen(): boolean {
    return !!this.ws && this.ws.readyState === 1 && !!this.welcome && (this.state === "live" || this.state === "stale");
  }

  private heartbeat(): number {
    return this.opts.heartbeat || (this.welcome?.ping || 25) * 1000;
  }

  private async open(reason: TokenReason): Promise<void> {
    if (this.stopped) return;
    let token: string;
    try {
      token = await this.tokenFn({ reason });
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      if ((err as { fatal?: boolean }).fatal) return this.stop(0, err, true);
      this.error = err;
      return this.retry();
    }
    if (this.stopped) return;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.sinceURL(), [PROTOCOL, BEARER + token]);
    } catch (e) {
      this.error = e instanceof Error ? e : new Error(String(e));
      return this.retry();
    }
    this.ws = ws;
    let opened = false;
    let welcomed = false;
    ws.onopen = () => {
      opened = true;
      this.lastHeard = Date.now();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let m: ServerMessage;
      try {
        m = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (!m || typeof m !== "object") return;
      if (m.type === "welcome") {
        welcomed = true;
        clearTimeout(handshake);
        void this.onWelcome(m as unknown as Welcome);
      } else this.dispatch(m);
    };
    const onclose = (ev: { code: number; reason: string }) => {
      clearTimeout(handshake);
      if (this.ws !== ws) return;
      this.ws = null;
      this.drop = null;
      this.welcome = null;
      this.closeCode = ev.code;
      this.closeReason = ev.reason || "";
      this.failAll(new RthubError("disconnected", `connection closed (${ev.code})`), false);
      if (this.stopped) return;
      if (opened && !welcomed && ev.code === 4002) return this.retry("expired"); // token refused in-band (protocol §1)
      if (isAuthClose(ev.code)) {
        const what = welcomed ? "disconnected by the server" : "token refused";
        return this.stop(ev.code, new Error(`${what}: ${ev.reason || ev.code}`), true);
      }
      if (!opened || !welcomed) {
        // The handshake failed: a refused token looks the same as a dead server.
        this.error = new Error(`connection failed (${ev.code})`);
        return this.retry("handshake-failed");
      }
      if (!shouldReconnect(ev.code)) return this.stop(ev.code, new Error(`closed by the server: ${ev.code} ${ev.reason}`), false);
      this.error = new Error(`connection lost: ${ev.code} ${ev.reason}`);
      this.retry(ev.code === 4002 ? "expired" : "reconnect");
    };
    ws.onclose = onclose;
    // Drops a connection that went silent, as if the network had.
    const drop = (reason: string) => {
      // Detached first: closing a socket still connecting fires an error
      // (in Node at once, inside close()), which must not drop it again.
      ws.onclose = ws.onerror = ws.onmessage = ws.onopen = null;
      try {
        ws.close();
      } catch {
        // already closing
      }
      onclose({ code: 1006, reason });
    };
    this.drop = () => drop("no answer from the server");
    // A handshake that never ends (a black-holed address) is a failed one.
    const handshake = setTimeout(() => {
      if (!welcomed && this.ws === ws) drop("handshake timeout");
    }, this.connectTimeout);
    // Browsers follow an error with a close event, but Node 20's WebSocket
    // fires none after a handshake refused with an HTTP status: a failed
    // handshake is handled on the error, as the 1006 a browser would report.
    ws.onerror = () => {
      if (!opened) drop("");
    };
  }

  private async onWelcome(m: Welcome): Promise<void> {
    const ws = this.ws!;
    this.welcome = m;
    this.serverRooms = new Set(m.rooms || []);
    this.error = null;
    this.attempt = 0; // the backoff starts again from its minimum
    const before = new Map(this.pos);
    const resumed = new Set<string>();
    for (const [room, st] of Object.entries(m.streams || {})) {
      if (st.recovered) resumed.add(room);
      this.joinedAt(room, st);
    }
    // Rejoin our own rooms, then restore viewing, before calling it live.
    const sendRaw = <T>(op: string, fields: Record<string, unknown>) =>
      new Promise<T>((resolve, reject) => {
        const id = this.nextId++;
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new RthubError("timeout", op));
        }, this.commandTimeout);
        this.pending.set(id, { resolve, reject, timer });
        this.sendTo(ws, id, { id, op, ...fields });
      });
    // A room joined with state is asked for it even when the server joined
    // it by itself, unless the welcome resumed it (or its reset asked).
    const auto = this.serverRooms;
    const joins = [...this.rooms]
      .filter((r) => (this.stateRooms.has(r) ? !this.held.has(r) && !resumed.has(r) : !auto.has(r)))
      .map((room) => {
        const since = this.pos.get(room);
        return (
          this.stateRooms.has(room)
            ? this.joinState(room, (f) => sendRaw<RawJoin>("join", f), auto.has(room) ? undefined : before.get(room))
            : sendRaw<JoinReply>("join", since ? { room, since } : { room }).then((d) => this.joinedAt(room, d))
        )
          .catch((e: Error) => {
            const code = e instanceof RthubError ? e.code : "internal";
            if (!TRANSIENT.includes(code)) this.rooms.delete(room); // refused now: dropped, as the Go client does
            this.log.warn(`rthub: rejoin ${room}: ${e.message}`);
          });
      });
    await Promise.all(joins);
    if (this.viewingTarget) await sendRaw("viewing", { target: this.viewingTarget }).catch(() => {});
    if (this.ws !== ws || this.stopped) return;
    this.setState("live");
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.send();
    this.fire(this.connFns, m);
  }

  private dispatch(m: ServerMessage): void {
    switch (m.type) {
      case "event": {
        const room = m.room || "";
        const held = this.held.get(room);
        if (held) {
          // A join with state is pending; past 10000 held events, the state is asked again after it.
          if (held.length < 10000) held.push(m);
          else this.heldOver.add(room);
          return;
        }
        if (m.offset) {
          // Resume bookkeeping: drop what was seen (a replay overlapping live events).
          const p = this.pos.get(room);
          if (p && p.epoch === m.epoch && m.offset <= p.offset) return;
          this.pos.set(room, { offset: m.offset, epoch: m.epoch || "" });
        }
        const meta = this.meta(m);
        const fns = this.handlers.get(meta.event);
        if (fns && meta.event !== "*") this.fire(fns, m.data, meta);
        const any = this.handlers.get("*");
        if (any) this.fire(any, m.data, meta);
        return;
      }
      case "reply": {
        const p = this.pending.get(m.id!);
        if (!p) return;
        this.pending.delete(m.id!);
        clearTimeout(p.timer);
        if (m.error) p.reject(new RthubError(m.error.code, m.error.message));
        else p.resolve(m.data === undefined ? null : m.data);
        return;
      }
      case "joined":
        if (m.room) this.serverRooms.add(m.room);
        return;
      case "left":
        if (!m.room) return;
        this.serverRooms.delete(m.room);
        this.rooms.delete(m.room);
        this.pos.delete(m.room);
        return;
      case "reset":
        if (!m.room) return;
        this.pos.set(m.room, { offset: m.offset || 0, epoch: m.epoch || "" });
        this.fire(this.resetFns, m.room);
        this.lost(m.room);
        return;
      case "gap":
        if (!m.room) return;
        this.fire(this.gapFns, m.room);
        this.lost(m.room);
        return;
      case "expiring":
        this.refresh("expiring").catch((e: Error) => this.log.warn(`rthub: token refresh failed: ${e.message}`));
        return;
    }
  }

  private meta(m: ServerMessage): EventMeta {
    const meta: EventMeta = { event: m.event || "", room: m.room || "" };
    if (m.offset !== undefined) meta.offset = m.offset;
    if (m.epoch !== undefined) meta.epoch = m.epoch;
    if (m.cid !== undefined) meta.cid = m.cid;
    return meta;
  }

  // sendTo sends command id on ws. Data JSON cannot encode fails it with
  // "bad_request"; a socket that can no longer send, with "disconnected"
  // (its close event follows).
  private sendTo(ws: WebSocketLike, id: number, cmd: Record<string, unknown>): void {
    const fail = (code: string, e: unknown) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new RthubError(code, `${cmd.op}: ${(e as Error).message}`));
    };
    let text: string;
    try {
      text = JSON.stringify(cmd);
    } catch (e) {
      return fail("bad_request", e);
    }
    try {
      ws.send(text);
    } catch (e) {
      fail("disconnected", e);
    }
  }

  // joinedAt records where a join (or the welcome) left us in a room's
  // stream, and reports a resume the server could not honour.
  private joinedAt(room: string, st: JoinReply | (StreamPosition & { recovered?: boolean }) | null): void {
    if (!st || !st.epoch) return;
    const p = this.pos.get(room);
    if (!p || st.recovered !== true || p.epoch !== st.epoch) this.pos.set(room, { offset: st.offset || 0, epoch: st.epoch });
    if (st.recovered === false) {
      this.fire(this.resetFns, room);
      this.lost(room);
    }
  }

  // sinceURL is the URL with the positions of our rooms, for the server to
  // resume the rooms it joins by itself (protocol §5).
  private sinceURL(): string {
    const rooms = new Set([...this.rooms, ...this.serverRooms]);
    const since: Record<string, StreamPosition> = {};
    let n = 0;
    for (const [room, p] of this.pos) {
      if (rooms.has(room)) {
        since[room] = p;
        n++;
      } else this.pos.delete(room); // not ours any more: bounded by our rooms
    }
    if (n === 0) return this.url;
    const json = JSON.stringify(since);
    const bin = Array.from(new TextEncoder().encode(json), (b) => String.fromCharCode(b)).join("");
    const b64 = btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return this.url + (this.url.includes("?") ? "&" : "?") + "since=" + b64;
  }

  // failAll rejects the pending commands (and, when the client stops, those
  // waiting for a connection).
  private failAll(err: Error, waiting = true): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
    if (!waiting) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.fail(err);
  }

  private retry(reason: TokenReason = "reconnect"): void {
    if (this.stopped) return;
    const d = backoffDelay(this.attempt, this.backoff);
    this.attempt++;
    this.nextRetryAt = Date.now() + d;
    this.setState("reconnecting", true); // same state, new countdown: tell the listeners anyway
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.open(reason), d);
  }

  private stop(code: number, err: Error, auth: boolean): void {
    this.stopped = true;
    if (code !== this.closeCode) this.closeReason = ""; // not stopped by this close (a fatal token error)
    this.closeCode = code;
    this.error = err;
    clearTimeout(this.timer);
    clearInterval(this.tick);
    this.failAll(new RthubError("closed", err.message));
    this.setState("closed");
    if (auth) this.fire(this.authFns, { code, reason: this.closeReason, revoked: code === 4102, error: err });
  }

  // Ping when quiet, "stale" when silent too long, drop the connection when
  // silent much too long (a half-open TCP connection never closes by itself).
  private checkLiveness(): void {
    if (!this.ws || !this.welcome) return;
    const hb = this.heartbeat();
    const now = Date.now();
    const quiet = now - this.lastHeard;
    const staleAfter = this.opts.staleAfter || hb + 5000;
    const deadAfter = this.opts.deadAfter || 2 * hb + 5000;
    if (quiet > deadAfter) {
      this.drop?.();
      return;
    }
    if (this.state === "live" || this.state === "stale") this.setState(quiet > staleAfter ? "stale" : "live");
    if (quiet > hb && now - this.lastPing > hb && this.isOpen()) {
      this.lastPing = now;
      this.ping().catch(() => {});
    }
  }
}
