// Typed RPC, idempotency keys and the outbox, against a real hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newHub, newClient, noHub, live, sleep } from "./hub.mjs";

test("call: results, error codes, cancel reaches the server", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub);
  await live(c);
  assert.deepEqual(await c.call("test:echo", { text: "hi" }), { text: "hi!" });
  await assert.rejects(c.call("test:echo", { text: "" }), { name: "RthubError", code: "empty" });
  await assert.rejects(c.call("test:nope", {}), { code: "unknown_rpc" });
  await assert.rejects(c.call("test:echo", { text: 7 }), { code: "bad_payload" });
  const admin = newClient(t, hub, { sub: "root", roles: "admin" });
  await live(admin);
  await assert.rejects(admin.call("test:echo", { text: "x" }), { code: "forbidden" });

  // Aborting a running call rejects it and cancels the handler's context.
  const ac = new AbortController();
  const p = c.call("test:hold", {}, { signal: ac.signal });
  await sleep(100);
  ac.abort();
  await assert.rejects(p, { code: "canceled" });
  let runs;
  const end = Date.now() + 5000;
  while (Date.now() < end && !((runs = await hub.runs()).canceled >= 1)) await sleep(20);
  assert.equal(runs.canceled, 1, "the server's handler saw the cancel");

  // A deadline: the client's timeout reaches the handler.
  await assert.rejects(c.call("test:hold", {}, { timeout: 200 }), { code: "timeout" });
});

test("outbox: an unanswered call expires and onExpired is told", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { outboxTTL: 300 });
  const expired = [];
  c.onExpired((e) => expired.push(e));
  await live(c);
  await hub.freeze(); // the server hears nothing more from this connection
  await assert.rejects(c.call("test:echo", { text: "x" }, { key: "k-exp" }), { code: "expired" });
  assert.deepEqual(expired, [{ op: "call", name: "test:echo", room: undefined, key: "k-exp", attempts: 1 }]);
  assert.equal(c.outbox.expired, 1);
  assert.equal(c.outbox.pending, 0);
});

test("outbox: outbox_full past outboxSize", { skip: noHub }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { outboxSize: 1 });
  await live(c);
  const ac = new AbortController();
  const p = c.call("test:hold", {}, { signal: ac.signal });
  await assert.rejects(c.emit("flap:emit", "staff", { n: -1 }, {}), { code: "outbox_full" });
  ac.abort();
  await assert.rejects(p, { code: "canceled" });
  await c.emit("flap:emit", "staff", { n: -2 }, {});
});

// The test: 1,000 emits and calls while the connection is cut every
// 200 ms; the handlers see each key exactly once and every caller gets its
// result.
test("flapping: 1,000 emits and calls, the connection cut every 200 ms", { skip: noHub, timeout: 60000 }, async (t) => {
  const hub = await newHub(t);
  const c = newClient(t, hub, { outboxTTL: 60000, commandTimeout: 10000 });
  let reconnects = 0;
  c.onState((s) => s === "reconnecting" && reconnects++);
  await live(c);
  let cuts = 0;
  const cutter = setInterval(() => hub.drop().then(() => cuts++), 200);
  t.after(() => clearInterval(cutter));
  const start = Date.now();
  const ops = [];
  const N = 1000;
  for (let n = 0; n < N; n++) {
    ops.push(
      n % 2 === 0
        ? c.call("flap:call", { n }, { key: `call-${n}` }).then((r) => assert.equal(r, `result ${n}`))
        : c.emit("flap:emit", "staff", { n }, { key: `emit-${n}` }),
    );
    await sleep(3); // paced: the run spans some 15 cuts
  }
  const results = await Promise.allSettled(ops);
  clearInterval(cutter);
  const elapsed = Date.now() - start;
  const failed = results.filter((r) => r.status === "rejected");
  const { runs, replayed, joined } = await hub.runs();
  let twice = 0;
  let never = 0;
  let total = 0;
  for (let n = 0; n < N; n++) {
    const k = n % 2 === 0 ? `call-${n}` : `emit-${n}`;
    const r = runs[k] || 0;
    total += r;
    if (r === 0) never++;
    if (r > 1) twice++;
  }
  console.log(
    `flapping (JS client): ${N / 2} calls + ${N / 2} emits in ${elapsed} ms; cuts ${cuts}, reconnects ${reconnects}; ` +
      `sends ${c.outbox.sent}, retries ${c.outbox.retries}, expired ${c.outbox.expired}; handler runs ${total} ` +
      `(keys run twice ${twice}, never ${never}); answered from memory: ${replayed} replayed + ${joined} joined a running first run; ` +
      `failed callers ${failed.length}`,
  );
  assert.deepEqual(failed.map((f) => String(f.reason)).slice(0, 5), []);
  assert.equal(twice, 0, "no key ran twice");
  assert.equal(never, 0, "every key ran");
  assert.equal(total, N);
  assert.ok(cuts >= 10 && reconnects >= 10, `the connection flapped (${cuts} cuts, ${reconnects} reconnects)`);
  assert.equal(c.outbox.pending, 0);
});
