// The HTTP stream transport and the automatic fallback to it
// (@rthub/client/fallback), against a real hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { newHub, newClient, noHub, until, live, sleep } from "./hub.mjs";

const dist = process.env.RTHUB_JS_DIST || resolve(import.meta.dirname, "../dist");
const { withFallback, httpStream } = await import(pathToFileURL(resolve(dist, "fallback.js")).href);

test("over the HTTP stream: events, commands, refusals, and a resume after a drop", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { WebSocket: httpStream() });
  await live(c);
  assert.equal(c.welcome.user, "alice");
  assert.deepEqual([...c.serverRooms], ["staff"]);
  const j = await c.join("device:1");
  assert.equal(typeof j.epoch, "string");
  await assert.rejects(c.join("admin"), (e) => e.code === "forbidden");

  const got = [];
  c.on("sensor:data", (d) => got.push(d.n));
  await hub.publish("device:1", "sensor:data", { n: 1 });
  await until(() => got.length === 1, "the first event");
  // Many commands at once go in batched POSTs, in order.
  const pings = await Promise.all(Array.from({ length: 50 }, () => c.ping()));
  assert.equal(pings.length, 50);

  // The connection drops; what is published meanwhile is replayed.
  await hub.drop();
  for (let n = 2; n <= 5; n++) await hub.publish("device:1", "sensor:data", { n });
  await until(() => got.length === 5, "the events of the gap");
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.ok(c.reasons.includes("reconnect"));
});

test("a bad token over the HTTP stream stops the client as on a WebSocket", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  let info = null;
  const c = newClient(t, hub, { WebSocket: httpStream(), tokenFor: () => hub.token("alice", { bad: true }), onAuthError: (i) => (info = i) });
  c.connect();
  await until(() => c.state === "closed", "closed");
  assert.equal(info.code, 4100);
});

test("withFallback switches to the HTTP stream after WebSocket failures, and back later", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  let opened = 0;
  let broken = true;
  // A WebSocket that opens and dies at once while broken, as behind a
  // proxy that kills upgraded connections.
  class Flaky extends WebSocket {
    constructor(url, protocols) {
      super(url, { protocols, headers: { origin: "http://127.0.0.1:8080" } });
      this.addEventListener("open", () => {
        opened++;
        if (broken) setTimeout(() => this.close(4000), 20);
      });
    }
  }
  const transports = [];
  const ctor = withFallback({ WebSocket: Flaky, maxFailures: 1, retryWebSocketAfter: 1500, onTransport: (tr) => transports.push(tr) });
  const c = newClient(t, hub, { WebSocket: ctor });
  c.connect();
  await until(() => ctor.transport === "http" && c.state === "live", "live on the HTTP stream");
  assert.deepEqual(transports.slice(0, 3), ["websocket", "websocket", "http"]);
  assert.equal(opened, 2);
  const got = [];
  c.on("sensor:data", (d) => got.push(d.n));
  await hub.publish("staff", "sensor:data", { n: 1 });
  await until(() => got.length === 1, "an event over the HTTP stream");
  // Later, WebSocket is tried again (the next connection after retryWebSocketAfter).
  broken = false;
  await sleep(1600);
  await hub.drop();
  await until(() => ctor.transport === "websocket" && c.state === "live", "back on WebSocket");
  await hub.publish("staff", "sensor:data", { n: 2 });
  await until(() => got.length === 2, "an event over WebSocket");
});

test("withFallback switches when WebSocket never opens", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  // A WebSocket that cannot connect at all (a proxy that refuses upgrades).
  class Refused extends WebSocket {
    constructor(_url, protocols) {
      super("ws://127.0.0.1:9/ws", protocols);
    }
  }
  const ctor = withFallback({ WebSocket: Refused });
  const c = newClient(t, hub, { WebSocket: ctor });
  await live(c);
  assert.equal(ctor.transport, "http");
  assert.deepEqual(c.reasons.slice(0, 3), ["connect", "handshake-failed", "handshake-failed"]);
});

test("a POST refused with 429 is sent again after its Retry-After, the commands in order", { skip: noHub }, async (t) => {
  // One POST every 3 s per user (burst 8): past it, 429 with Retry-After: 3.
  const hub = await newHub(t, { slowPosts: true });
  const posts = []; // each POST of the client: when it was sent and answered, its status and Retry-After
  const recording = async (url, init) => {
    if (init?.method !== "POST") return fetch(url, init);
    const p = { sent: Date.now(), body: init.body };
    const res = await fetch(url, init);
    posts.push({ ...p, answered: Date.now(), status: res.status, retryAfter: res.headers.get("Retry-After") });
    return res;
  };
  const c = newClient(t, hub, { WebSocket: httpStream(recording), commandTimeout: 15000 });
  await live(c);
  // The user's other POSTs (here with no session: 400 once allowed) spend
  // the bucket until the hub refuses one.
  const token = await hub.token("alice");
  let refused = null;
  for (let i = 0; i < 20 && !refused; i++) {
    const r = await fetch(hub.url.replace(/^ws/, "http"), { method: "POST", headers: { Authorization: "Bearer " + token }, body: "{}" });
    if (r.status === 429) refused = r;
  }
  assert.ok(refused, "the hub never refused a POST");
  assert.equal((await refused.json()).error.code, "rate_limited");

  const order = [];
  const joins = [1, 2, 3, 4, 5].map((n) => c.join(`device:${n}`).then(() => order.push(n)));
  await Promise.all(joins);
  assert.deepEqual(order, [1, 2, 3, 4, 5]);
  assert.deepEqual([...c.rooms].filter((r) => r.startsWith("device:")).sort(), ["device:1", "device:2", "device:3", "device:4", "device:5"]);

  // The first POST was refused and sent again after its Retry-After (not
  // the 1 s floor), and nothing was sent in between.
  const first = posts.findIndex((p) => p.status === 429);
  assert.ok(first >= 0, "no POST of the client was refused: " + JSON.stringify(posts));
  const [r, next] = [posts[first], posts[first + 1]];
  const secs = Number(r.retryAfter);
  assert.ok(secs >= 2, `Retry-After ${r.retryAfter}: too short to tell from the 1 s floor`);
  assert.ok(next, "no POST after the 429");
  const waited = next.sent - r.answered;
  assert.ok(waited >= secs * 1000 - 50 && waited < secs * 1000 + 1000, `waited ${waited} ms after Retry-After: ${secs}`);
  assert.equal(next.status, 202);
  // The retry carries the refused commands first, then those sent meanwhile.
  assert.ok(next.body.startsWith(r.body), "the retry does not start with the refused commands");
});
