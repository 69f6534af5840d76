// Unit tests of the client's logic with a fake WebSocket (ported from
// examples/iotserver/e2e/rthub.test.mjs): what a real hub cannot easily
// be made to do (replays overlapping live events, presence events out of
// order, refusals at exact moments).

import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { RthubClient, RthubError, backoffDelay, shouldReconnect } from "./hub.mjs";

class FakeWS {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeWS.all.push(this);
  }
  send(s) {
    this.sent.push(JSON.parse(s));
  }
  close(code = 1000, reason = "") {
    this.drop(code, reason);
  }
  // test side
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  recv(m) {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  drop(code, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  lastSent(op) {
    return [...this.sent].reverse().find((m) => m.op === op);
  }
  reply(op, data, error) {
    const m = this.lastSent(op);
    assert.ok(m, `no ${op} sent`);
    this.recv(error ? { type: "reply", id: m.id, error } : { type: "reply", id: m.id, ok: true, data });
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timeout waiting for " + what);
    await tick(2);
  }
}

const clients = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function newClient(extra = {}) {
  FakeWS.all = [];
  const reasons = [];
  let n = 0;
  const c = new RthubClient("ws://hub.test/ws", {
    WebSocket: FakeWS,
    token: async ({ reason }) => {
      reasons.push(reason);
      return "T" + ++n;
    },
    backoff: { min: 10, max: 40, jitter: 0 },
    commandTimeout: 500,
    ...extra,
  });
  clients.push(c);
  const states = [];
  c.onState((s) => states.push(s));
  return { c, reasons, states };
}

const welcome = (rooms = ["staff"]) => ({ type: "welcome", version: 1, conn: "c1", user: "alice", roles: ["staff"], rooms, expires: 0, ping: 25 });

async function connectLive(c, rooms) {
  c.connect();
  await until(() => FakeWS.all.length === 1, "socket");
  const ws = FakeWS.all[0];
  ws.open();
  ws.recv(welcome(rooms));
  await until(() => c.state === "live", "live");
  return ws;
}

test("backoff: 1, 2, 4, 8, 16, 30 s, jitter within ±20 %", () => {
  const d = [0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, { jitter: 0 }));
  assert.deepEqual(d, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(backoffDelay(0, {}, () => 0), 800);
  assert.equal(backoffDelay(0, {}, () => 1), 1200);
});

test("close codes: reconnect or stop (protocol §3)", () => {
  for (const c of [1001, 1006, 1011, 4000, 4001, 4002, 4003, 4099]) assert.ok(shouldReconnect(c), String(c));
  for (const c of [1000, 1002, 1003, 1007, 1008, 1009, 4100, 4101, 4199]) assert.ok(!shouldReconnect(c), String(c));
});

test("connect: token as subprotocol, own rooms joined before live, commands as promises", async () => {
  const { c, reasons } = newClient({ rooms: ["device:7"] });
  let connected = 0;
  c.onConnected(() => connected++);
  c.connect();
  await until(() => FakeWS.all.length === 1, "socket");
  const ws = FakeWS.all[0];
  assert.deepEqual(ws.protocols, ["rthub.v1", "rthub.bearer.T1"]);
  assert.deepEqual(reasons, ["connect"]);
  ws.open();
  ws.recv(welcome());
  await until(() => ws.lastSent("join"), "join");
  assert.equal(ws.lastSent("join").room, "device:7");
  assert.equal(c.state, "connecting", "not live before the rejoin answered");
  ws.reply("join", { room: "device:7" });
  await until(() => c.state === "live", "live");
  assert.equal(connected, 1);

  const p = c.join("admin");
  await tick();
  ws.reply("join", null, { code: "forbidden", message: "role may not join room \"admin\"" });
  await assert.rejects(p, (e) => e instanceof RthubError && e.code === "forbidden");
  assert.ok(!c.rooms.has("admin"));

  const seen = [];
  c.on("sensor:data", (d, m) => seen.push([m.room, d.v]));
  ws.recv({ type: "event", event: "sensor:data", room: "staff", data: { v: 1 } });
  assert.deepEqual(seen, [["staff", 1]]);
  c.close();
});

test("drain (1001): reconnects with backoff, rejoins rooms and restores viewing", async () => {
  const { c, reasons, states } = newClient();
  const ws = await connectLive(c);
  const j = c.join("device:9");
  await tick();
  ws.reply("join", { room: "device:9" });
  await j;
  const v = c.viewing("device:9");
  await tick();
  ws.reply("viewing", null);
  await v;
  ws.drop(1001, "server shutting down");
  assert.equal(c.state, "reconnecting");
  await until(() => FakeWS.all.length === 2, "second socket");
  assert.equal(reasons.at(-1), "reconnect");
  const ws2 = FakeWS.all[1];
  ws2.open();
  ws2.recv(welcome());
  await until(() => ws2.lastSent("join"), "rejoin");
  assert.equal(ws2.lastSent("join").room, "device:9");
  ws2.reply("join", { room: "device:9" });
  await until(() => ws2.lastSent("viewing"), "viewing restored");
  assert.equal(ws2.lastSent("viewing").target, "device:9");
  ws2.reply("viewing", null);
  await until(() => c.state === "live", "live again");
  assert.deepEqual(states.slice(-3), ["live", "reconnecting", "live"]);
  c.close();
});

test("4002: reconnects with a fresh token; 4101 and 1008 stop", async () => {
  for (const [code, again, reason] of [[4002, true, "expired"], [4101, false], [1008, false]]) {
    const { c, reasons } = newClient();
    const ws = await connectLive(c);
    ws.drop(code);
    await tick(60);
    assert.equal(FakeWS.all.length, again ? 2 : 1, `code ${code}`);
    if (again) assert.equal(reasons.at(-1), reason);
    else assert.equal(c.state, "closed", `code ${code}`);
    c.close();
  }
});

test("failed handshake: token asked with handshake-failed; a fatal token error stops", async () => {
  FakeWS.all = [];
  const reasons = [];
  const c = new RthubClient("ws://hub.test/ws", {
    WebSocket: FakeWS,
    backoff: { min: 10, max: 40, jitter: 0 },
    token: async ({ reason }) => {
      reasons.push(reason);
      if (reason === "handshake-failed") {
        const e = new Error("session ended");
        e.fatal = true;
        throw e;
      }
      return "T";
    },
  });
  c.connect();
  await until(() => FakeWS.all.length === 1, "socket");
  FakeWS.all[0].drop(1006); // refused before open: a browser sees only 1006
  await until(() => c.state === "closed", "closed");
  assert.deepEqual(reasons, ["connect", "handshake-failed"]);
  assert.equal(c.error.message, "session ended");
});

test("expiring: refreshes the token on the same connection", async () => {
  const { c, reasons } = newClient();
  const ws = await connectLive(c);
  ws.recv({ type: "expiring", expires: 123 });
  await until(() => ws.lastSent("refresh"), "refresh");
  assert.equal(reasons.at(-1), "expiring");
  assert.equal(ws.lastSent("refresh").token, "T2");
  ws.reply("refresh", { expires: 456 });
  assert.equal(FakeWS.all.length, 1);
  c.close();
});

test("commands wait for the connection; pending ones fail on a drop", async () => {
  const { c } = newClient();
  const ws = await connectLive(c);
  const pending = c.ping();
  await tick();
  ws.drop(1006);
  await assert.rejects(pending, (e) => e.code === "disconnected");
  const waiting = c.ping(); // sent once live again
  await until(() => FakeWS.all.length === 2, "reconnect");
  const ws2 = FakeWS.all[1];
  ws2.open();
  ws2.recv(welcome());
  await until(() => ws2.lastSent("ping"), "queued ping sent");
  ws2.reply("ping", null);
  await waiting;
  c.close();
});

// presenceWithAlice connects a client and its presenceRoom("staff"), whose
// snapshot holds alice.
async function presenceWithAlice() {
  const { c } = newClient();
  const ws = await connectLive(c);
  const pr = c.presenceRoom("staff");
  await until(() => ws.lastSent("presence"), "presence");
  ws.reply("presence", { room: "staff", count: 1, truncated: false, users: [{ user: "alice", name: "Alice", roles: ["staff"], conns: [{ conn: "c1" }] }] });
  await until(() => pr.list().length === 1, "snapshot");
  return { c, ws, pr };
}

test("presenceRoom: snapshot after connecting, then the room's events", async () => {
  const { c, ws, pr } = await presenceWithAlice();
  ws.recv({ type: "event", event: "user:online", room: "staff", data: { user: "bob", name: "Bob", roles: ["staff"] } });
  ws.recv({ type: "event", event: "user:viewing", room: "staff", data: { user: "bob", conn: "c2", viewing: "device:42" } });
  ws.recv({ type: "event", event: "user:viewing", room: "other", data: { user: "eve", conn: "c3", viewing: "x" } });
  assert.deepEqual(pr.list().map((u) => [u.name, u.viewing]), [["Alice", []], ["Bob", ["device:42"]]]);
  assert.deepEqual(pr.viewersOf("device:42").map((u) => u.user), ["bob"]);
  ws.recv({ type: "event", event: "user:offline", room: "staff", data: { user: "bob" } });
  assert.deepEqual(pr.list().map((u) => u.user), ["alice"]);
  c.close();
});

test("presenceRoom: online/offline out of order across nodes, the later seq wins", async () => {
  const { c, ws, pr } = await presenceWithAlice();
  const ev = (event, user, seq) => ws.recv({ type: "event", event, room: "staff", data: { user, seq } });
  // Bob left on node A (seq 10) and came back on node B (seq 11); B's event arrives first.
  ev("user:online", "bob", 11);
  ev("user:offline", "bob", 10);
  assert.deepEqual(pr.list().map((u) => u.user).sort(), ["alice", "bob"], "the stale offline is ignored");
  // Carol came (20) and left (21); the offline arrives first.
  ev("user:offline", "carol", 21);
  ev("user:online", "carol", 20);
  assert.deepEqual(pr.list().map((u) => u.user).sort(), ["alice", "bob"], "the stale online is ignored");
  // In order, both apply.
  ev("user:offline", "bob", 12);
  assert.deepEqual(pr.list().map((u) => u.user), ["alice"]);
  c.close();
});

test("resume: positions in ?since= and join since, duplicates dropped, reset reported", async () => {
  const { c } = newClient();
  const got = [];
  const resets = [];
  c.on("sensor:data", (d, ev) => got.push(`${ev.room}:${d.n}`));
  c.onReset((room) => resets.push(room));
  const ws = await connectLive(c);
  const j = c.join("device:9");
  await tick();
  ws.reply("join", { room: "device:9", offset: 4, epoch: "e1" });
  await j;
  const ev = (room, n, offset, epoch = "e1") => ({ type: "event", event: "sensor:data", room, data: { n }, offset, epoch });
  ws.recv(ev("device:9", 5, 5));
  ws.recv(ev("staff", 1, 11));
  ws.recv(ev("device:9", 5, 5)); // duplicate: dropped
  ws.drop(1006);
  await until(() => FakeWS.all.length === 2, "second socket");
  const ws2 = FakeWS.all[1];
  const since = JSON.parse(Buffer.from(new URL(ws2.url).searchParams.get("since"), "base64url").toString());
  assert.deepEqual(since, { "device:9": { offset: 5, epoch: "e1" }, staff: { offset: 11, epoch: "e1" } });
  ws2.open();
  ws2.recv({ ...welcome(), streams: { staff: { offset: 12, epoch: "e1", recovered: true } } });
  ws2.recv(ev("staff", 2, 12)); // replayed after the welcome
  await until(() => ws2.lastSent("join"), "rejoin");
  assert.deepEqual(ws2.lastSent("join").since, { offset: 5, epoch: "e1" });
  ws2.recv(ev("device:9", 6, 6)); // replayed before the reply
  ws2.reply("join", { room: "device:9", offset: 6, epoch: "e1", recovered: true });
  await until(() => c.state === "live", "live again");
  ws2.recv(ev("device:9", 6, 6)); // duplicate again
  ws2.recv({ type: "reset", room: "staff", offset: 40, epoch: "e2" });
  ws2.recv(ev("staff", 3, 41, "e2"));
  assert.deepEqual(got, ["device:9:5", "staff:1", "staff:2", "device:9:6", "staff:3"]);
  assert.deepEqual(resets, ["staff"]);
  c.close();
});

test("refused token in-band: 4100 before the welcome stops, 4002 retries with a fresh token", async () => {
  for (const [code, again] of [[4100, false], [4002, true]]) {
    const { c, reasons } = newClient();
    c.connect();
    await until(() => FakeWS.all.length === 1, "socket");
    const ws = FakeWS.all[0];
    ws.open();
    ws.drop(code, code === 4002 ? "token_expired" : "token_signature_invalid");
    if (again) {
      await until(() => FakeWS.all.length === 2, "retry");
      assert.equal(reasons.at(-1), "expired");
    } else {
      await tick(60);
      assert.equal(c.state, "closed");
      assert.equal(FakeWS.all.length, 1);
    }
    c.close();
  }
});

test("41xx stop: the closed state's info has the close code and reason, for the page to end its session", async () => {
  for (const [code, reason, welcomed] of [[4100, "token_signature_invalid", false], [4101, "signed out by an admin", true], [4150, "", true]]) {
    const { c } = newClient();
    const infos = [];
    c.onState((s, info) => s === "closed" && infos.push(info));
    let ws;
    if (welcomed) ws = await connectLive(c);
    else {
      c.connect();
      await until(() => FakeWS.all.length === 1, "socket");
      ws = FakeWS.all[0];
      ws.open();
    }
    ws.drop(code, reason);
    await until(() => infos.length === 1, `closed after ${code}`);
    assert.equal(infos[0].closeCode, code);
    assert.equal(infos[0].closeReason, reason);
    await tick(60);
    assert.equal(FakeWS.all.length, 1, `no reconnection after ${code}`);
    c.close();
  }
  // A fatal token error after a failed attempt: no stale close code or reason.
  FakeWS.all = [];
  const c = new RthubClient("ws://hub.test/ws", {
    WebSocket: FakeWS,
    backoff: { min: 10, max: 40, jitter: 0 },
    token: async ({ reason }) => {
      if (reason !== "handshake-failed") return "T";
      const e = new Error("the server no longer accepts this sign-in");
      e.fatal = true;
      throw e;
    },
  });
  clients.push(c);
  let info;
  c.onState((s, i) => s === "closed" && (info = i));
  c.connect();
  await until(() => FakeWS.all.length === 1, "socket");
  FakeWS.all[0].drop(1006, "gone");
  await until(() => info, "closed");
  assert.equal(info.closeCode, 0);
  assert.equal(info.closeReason, "");
  assert.ok(info.error.fatal);
});

test("bounded: listeners per event and pending commands", async () => {
  const { c } = newClient({ maxListeners: 2, maxPending: 1 });
  c.on("a", () => {});
  c.on("a", () => {});
  assert.throws(() => c.on("a", () => {}), RangeError);
  const off = c.on("b", () => {});
  off();
  const ws = await connectLive(c);
  const p = c.ping();
  await assert.rejects(c.ping(), (e) => e instanceof RthubError && e.code === "overloaded");
  ws.reply("ping", null);
  await p;
  c.close();
});

test("a throwing handler does not stop the others", async () => {
  const errors = [];
  const { c } = newClient({ logger: { warn() {}, error: (e) => errors.push(e) } });
  const ws = await connectLive(c);
  const seen = [];
  c.on("x", () => {
    throw new Error("boom");
  });
  c.on("x", (d) => seen.push(d));
  ws.recv({ type: "event", event: "x", room: "staff", data: 1 });
  assert.deepEqual(seen, [1]);
  assert.equal(errors[0].message, "boom");
  c.close();
});

test("a handshake that never ends fails after connectTimeout (handshake-failed)", async () => {
  const { c, reasons } = newClient({ connectTimeout: 50 });
  c.connect();
  await until(() => FakeWS.all.length === 2, "a second attempt");
  assert.deepEqual(reasons, ["connect", "handshake-failed"]);
  assert.equal(c.closeReason, "handshake timeout");
  const ws = FakeWS.all[1];
  ws.open();
  ws.recv(welcome());
  await until(() => c.state === "live", "live");
  await tick(80);
  assert.equal(FakeWS.all.length, 2, "no timeout once welcomed");
  c.close();
});

test("an error before open (Node: a refused handshake, no close event) fails the attempt once", async () => {
  // Like Node's WebSocket: close() on a socket still connecting fires an error at once.
  class NodeLikeWS extends FakeWS {
    close(code, reason) {
      if (this.readyState === 0) this.onerror?.({ type: "error" });
      super.close(code, reason);
    }
  }
  FakeWS.all = [];
  const reasons = [];
  const c = new RthubClient("ws://hub.test/ws", {
    WebSocket: NodeLikeWS,
    backoff: { min: 10, max: 40, jitter: 0 },
    token: ({ reason }) => (reasons.push(reason), "T"),
  });
  clients.push(c);
  c.connect();
  await until(() => FakeWS.all.length === 1, "socket");
  FakeWS.all[0].onerror({ type: "error" }); // the refusal; no close event follows
  await until(() => FakeWS.all.length === 2, "a second attempt");
  await tick(30);
  assert.deepEqual(reasons, ["connect", "handshake-failed"]);
  assert.equal(c.state, "reconnecting");
  c.close();
});

test("a payload JSON cannot encode fails with bad_request; a socket that cannot send, with disconnected", async () => {
  const { c } = newClient();
  const ws = await connectLive(c);
  const loop = {};
  loop.self = loop;
  await assert.rejects(c.emit("x:y", "staff", loop), (e) => e instanceof RthubError && e.code === "bad_request");
  ws.send = () => {
    throw new Error("socket is closing");
  };
  await assert.rejects(c.ping(), (e) => e instanceof RthubError && e.code === "disconnected");
  assert.equal(c.state, "live", "the close event decides what happens to the connection");
  c.close();
});

test("constructing needs neither a page nor a WebSocket (server rendering); connect() does", () => {
  const c = new RthubClient("/ws", { token: "t" });
  assert.equal(c.state, "idle");
  assert.throws(() => c.connect(), TypeError, "a relative URL without a page");
  assert.equal(c.state, "idle");
  const d = new RthubClient("http://hub.test/ws", { token: "t", WebSocket: FakeWS });
  FakeWS.all = [];
  d.connect();
  assert.equal(d.url, "ws://hub.test/ws");
  d.close();
});
