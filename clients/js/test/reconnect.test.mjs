// Reconnection, resume across restarts, reset, stale detection, against a real hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newHub, newClient, noHub, until, live } from "./hub.mjs";

test("the server drops the connections: reconnects, rejoins its rooms, restores viewing", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  let connected = 0;
  c.onConnected(() => connected++);
  await live(c);
  await c.join("device:2");
  await c.viewing("device:2");
  assert.ok(Number(await hub.drop()) >= 1);
  await until(() => c.state === "reconnecting", "reconnecting");
  await until(() => c.state === "live" && connected === 2, "live again");
  assert.deepEqual(c.reasons, ["connect", "reconnect"]);
  assert.equal(c.closeCode, 1006);
  assert.deepEqual(c.states.slice(-3), ["live", "reconnecting", "live"]);
  assert.ok(c.rooms.has("device:2"));
  const p = await c.presence("staff");
  assert.deepEqual(p.users.map((u) => [u.user, u.conns.map((x) => x.viewing)]), [["alice", ["device:2"]]], "viewing restored");
  const got = [];
  c.on("sensor:data", (d, m) => got.push(m.room));
  await hub.publish("device:2", "sensor:data", { device: "d2", n: 1 });
  await until(() => got.length === 1, "an event of the rejoined room");
});

// events publishes n = from..to to room.
const events = (room, from, to) => Array.from({ length: to - from + 1 }, (_, i) => ({ room, event: "sensor:data", data: { device: room, n: from + i } }));

test("a restart keeping the history: every room resumes with no gap and no duplicate", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  const got = { staff: [], "device:3": [] };
  const offsets = { staff: [], "device:3": [] };
  const resets = [];
  c.on("sensor:data", (d, m) => {
    got[m.room].push(d.n);
    offsets[m.room].push(m.offset);
  });
  c.onReset((room) => resets.push(room));
  await live(c);
  await c.join("device:3");
  for (const p of [...events("staff", 1, 5), ...events("device:3", 1, 5)]) await hub.publish(p.room, p.event, p.data);
  await until(() => got.staff.length === 5 && got["device:3"].length === 5, "the first events");
  // Published while no client can be connected: only a resume brings them.
  await hub.restart({ pubs: [...events("staff", 6, 10), ...events("device:3", 6, 10)] });
  await until(() => c.reasons.length >= 2 && c.state === "live", "live again");
  for (const p of [...events("staff", 11, 15), ...events("device:3", 11, 15)]) await hub.publish(p.room, p.event, p.data);
  await until(() => got.staff.length >= 15 && got["device:3"].length >= 15, "all events");
  const all = Array.from({ length: 15 }, (_, i) => i + 1);
  assert.deepEqual(got.staff, all, "staff (auto-joined: resumed with ?since=)");
  assert.deepEqual(got["device:3"], all, "device:3 (joined: resumed with join since)");
  for (const room of ["staff", "device:3"]) {
    const o = offsets[room];
    assert.ok(o.every((x, i) => i === 0 || x === o[i - 1] + 1), `${room}: consecutive offsets ${o}`);
  }
  assert.deepEqual(resets, []);
  assert.equal(c.closeCode, 1001, "the restart's drain");
});

test("a restart that lost the history: the app is told (recovered:false → onReset) and events go on", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  const got = [];
  const resets = [];
  c.on("sensor:data", (d, m) => got.push(`${m.room}:${d.n}`));
  c.onReset((room) => resets.push(room));
  await live(c);
  await c.join("device:4");
  await hub.publish("device:4", "sensor:data", { n: 1 });
  await hub.publish("staff", "sensor:data", { n: 1 });
  await until(() => got.length === 2, "the first events");
  const before = c.position("device:4");
  await hub.restart({ history: "lose", pubs: events("device:4", 2, 2) }); // a new epoch: n=2 cannot be replayed
  await until(() => resets.length === 2 && c.state === "live", "two resets");
  assert.deepEqual(resets.sort(), ["device:4", "staff"]);
  assert.notEqual(c.position("device:4").epoch, before.epoch, "the new epoch");
  await hub.publish("device:4", "sensor:data", { n: 3 });
  await until(() => got.length === 3, "an event after the reset");
  assert.deepEqual(got, ["device:4:1", "staff:1", "device:4:3"]);
});

test("stale detection: a silent connection goes stale, is dropped and replaced", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { heartbeat: 200, staleAfter: 600, deadAfter: 1500 });
  let silentFor = 0;
  c.onState((s, info) => s === "reconnecting" && (silentFor = Date.now() - info.lastHeard));
  await live(c);
  assert.ok(Number(await hub.freeze()) >= 1); // the server's side goes silent both ways
  await until(() => c.state === "stale", "stale", 3000);
  await until(() => c.state === "reconnecting", "dropped", 3000);
  assert.equal(c.closeCode, 1006);
  assert.equal(c.closeReason, "no answer from the server");
  assert.ok(silentFor >= 1500, `dropped after deadAfter of silence (${silentFor} ms)`);
  await until(() => c.state === "live", "live on a new connection", 3000);
  assert.deepEqual(c.states.slice(-4), ["live", "stale", "reconnecting", "live"]);
  assert.deepEqual(c.reasons, ["connect", "reconnect"]);
  // The new connection is not frozen: its pings are answered, it is not dropped.
  await new Promise((r) => setTimeout(r, 2000));
  assert.deepEqual(c.reasons, ["connect", "reconnect"]);
});
