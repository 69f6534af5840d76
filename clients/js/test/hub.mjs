// Shared by the node tests run against real hubs (TestClient in
// client_test.go starts the test server and sets RTHUB_CTL and
// RTHUB_JS_DIST): the package under test, a hub per test from the
// server's control API, and clients of it.
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const dist = process.env.RTHUB_JS_DIST || resolve(import.meta.dirname, "../dist");
/** The package under test, as built. */
export const pkg = await import(pathToFileURL(resolve(dist, "index.js")).href);
export const { RthubClient, RthubError, PresenceRoom, backoffDelay, shouldReconnect } = pkg;

/** The control API of the Go test server; unset when the tests do not run under it. */
export const CTL = process.env.RTHUB_CTL;
/** The reason a hub test skips without the Go test server. */
export const noHub = !CTL
  ? "run by TestClient in clients/js (go test ./clients/js): it starts the hub"
  : !globalThis.WebSocket && "no global WebSocket: run node with --experimental-websocket";

async function ctl(path, body) {
  const r = await fetch(CTL + path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${text}`);
  return text;
}

/**
 * A WebSocket that sends an Origin header, as browsers do: the hub then
 * refuses a bad token in-band (close 4100 or 4002 after the upgrade)
 * rather than with an HTTP 401 a browser cannot read.
 */
export const BrowserWS =
  globalThis.WebSocket &&
  class BrowserWS extends WebSocket {
    constructor(url, protocols) {
      super(url, { protocols, headers: { origin: "http://127.0.0.1:8080" } });
    }
  };

/** A new hub of its own for test t (closed after it); slowPosts: see testHub.slowPosts in testhub_test.go. */
export async function newHub(t, { slowPosts = false } = {}) {
  const { id, url } = JSON.parse(await ctl(slowPosts ? "/hub?slowposts=1" : "/hub"));
  t.after(() => ctl(`/hub/${id}/close`).catch(() => {}));
  const h = `/hub/${id}`;
  return {
    id,
    url,
    /** A JWT for sub: roles (comma-separated), ttl ("4s", "-10s"), bad (another key). */
    token: (sub, { roles = "staff", ttl = "", name = "", bad = false } = {}) =>
      ctl(`${h}/token?` + new URLSearchParams({ sub, roles, ttl, name, bad: bad ? "1" : "" })),
    publish: (room, event, data, key = "") => ctl(`${h}/publish`, { room, event, data, key }),
    disconnect: (sub, reason = "") => ctl(`${h}/disconnect?` + new URLSearchParams({ sub, reason })),
    revoke: (sub, reason = "") => ctl(`${h}/revoke?` + new URLSearchParams({ sub, reason })),
    drop: () => ctl(`${h}/drop`),
    freeze: () => ctl(`${h}/freeze`),
    /** The server's writes to every connection wait until thaw (its queues fill). */
    stall: () => ctl(`${h}/stall`),
    thaw: () => ctl(`${h}/thaw`),
    restart: ({ history = "keep", pubs = [] } = {}) => ctl(`${h}/restart?history=${history}`, pubs),
    /** The handler runs by idempotency key, the cancelled test:hold calls, the hub's replayed/joined counts. */
    runs: async () => JSON.parse(await ctl(`${h}/runs`)),
  };
}

/**
 * A client of hub for test t (closed after it): user sub with roles, fast
 * backoff, its token reasons in c.reasons and its states in c.states.
 * opts.tokenFor(reason) may replace the token function's answer.
 */
export function newClient(t, hub, { sub = "alice", roles = "staff", name = "", tokenFor, ...opts } = {}) {
  const reasons = [];
  const states = [];
  const c = new RthubClient(hub.url, {
    WebSocket: BrowserWS,
    token: async ({ reason }) => {
      reasons.push(reason);
      if (tokenFor) return tokenFor(reason);
      return hub.token(sub, { roles, name });
    },
    backoff: { min: 50, max: 400, jitter: 0.2 },
    commandTimeout: 3000,
    ...opts,
  });
  c.reasons = reasons;
  c.states = states;
  c.onState((s) => states.push(s));
  t.after(() => c.close());
  return c;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until cond() is true, at most ms. */
export async function until(cond, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timeout waiting for " + what);
    await sleep(5);
  }
}

/** Connects c and waits until it is live. */
export async function live(c) {
  c.connect();
  await until(() => c.state === "live", "live");
}
