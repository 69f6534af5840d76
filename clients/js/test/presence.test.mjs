// Presence rooms with two real clients.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PresenceRoom, RthubError, newHub, newClient, noHub, until, live } from "./hub.mjs";

test("two clients see each other arrive, view and leave", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const alice = newClient(t, hub, { name: "Alice" });
  await live(alice);
  const pr = alice.presenceRoom("staff");
  t.after(() => pr.close());
  assert.ok(pr instanceof PresenceRoom);
  const changes = [];
  pr.onChange((l) => changes.push(l.map((u) => u.user).join()));
  await until(() => pr.list().length === 1, "alice's snapshot");
  assert.deepEqual(pr.list().map((u) => [u.user, u.name, u.conns]), [["alice", "Alice", 1]]);

  const bob = newClient(t, hub, { sub: "bob", name: "Bob" });
  await live(bob);
  await until(() => pr.list().length === 2, "bob arrives");
  assert.deepEqual(pr.list().map((u) => u.name), ["Alice", "Bob"]);
  assert.equal(pr.count, 2);

  await bob.viewing("device:9");
  await until(() => pr.viewersOf("device:9").length === 1, "bob views device:9");
  assert.equal(pr.viewersOf("device:9")[0].user, "bob");

  // Bob sees Alice too, from his own snapshot.
  const bp = bob.presenceRoom("staff");
  t.after(() => bp.close());
  await until(() => bp.list().length === 2, "bob's snapshot");

  bob.close();
  await until(() => pr.list().length === 1, "bob leaves");
  assert.deepEqual(pr.list().map((u) => u.user), ["alice"]);
  assert.ok(changes.includes("alice,bob") && changes.at(-1) === "alice");
});

test("presence of a room without presence is refused; a snapshot lists connections", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  await live(c);
  await c.join("device:1");
  await assert.rejects(c.presence("device:1"), (e) => e instanceof RthubError && e.code === "bad_request");
  const c2 = newClient(t, hub); // alice's second tab
  await live(c2);
  const p = await c.presence("staff");
  assert.equal(p.count, 1);
  assert.equal(p.users[0].conns.length, 2);
});
