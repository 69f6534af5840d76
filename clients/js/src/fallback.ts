/**
 * @rthub/client/fallback: the HTTP stream transport (protocol §6) for
 * networks where WebSocket does not get through, and a WebSocket
 * constructor that falls back to it by itself. Pass it as the client's
 * `WebSocket` option:
 *
 * ```ts
 * const hub = new RthubClient("/ws", { token, WebSocket: withFallback() });
 * ```
 *
 * The server must enable the transport (Go: `Options.HTTPStream.Enabled`).
 * It is a separate entry point so that apps that do not need it do not pay
 * for it in the core's size.
 *
 * @packageDocumentation
 */
import type { WebSocketCtor, WebSocketLike } from "./index.js";

/** Which transport a connection uses. */
export type Transport = "websocket" | "http";

/** Options of {@link withFallback}. Durations are in ms. */
export interface FallbackOptions {
  /**
   * How many WebSocket failures in a row (it did not open, or it closed
   * within `shortLived` of opening) are tolerated: one more and the next
   * connections use the HTTP stream. Default 1.
   */
  maxFailures?: number;
  /** A WebSocket closed within this long of opening counts as a failure. Default 5000. */
  shortLived?: number;
  /** How long to stay on the HTTP stream before trying WebSocket again. Default 60000. */
  retryWebSocketAfter?: number;
  /** The WebSocket constructor; default globalThis.WebSocket. */
  WebSocket?: WebSocketCtor;
  /** The fetch function; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Called with the transport of each new connection. */
  onTransport?: (t: Transport) => void;
}

/** A WebSocket constructor that falls back to the HTTP stream (see {@link FallbackOptions}). */
export type FallbackCtor = WebSocketCtor & {
  /** The transport of the latest connection. */
  readonly transport: Transport;
};

/**
 * Returns a WebSocket constructor for {@link RthubClient}'s `WebSocket`
 * option that uses WebSocket while it works and the HTTP stream
 * ({@link httpStream}) after more than `maxFailures` failures in a row,
 * for `retryWebSocketAfter`; then it tries WebSocket again.
 */
export function withFallback(opts: FallbackOptions = {}): FallbackCtor {
  const maxFailures = opts.maxFailures ?? 1;
  const shortLived = opts.shortLived ?? 5000;
  const retryAfter = opts.retryWebSocketAfter ?? 60000;
  let failures = 0;
  let httpUntil = 0;
  let transport: Transport = "websocket";
  const Http = httpStream(opts.fetch);
  function Ctor(url: string, protocols: string[]): WebSocketLike {
    const WS = opts.WebSocket || (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    transport = !WS || Date.now() < httpUntil ? "http" : "websocket";
    opts.onTransport?.(transport);
    if (transport === "http") return new Http(url, protocols);
    let openedAt = 0;
    return new Relay(new WS!(url, protocols), {
      open() {
        openedAt = Date.now();
      },
      close() {
        if (openedAt && Date.now() - openedAt >= shortLived) failures = 0;
        else if (++failures > maxFailures) {
          failures = 0;
          httpUntil = Date.now() + retryAfter;
        }
      },
    });
  }
  Object.defineProperty(Ctor, "transport", { get: () => transport });
  return Ctor as unknown as FallbackCtor;
}

// Relay passes a WebSocket through, telling watch of its open and close.
class Relay implements WebSocketLike {
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: any) => void) | null = null;
  onclose: ((ev: any) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  constructor(
    private readonly ws: WebSocketLike,
    watch: { open: () => void; close: () => void },
  ) {
    let closed = false;
    let opened = false;
    const end = () => {
      if (!closed) watch.close();
      closed = true;
    };
    ws.onopen = (ev) => {
      opened = true;
      watch.open();
      this.onopen?.(ev);
    };
    ws.onmessage = (ev) => this.onmessage?.(ev);
    ws.onerror = (ev) => {
      // An error before opening is a failure: browsers follow it with a
      // close event, Node's WebSocket not always.
      if (!opened || ws.readyState === 3) end();
      this.onerror?.(ev);
    };
    ws.onclose = (ev) => {
      end();
      this.onclose?.(ev);
    };
  }
  get readyState(): number {
    return this.ws.readyState;
  }
  send(data: string): void {
    this.ws.send(data);
  }
  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
}

// retryWait is how long to wait before sending again a POST refused with
// 429, given the wait its Retry-After asks for in ms (seconds or an HTTP
// date; 0 or NaN when there is none): at least 1 s, at most 30 s.
const retryWait = (ms: number) => Math.min(Math.max(ms || 0, 1000), 30000);

// wait resolves after ms, or at once when signal aborts.
function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((r) => {
    const done = () => (clearTimeout(t), signal.removeEventListener("abort", done), r());
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done);
    if (signal.aborted) done();
  });
}

// Commands per POST, and bytes: within the server's defaults
// (HTTPStream.MaxQueuedCommands 64, MaxPostBytes 256 KiB).
const MAX_BATCH = 32;
const MAX_BATCH_BYTES = 64 << 10;

/**
 * Returns a WebSocket constructor speaking the HTTP stream transport
 * (protocol §6): server messages come as Server-Sent Events on a GET read
 * with fetch (so the token goes in the Authorization header, never in the
 * URL), commands go as POSTs, one at a time and in order, batching what
 * was sent meanwhile. A POST refused with 429 is sent again after its
 * `Retry-After` (at least 1 s, at most 30 s), the later commands
 * waiting behind it. A close event, the end of the stream or another failed
 * POST (503 included) closes it as a WebSocket would close (the client then
 * reconnects and resumes as usual).
 */
export function httpStream(fetchFn?: typeof fetch): WebSocketCtor {
  return class HttpStream implements WebSocketLike {
    readyState = 0;
    onopen: ((ev: any) => void) | null = null;
    onmessage: ((ev: any) => void) | null = null;
    onclose: ((ev: any) => void) | null = null;
    onerror: ((ev: any) => void) | null = null;
    private readonly url: string;
    private readonly auth: string;
    private readonly ctl = new AbortController();
    private readonly f: typeof fetch;
    private session = "";
    private queue: string[] = [];
    private posting = false;

    constructor(url: string, protocols: string[]) {
      this.url = url.replace(/^ws/, "http");
      const bearer = protocols.find((p) => p.startsWith("rthub.bearer."));
      this.auth = "Bearer " + (bearer ? bearer.slice(13) : "");
      this.f = fetchFn || globalThis.fetch.bind(globalThis);
      void this.run();
    }

    send(data: string): void {
      if (this.readyState !== 1) throw new Error("not open");
      this.queue.push(data);
      void this.pump();
    }

    close(code = 1000, reason = ""): void {
      this.end(code, reason);
    }

    private end(code: number, reason: string): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.ctl.abort();
      this.onclose?.({ code, reason });
    }

    private async run(): Promise<void> {
      let code = 1006;
      let reason = "";
      try {
        const res = await this.f(this.url, {
          headers: { Accept: "text/event-stream", Authorization: this.auth },
          cache: "no-store",
          signal: this.ctl.signal,
        });
        if (res.status === 401) {
          // As the in-band refusal of a WebSocket (protocol §1): open, then close 4002 or 4100.
          const body = await res.json().catch(() => null);
          this.readyState = 1;
          this.onopen?.({});
          return this.end(body?.error?.code === "token_expired" ? 4002 : 4100, body?.error?.code || "");
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        this.readyState = 1;
        this.onopen?.({});
        const rd = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        let name = "";
        let data: string[] = [];
        for (;;) {
          const { value, done } = await rd.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(buf[i] === "\r" && buf[i + 1] === "\n" ? i + 2 : i + 1);
            if (line === "") {
              const d = data.join("\n");
              if (name === "session") {
                this.session = d;
                void this.pump();
              } else if (name === "close") {
                const m = JSON.parse(d);
                code = m.code;
                reason = m.reason;
              } else if (data.length && this.readyState === 1) this.onmessage?.({ data: d });
              name = "";
              data = [];
            } else if (line.startsWith("data:")) data.push(line.slice(line[5] === " " ? 6 : 5));
            else if (line.startsWith("event:")) name = line.slice(6).trim();
          }
        }
      } catch {
        // network error, or aborted by close()
      }
      this.end(code, reason);
    }

    // pump POSTs the queued commands, one POST at a time so that they
    // reach the server in order.
    private async pump(): Promise<void> {
      if (this.posting || !this.session || !this.queue.length || this.readyState !== 1) return;
      this.posting = true;
      let n = 0;
      let bytes = 0;
      while (n < this.queue.length && n < MAX_BATCH && (n === 0 || bytes + this.queue[n]!.length < MAX_BATCH_BYTES)) bytes += this.queue[n++]!.length + 1;
      const batch = this.queue.splice(0, n);
      try {
        const res = await this.f(this.url, {
          method: "POST",
          headers: { Authorization: this.auth, "Rthub-Session": this.session, "Content-Type": "text/plain" },
          body: batch.join("\n"),
          signal: this.ctl.signal,
        });
        if (res.status === 429) {
          this.queue.unshift(...batch);
          const h = res.headers.get("Retry-After") || "";
          await wait(retryWait(h ? +h * 1000 || Date.parse(h) - Date.now() : 0), this.ctl.signal);
        } else if (!res.ok) throw new Error(`HTTP ${res.status}`);
      } catch {
        // The stream is gone (its node, or the network): reconnect.
        this.end(1006, "command not delivered");
      }
      this.posting = false;
      void this.pump();
    }
  };
}
