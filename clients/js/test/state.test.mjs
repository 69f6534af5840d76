// Joins with state against a real hub: the snapshot, then exactly the events
// after it; asked for again after a restart beyond history; rooms option.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newHub, newClient, noHub, until, live } from "./hub.mjs";

// view follows a room joined with state: snapshot, then events, checking offsets.
function viewOf(c, room) {
  const v = { vals: {}, last: -1, snaps: 0, errors: [] };
  c.onSnapshot((s) => {
    if (s.room !== room) return;
    v.snaps++;
    v.vals = {};
    for (const e of s.events) v.vals[e.data.k] = e.data.v;
    v.last = s.position.offset;
  });
  c.on("sensor:data", (d, m) => {
    if (m.room !== room) return;
    if (v.last < 0 || m.offset !== v.last + 1) v.errors.push(`event ${m.offset} after ${v.last}`);
    v.vals[d.k] = d.v;
    v.last = m.offset;
  });
  return v;
}

test("join with state: the snapshot, then exactly the events after it", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  for (const [k, v] of [["a", 1], ["b", 2], ["a", 3]]) await hub.publish("device:s1", "sensor:data", { k, v }, k);
  const c = newClient(t, hub);
  const v = viewOf(c, "device:s1");
  await live(c);
  const r = await c.join("device:s1", { state: true });
  assert.equal(r.snapshot.position.offset, 3);
  assert.deepEqual(r.snapshot.events.map((e) => [e.data.k, e.data.v, e.meta.offset]), [["b", 2, 2], ["a", 3, 3]]);
  assert.equal(v.snaps, 1, "onSnapshot called before join resolves");
  await hub.publish("device:s1", "sensor:data", { k: "c", v: 4 }, "c");
  await until(() => v.last === 4, "the event after the snapshot");
  assert.deepEqual(v.vals, { a: 3, b: 2, c: 4 });
  assert.deepEqual(v.errors, []);
  // A room without state (admin, on the test hub): the join succeeds without a snapshot.
  const admin = newClient(t, hub, { sub: "root", roles: "admin" });
  await live(admin);
  const plain = await admin.join("admin", { state: true });
  assert.equal(plain.snapshot, undefined);
  assert.equal(plain.room, "admin");
});

test("rooms option with state: a restart beyond history brings a new snapshot, not a gap", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  await hub.publish("device:state1", "sensor:data", { k: "a", v: 1 }, "a");
  const c = newClient(t, hub, { rooms: [{ room: "device:state1", state: true }] });
  const v = viewOf(c, "device:state1");
  const resets = [];
  c.onReset((r) => resets.push(r));
  await live(c);
  await until(() => v.snaps === 1, "the first snapshot");
  assert.deepEqual(v.vals, { a: 1 });
  // 8 events while no client is connected: more than the room's history of 5.
  const pubs = Array.from({ length: 8 }, (_, i) => ({ room: "device:state1", event: "sensor:data", data: { k: `k${i % 3}`, v: i + 2 }, key: `k${i % 3}` }));
  await hub.restart({ pubs });
  await until(() => c.reasons.length >= 2 && c.state === "live", "live again");
  await until(() => v.snaps === 2, "a second snapshot");
  await hub.publish("device:state1", "sensor:data", { k: "a", v: 10 }, "a");
  await until(() => v.last === 10, "the event after the second snapshot");
  assert.deepEqual(v.vals, { a: 10, k0: 8, k1: 9, k2: 7 });
  assert.deepEqual(v.errors, []);
});

test("join with state while events are published: no gap, no duplicate", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  const v = viewOf(c, "device:s2");
  await live(c);
  let n = 0;
  const final = {};
  const publishing = (async () => {
    for (; n < 200; ) {
      n++;
      const k = `k${n % 7}`;
      final[k] = n;
      await hub.publish("device:s2", "sensor:data", { k, v: n }, k);
    }
  })();
  await until(() => n >= 50, "some events");
  await c.join("device:s2", { state: true });
  await publishing;
  await until(() => v.last === 200, "every event");
  assert.deepEqual(v.vals, final);
  assert.deepEqual(v.errors, []);
});

test("an auto-joined room in the rooms option with state gets its snapshot on every connection", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  await hub.publish("staff", "sensor:data", { k: "a", v: 1 }, "a");
  const c = newClient(t, hub, { rooms: [{ room: "staff", state: true }] });
  const v = viewOf(c, "staff");
  await live(c);
  await until(() => v.snaps === 1, "a snapshot of the auto-joined room");
  assert.deepEqual(v.vals, { a: 1 });
  await hub.publish("staff", "sensor:data", { k: "b", v: 2 }, "b");
  await until(() => v.last === 2, "the event after it");
  assert.deepEqual(v.errors, []);
});

test("a gap on a conflating room: onGap, then the state again, and the view ends exact", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { rooms: [{ room: "device:lossy", state: true }] });
  const vals = {};
  let snaps = 0;
  const gaps = [];
  c.onSnapshot((s) => {
    if (s.room !== "device:lossy") return;
    snaps++;
    for (const k of Object.keys(vals)) delete vals[k];
    for (const e of s.events) vals[e.data.k] = e.data.v;
  });
  c.on("sensor:data", (d, m) => {
    if (m.room === "device:lossy") vals[d.k] = d.v;
  });
  c.onGap((room) => gaps.push(room));
  await live(c);
  await until(() => snaps === 1, "the first snapshot");
  // The server's writes stall: more events than the send queue holds (1024
  // by default) pile up, and the room conflates them by key.
  assert.ok(Number(await hub.stall()) >= 1);
  const final = {};
  for (let n = 1; n <= 1300; n++) {
    const k = `k${n % 3}`;
    final[k] = n;
    await hub.publish("device:lossy", "sensor:data", { k, v: n }, k);
  }
  await hub.thaw();
  await until(() => gaps.length >= 1, "a gap");
  assert.ok(gaps.every((r) => r === "device:lossy"), `gaps: ${gaps}`);
  await until(() => snaps >= 2, "the state asked again after the gap");
  await until(() => JSON.stringify(vals) === JSON.stringify({ ...vals, ...final }) && Object.keys(vals).length === 3, "the final state");
  assert.deepEqual(vals, final);
  assert.equal(c.state, "live", "a lossy room does not close the connection");
});
