// Connecting, events, join/leave, emit and commands, against a real hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RthubClient, RthubError, newHub, newClient, noHub, until, live, sleep } from "./hub.mjs";

test("connects with the token, receives the events of auto-joined and joined rooms, leaves", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  let connected = 0;
  c.onConnected(() => connected++);
  await live(c);
  assert.deepEqual(c.reasons, ["connect"]);
  assert.equal(c.welcome.user, "alice");
  assert.deepEqual([...c.serverRooms], ["staff"]);
  assert.equal(connected, 1);

  const j = await c.join("device:1");
  assert.equal(j.room, "device:1");
  assert.equal(typeof j.epoch, "string");
  assert.ok(c.rooms.has("device:1"));

  const got = [];
  const off = c.on("sensor:data", (d, meta) => got.push({ n: d.n, room: meta.room, event: meta.event, offset: meta.offset, epoch: meta.epoch }));
  const any = [];
  c.onAny((d, meta) => any.push(meta.event));
  await hub.publish("device:1", "sensor:data", { device: "d1", n: 1 });
  await hub.publish("staff", "sensor:data", { device: "d1", n: 2 });
  await until(() => got.length === 2, "two events");
  assert.deepEqual(got.map((g) => [g.n, g.room, g.event]), [[1, "device:1", "sensor:data"], [2, "staff", "sensor:data"]]);
  assert.equal(got[0].offset, j.offset + 1, "offsets follow the join's position");
  assert.equal(got[0].epoch, j.epoch);
  assert.deepEqual(c.position("device:1"), { offset: j.offset + 1, epoch: j.epoch });

  await c.leave("device:1");
  assert.ok(!c.rooms.has("device:1"));
  await hub.publish("device:1", "sensor:data", { device: "d1", n: 3 }); // not ours any more
  await hub.publish("staff", "sensor:data", { device: "d1", n: 4 }); // a marker after it
  await until(() => got.length === 3, "the marker");
  assert.equal(got[2].n, 4);
  assert.ok(any.length >= 3 && any.every((e) => e === "sensor:data" || e.startsWith("user:")));

  off();
  await hub.publish("staff", "sensor:data", { device: "d1", n: 5 });
  await until(() => any.filter((e) => e === "sensor:data").length === 4, "the event after off()");
  assert.equal(got.length, 3, "no call after unsubscribing");
});

test("join refused: forbidden and bad_room, the room is not kept", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  await live(c);
  await assert.rejects(c.join("admin"), (e) => e instanceof RthubError && e.code === "forbidden");
  await assert.rejects(c.join("bad room!"), (e) => e instanceof RthubError && e.code === "bad_room");
  assert.ok(!c.rooms.has("admin"));
  assert.equal(c.state, "live", "an error reply does not close the connection");
});

test("emit: replied, refused by the handler, by the policy, for a bad payload and an unknown event", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  await live(c);
  assert.equal(await c.emit("alert:ack", "staff", { id: 3 }), null);
  const refused = async (p, code) => assert.rejects(p, (e) => e instanceof RthubError && e.code === code, code);
  await refused(c.emit("alert:ack", "staff", { id: -1 }), "bad_request"); // the handler's ReplyError
  await refused(c.emit("alert:ack", "device:1", { id: 3 }), "forbidden"); // no emit rule (and not a member)
  await refused(c.emit("alert:ack", "staff", { id: "three" }), "bad_payload");
  await refused(c.emit("no:such", "staff", {}), "unknown_event");
  await c.ping();
});

test("commands before the connection wait for it; a closed client refuses them; timeouts and limits", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { maxPending: 2 });
  const early = c.ping(); // queued
  await live(c);
  await early;
  // Bounded: at most maxPending commands at once.
  const a = c.ping();
  const b = c.ping();
  await assert.rejects(c.ping(), (e) => e.code === "overloaded");
  await Promise.all([a, b]);

  const idle = newClient(t, hub, { commandTimeout: 100 }); // never connected
  await assert.rejects(idle.ping(), (e) => e.code === "timeout");
  const waiting = idle.ping();
  idle.close();
  await assert.rejects(waiting, (e) => e.code === "closed");
  await assert.rejects(idle.ping(), (e) => e.code === "closed");
});

test("without an Origin (plain Node), a refused token is a failed handshake: handshake-failed, then a fatal error stops", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const reasons = [];
  const auth = [];
  const events = [];
  class RecordingWS extends WebSocket { // Node's own: no Origin header, so the hub answers 401 before the upgrade
    constructor(url, protocols) {
      super(url, protocols);
      events.push("new");
      this.addEventListener("error", () => events.push("error"));
      this.addEventListener("close", (e) => events.push(`close ${e.code}`));
    }
  }
  const c = new RthubClient(hub.url, {
    WebSocket: RecordingWS,
    backoff: { min: 20, max: 40 },
    connectTimeout: 2000,
    token: async ({ reason }) => {
      reasons.push(reason);
      if (reason === "handshake-failed") throw Object.assign(new Error("session ended"), { fatal: true });
      return hub.token("alice", { bad: true });
    },
    onAuthError: (info) => auth.push(info),
  });
  t.after(() => c.close());
  const states = [];
  c.onState((s, i) => states.push(`${s}:${i.closeCode}:${i.error?.message}`));
  c.connect();
  await until(() => c.state === "closed", "closed").catch((e) => assert.fail(`${e.message}: ${states.join(" ")} ${reasons} ${events}`));
  t.diagnostic(`the socket's events: ${events}; closed: ${c.closeReason || c.closeCode}`);
  assert.deepEqual(reasons, ["connect", "handshake-failed"]);
  assert.equal(c.error.message, "session ended");
  assert.equal(auth.length, 1);
  assert.equal(auth[0].code, 0);
  assert.equal(auth[0].error.message, "session ended");
});

test("a plain string token connects", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = new RthubClient(hub.url.replace(/^ws/, "http"), { token: await hub.token("carol"), WebSocket });
  t.after(() => c.close());
  await live(c);
  assert.equal(c.welcome.user, "carol");
  await sleep(0);
});
