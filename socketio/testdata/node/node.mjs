// The real socket.io-client v4 (npm) against rthub's socketio gateway, in
// Node. Run by the Go tests of package socketio (node_test.go) through
// internal/testenv.RunScript: URL is the test server (the gateway at
// /socket.io/, its control API at /ctl/), SCENARIO the test to run,
// TRANSPORTS the client's transports (comma-separated; default: polling
// then the upgrade to websocket). Prints PASS when every check held; a
// failed check throws.
import { io } from "socket.io-client";

const { URL, SCENARIO } = process.env;
const transports = process.env.TRANSPORTS ? process.env.TRANSPORTS.split(",") : undefined;
const step = (msg) => console.log(`step: ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 5000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (cond()) return;
  check(false, `${what}: not within ${ms} ms`);
}
async function ctl(path, body) {
  const r = await fetch(`${URL}/ctl/${path}`, { method: body === undefined ? "GET" : "POST", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${text}`);
  return text;
}
const token = (sub, roles = "staff", extra = "") => ctl(`token?sub=${sub}&roles=${roles}${extra}`);
const publish = (room, event, data) => ctl("publish", { room, event, data });
const connected = (s) => new Promise((resolve, reject) => {
  if (s.connected) return resolve();
  s.once("connect", resolve);
  s.once("connect_error", reject);
});
const connectError = (s) => new Promise((resolve, reject) => {
  s.once("connect", () => reject(new Error("connected, want connect_error")));
  s.once("connect_error", resolve);
});
const opts = (auth, more = {}) => ({ auth, transports, reconnectionDelay: 200, reconnectionDelayMax: 500, ...more });

const scenarios = {
  async basic() {
    step("connect with a token in auth");
    const s = io(URL, opts({ token: await token("alice") }));
    let welcome;
    s.on("rthub:welcome", (w) => (welcome = w));
    const got = [];
    s.on("sensor:data", (d) => got.push(d.n));
    await connected(s);
    check(typeof s.id === "string" && s.id.length > 0, "socket.id");
    check(!s.recovered, "recovered is false on a first connect");
    await until(() => welcome, "rthub:welcome");
    check(welcome.user === "alice" && JSON.stringify(welcome.rooms) === '["staff"]', `welcome ${JSON.stringify(welcome)}`);

    step("events of the auto-joined room");
    await publish("staff", "sensor:data", { n: 1 });
    await until(() => got.length === 1, "staff event");

    step("join a room (ack: the hub's reply), its events");
    const j = await s.emitWithAck("rthub:join", "device:7");
    check(j.ok === true && j.data.room === "device:7" && typeof j.data.epoch === "string", `join ack ${JSON.stringify(j)}`);
    await publish("device:7", "sensor:data", { n: 2 });
    await until(() => got.length === 2, "device:7 event");

    step("a forbidden join is refused; the connection stays");
    const f = await s.emitWithAck("rthub:join", "admin");
    check(f.ok === false && f.error.code === "forbidden", `forbidden join ack ${JSON.stringify(f)}`);
    check(s.connected, "still connected");

    step("emit with an ack round trip (the handler publishes it back)");
    const acks = [];
    s.on("alert:ack", (a) => acks.push(a.id));
    const a = await s.emitWithAck("alert:ack", "staff", { id: 3 });
    check(a.ok === true, `emit ack ${JSON.stringify(a)}`);
    await until(() => acks.includes(3), "alert:ack broadcast");
    const bad = await s.emitWithAck("alert:ack", "staff", { id: "x" });
    check(bad.ok === false && bad.error.code === "bad_payload" && bad.error.field === "/id", `bad payload ack ${JSON.stringify(bad)}`);
    const nope = await s.emitWithAck("alert:ack", "device:7", { id: 4 });
    check(nope.ok === false && nope.error.code === "forbidden", `emit to a room without the right ${JSON.stringify(nope)}`);
    const unknown = await s.emitWithAck("no:such", "staff", {});
    check(unknown.ok === false && unknown.error.code === "unknown_event", `unknown event ${JSON.stringify(unknown)}`);
    const obj = await s.emitWithAck("alert:ack", { room: "staff", id: 5 });
    check(obj.ok === true, `emit with {room, …} ${JSON.stringify(obj)}`);
    s.emit("alert:ack", "staff", { id: 6 }); // no ack asked: still handled
    await until(() => acks.includes(5) && acks.includes(6), "alert:ack 5 and 6");

    step("an RPC call: the ack is its result");
    const sum = await s.emitWithAck("math:sum", { A: 2, B: 3 });
    check(sum.ok === true && sum.data.Sum === 5, `rpc ${JSON.stringify(sum)}`);
    const neg = await s.emitWithAck("math:sum", { A: -1, B: 3 });
    check(neg.ok === false && neg.error.code === "bad_payload", `rpc error ${JSON.stringify(neg)}`);

    step("presence through rthub:presence");
    const p = await s.emitWithAck("rthub:presence", "staff");
    check(p.ok && p.data.count === 1 && p.data.users[0].user === "alice", `presence ${JSON.stringify(p)}`);

    step("leave: no more events of the room");
    check((await s.emitWithAck("rthub:leave", "device:7")).ok, "leave ack");
    await publish("device:7", "sensor:data", { n: 99 });
    await publish("staff", "sensor:data", { n: 3 });
    await until(() => got.length === 3, "the marker");
    check(JSON.stringify(got) === "[1,2,3]", `events ${JSON.stringify(got)}`);

    const name = s.io.engine.transport.name;
    console.log(`transport: ${name}`);
    if (!transports) await until(() => s.io.engine.transport.name === "websocket", "upgrade to websocket");
    else check(name === transports[0], `transport ${name}`);

    step("the hub disconnects the user: rthub:disconnect, then io server disconnect (no reconnection)");
    let told, reason;
    s.on("rthub:disconnect", (d) => (told = d));
    s.on("disconnect", (r) => (reason = r));
    await ctl("disconnect?sub=alice", {});
    await until(() => reason, "disconnect");
    check(told && told.code === 4101, `rthub:disconnect ${JSON.stringify(told)}`);
    check(reason === "io server disconnect", `reason ${reason}`);
    await sleep(600);
    check(!s.connected, "no reconnection after a terminal close");
    s.close();
  },

  async badtoken() {
    for (const [what, auth, code] of [
      ["malformed", { token: "not-a-jwt" }, "token_malformed"],
      ["expired", { token: await token("alice", "staff", "&expired=1") }, "token_expired"],
      ["missing", {}, "token_missing"],
    ]) {
      step(`a ${what} token: connect_error with the hub's code`);
      const s = io(URL, opts(auth, { reconnection: false }));
      const err = await connectError(s);
      check(err.data && err.data.code === code && err.data.status === 401 && err.message, `connect_error ${err.message} ${JSON.stringify(err.data)}`);
      s.close();
    }
    step("another site's page (Origin): connect_error forbidden_origin, the hub's origin check");
    const evil = io(URL, opts({ token: await token("alice") }, { reconnection: false, transports: ["websocket"], extraHeaders: { Origin: "http://evil.example" } }));
    const oe = await connectError(evil);
    check(oe.data && oe.data.code === "forbidden_origin" && oe.data.status === 403, `cross-origin connect_error ${oe.message} ${JSON.stringify(oe.data)}`);
    evil.close();

    step("a good token after a refusal (auth as a function, as apps refresh it)");
    let n = 0;
    const good = await token("alice");
    const s = io(URL, opts((cb) => cb({ token: n++ === 0 ? "bad" : good })));
    await connectError(s);
    s.connect();
    await connected(s);
    check(n === 2, `auth called ${n} times`);
    s.close();
  },

  async expiry() {
    step("a token that expires: rthub:disconnect 4002, the transport closes, the client reconnects with a fresh token");
    const tokens = [await token("alice", "staff", "&ttl_ms=1500"), await token("alice")];
    let calls = 0;
    const s = io(URL, opts((cb) => cb({ token: tokens[Math.min(calls++, 1)] })));
    const told = [], reasons = [];
    s.on("rthub:disconnect", (d) => told.push(d.code));
    s.on("disconnect", (r) => reasons.push(r));
    await connected(s);
    await until(() => reasons.length === 1, "the close at exp", 10000);
    check(told[0] === 4002 && reasons[0] === "transport close", `told ${JSON.stringify(told)}, reasons ${JSON.stringify(reasons)}`);
    await until(() => s.connected, "reconnected", 10000);
    check(calls === 2, `auth called ${calls} times`);

    step("rthub:refresh moves the expiry (same subject)");
    const fresh = await token("alice", "staff", "&ttl_ms=7200000");
    const r = await s.emitWithAck("rthub:refresh", fresh);
    check(r.ok && r.data.expires > Date.now() / 1000 + 3600, `refresh ${JSON.stringify(r)}`);
    const other = await s.emitWithAck("rthub:refresh", await token("mallory"));
    check(!other.ok && other.error.code === "token_claims", `refresh for another subject ${JSON.stringify(other)}`);
    await until(() => told.length === 2, "the close after a refresh for another subject");
    check(told[1] === 4100, `told ${JSON.stringify(told)}`);
    await until(() => reasons.length === 2, "disconnect");
    check(reasons[1] === "io server disconnect", `reason ${reasons[1]}`);

    step("rthub:viewing reaches presence");
    const v = io(URL, opts({ token: await token("bob") }));
    await connected(v);
    check((await v.emitWithAck("rthub:viewing", "device:42")).ok, "viewing ack");
    const p = await v.emitWithAck("rthub:presence", "staff");
    check(p.ok && p.data.users.some((u) => u.user === "bob" && u.conns.some((c) => c.viewing === "device:42")), `presence ${JSON.stringify(p)}`);
    v.close();
    s.close();
  },

  async limits() {
    step("a second connection of alice past MaxConnsPerUser 1: not refused for good, the client retries");
    const tok = await token("alice");
    const a = io(URL, opts({ token: tok }));
    await connected(a);
    const b = io(URL, opts({ token: tok }));
    const errs = [];
    b.on("connect_error", (e) => errs.push(e));
    await until(() => errs.length >= 2, "two failed attempts", 10000);
    // Each failed attempt is a connect_error of the transport (no data),
    // never the server's refusal, which would stop the retries.
    check(!b.connected && errs.every((e) => e.data === undefined), `b connected ${b.connected}, connect_errors ${JSON.stringify(errs.map((e) => [e.message, e.data]))}`);
    check(b.active, "b keeps trying (socket.active)");
    step("alice's first connection ends: the second gets in");
    a.close();
    await connected(b);
    b.close();
  },

  async recovery() {
    step("connect (recovery on), join device:7, events 1..3 in staff and device:7");
    const s = io(URL, opts({ token: await token("alice") }));
    const got = [];
    s.on("sensor:data", (d) => got.push(d.n));
    await connected(s);
    check(!s.recovered, "first connect is not a recovery");
    check((await s.emitWithAck("rthub:join", "device:7")).ok, "join");
    for (const n of [1, 2, 3]) await publish(n % 2 ? "staff" : "device:7", "sensor:data", { n });
    await until(() => got.length === 3, "1..3");

    step("the network drops; 4..9 are published meanwhile");
    let down = 0;
    s.on("disconnect", () => down++);
    await ctl("drop?hold=1", {});
    for (const n of [4, 5, 6, 7, 8, 9]) await publish(n % 2 ? "staff" : "device:7", "sensor:data", { n });
    await ctl("up", {});
    await until(() => down === 1 && s.connected, "reconnected", 10000);
    check(s.recovered === true, "socket.recovered after a short outage");
    await until(() => got.length === 9, `4..9 after the recovery (got ${JSON.stringify(got)})`);
    await publish("device:7", "sensor:data", { n: 10 });
    await until(() => got.length === 10, "10, live in the rejoined room");
    // Each room's events in order (rthub orders a room's events; the rooms
    // are resumed one after the other), each event once.
    const odd = got.filter((n) => n % 2), even = got.filter((n) => n % 2 === 0);
    check(JSON.stringify(odd) === "[1,3,5,7,9]" && JSON.stringify(even) === "[2,4,6,8,10]", `each room in order, each event once: ${JSON.stringify(got)}`);

    step("a second short outage: recovered again, in the rejoined room too");
    await ctl("drop?hold=1", {});
    for (const n of [11, 12, 13, 14]) await publish(n % 2 ? "staff" : "device:7", "sensor:data", { n });
    await ctl("up", {});
    await until(() => down === 2 && s.connected, "reconnected the second time", 10000);
    check(s.recovered === true, "socket.recovered after the second outage");
    await until(() => got.length === 14, `11..14 (got ${JSON.stringify(got)})`);
    const odd2 = got.filter((n) => n % 2), even2 = got.filter((n) => n % 2 === 0);
    check(JSON.stringify(odd2) === "[1,3,5,7,9,11,13]" && JSON.stringify(even2) === "[2,4,6,8,10,12,14]", `each once, in order: ${JSON.stringify(got)}`);

    step("an outage longer than the rooms' history: recovered is false (told to reload)");
    await ctl("drop?hold=1", {});
    for (let n = 15; n <= 140; n++) await publish("staff", "sensor:data", { n });
    await ctl("up", {});
    await until(() => down === 3 && s.connected, "reconnected again", 10000);
    check(s.recovered === false, "recovered must be false: events were lost");
    s.close();
  },
};

const run = scenarios[SCENARIO];
if (!run) throw new Error(`unknown SCENARIO ${SCENARIO}`);
await run();
console.log("PASS");
process.exit(0);
