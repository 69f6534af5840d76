// Tokens: refresh on the expiring warning, 4002, 41xx stops, against a real hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newHub, newClient, noHub, until, live, sleep } from "./hub.mjs";

// The test hub warns 3 s before exp and closes at exp (no leeway).

test("expiring: the token is refreshed on the same connection, which outlives the first token", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { tokenFor: (reason) => hub.token("alice", { ttl: "4s" }) });
  let connected = 0;
  c.onConnected(() => connected++);
  await live(c);
  const start = Date.now();
  await until(() => c.reasons.includes("expiring"), "a refresh", 4000);
  await sleep(Math.max(0, 5500 - (Date.now() - start))); // past the first token's exp
  assert.equal(c.state, "live");
  assert.equal(connected, 1, "no reconnection");
  assert.equal(c.reasons[0], "connect");
  assert.ok(c.reasons.slice(1).every((r) => r === "expiring"), c.reasons.join());
  await c.ping();
});

test("4002: a token not refreshed closes with 4002, and the client reconnects with a fresh one", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, {
    tokenFor: (reason) => {
      if (reason === "expiring") throw new Error("the login service is down"); // not fatal: the connection ends at exp
      return hub.token("alice", { ttl: "4s" });
    },
  });
  const closes = [];
  c.onState((s, info) => s === "reconnecting" && closes.push(info.closeCode));
  await live(c);
  await until(() => c.reasons.includes("expired"), "reconnect with reason expired", 7000);
  await until(() => c.state === "live", "live again");
  assert.deepEqual(closes, [4002]);
  assert.deepEqual(c.reasons.slice(0, 3), ["connect", "expiring", "expired"]);
});

test("4002 in-band: an expired token is refused after the upgrade, and retried fresh", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { tokenFor: (reason) => hub.token("alice", { ttl: reason === "connect" ? "-10s" : "" }) });
  await live(c);
  assert.deepEqual(c.reasons, ["connect", "expired"]);
});

test("4101: a user disconnected by the server stops, tells onAuthError and the closed state why", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const auth = [];
  const c = newClient(t, hub, { onAuthError: (info) => auth.push(info) });
  let closedInfo;
  c.onState((s, info) => s === "closed" && (closedInfo = info));
  const other = newClient(t, hub, { sub: "bob" });
  await live(c);
  await live(other);
  const pending = c.command("ping").catch((e) => e); // answered or failed, never left hanging
  assert.equal(await hub.disconnect("alice", "signed out by an admin"), "1");
  await until(() => c.state === "closed", "closed");
  const p = await pending;
  assert.ok(p === null || p.code === "disconnected", String(p));
  assert.equal(auth.length, 1);
  assert.equal(auth[0].code, 4101);
  assert.equal(auth[0].reason, "signed out by an admin");
  assert.equal(closedInfo.closeCode, 4101);
  assert.equal(closedInfo.closeReason, "signed out by an admin");
  await sleep(300);
  assert.deepEqual(c.reasons, ["connect"], "no reconnection");
  assert.equal(other.state, "live", "the others stay");
  await assert.rejects(c.ping(), (e) => e.code === "closed");
});

test("4102: a revoked user stops with info.revoked; the old token is refused in band; a later token works", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const auth = [];
  const c = newClient(t, hub, { onAuthError: (info) => auth.push(info) });
  const other = newClient(t, hub, { sub: "bob" });
  await live(c);
  await live(other);
  const old = await hub.token("alice");
  assert.equal(await hub.revoke("alice", "stolen laptop"), "1");
  await until(() => c.state === "closed", "closed");
  assert.deepEqual(auth.map((i) => [i.code, i.reason, i.revoked]), [[4102, "token revoked: stolen laptop", true]]);
  assert.deepEqual(c.reasons, ["connect"], "no reconnection");
  assert.equal(other.state, "live", "the others stay");

  const again = [];
  const c2 = newClient(t, hub, { tokenFor: () => old, onAuthError: (i) => again.push(i) });
  c2.connect();
  await until(() => c2.state === "closed", "closed");
  assert.deepEqual(again.map((i) => [i.code, i.reason, i.revoked]), [[4102, "token_revoked", true]]);

  await sleep(1100); // iat has a resolution of a second: a token of the next second is not revoked
  const c3 = newClient(t, hub);
  await live(c3);
});

test("4100 in-band: a token with a bad signature stops at once with the refusal's code", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const auth = [];
  const c = newClient(t, hub, { tokenFor: () => hub.token("alice", { bad: true }), onAuthError: (i) => auth.push(i) });
  c.connect();
  await until(() => c.state === "closed", "closed");
  assert.deepEqual(c.reasons, ["connect"]);
  assert.equal(c.closeCode, 4100);
  assert.equal(c.closeReason, "token_signature_invalid");
  assert.deepEqual(auth.map((i) => [i.code, i.reason]), [[4100, "token_signature_invalid"]]);
  assert.match(auth[0].error.message, /token refused/);
});
