// Drives the React page (page/app.tsx) in Chromium (playwright-core,
// Debian's chromium: never a browser download) for TestBrowser
// (node_test.go). URL is the test server: the page at /page/, the gateway
// at /socket.io/, the control API at /ctl/. Prints PASS at the end; a
// failed check throws.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const { URL } = process.env;
const artifacts = process.env.ARTIFACTS || "artifacts";
mkdirSync(artifacts, { recursive: true });
const step = (msg) => console.log(`step: ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
async function ctl(path, body) {
  const r = await fetch(`${URL}/ctl/${path}`, { method: body === undefined ? "GET" : "POST", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${text}`);
  return text;
}
const publish = (room, n) => ctl("publish", { room, event: "sensor:data", data: { n } });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
async function tab(user, token) {
  token ??= await ctl(`token?sub=${user}&roles=staff`);
  const ctx = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => errors.push(`${user}: ${e.message}`));
  await page.goto(`${URL}/page/index.html?` + new URLSearchParams({ token }));
  return { page, ctx, user };
}
const shot = async (page, name) => {
  const path = join(artifacts, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
};
const text = (page, sel) => page.locator(sel).textContent();
const waitFor = (page, fn, arg, what) =>
  page.waitForFunction(fn, arg, { timeout: 10000 }).catch(async () => check(false, `${what}: state "${await text(page, "#state")}", online "${await page.locator("#online li").allTextContents()}", readings "${await text(page, "#readings")}"`));
const waitOnline = (page, names, what) =>
  waitFor(page, (want) => JSON.stringify([...document.querySelectorAll("#online li")].map((li) => li.textContent)) === want, JSON.stringify(names), what);
const waitReadings = (page, ns, what) => waitFor(page, (want) => document.querySelector("#readings")?.textContent === want, ns.join(","), what);
const waitState = (page, state, what) => waitFor(page, (want) => document.querySelector("#state")?.dataset.state === want, state, what);

try {
  step("alice's tab connects with her token (React, StrictMode), upgrades to WebSocket, sees herself online");
  const a = await tab("alice");
  await waitState(a.page, "connected", "alice connects");
  await waitOnline(a.page, ["alice"], "alice alone");
  await waitFor(a.page, () => window.socket.io.engine.transport.name === "websocket", undefined, "upgrade to websocket");

  step("room events reach the page");
  await publish("staff", 1);
  await waitReadings(a.page, [1], "staff event");

  step("join a room, a forbidden join, an ack round trip (in the page)");
  const r = await a.page.evaluate(async () => {
    const s = window.socket;
    return {
      join: await s.emitWithAck("rthub:join", "device:7"),
      forbidden: await s.emitWithAck("rthub:join", "admin"),
      ack: await s.emitWithAck("alert:ack", "staff", { id: 7 }),
      connected: s.connected,
    };
  });
  check(r.join.ok && r.join.data.room === "device:7", `join ${JSON.stringify(r.join)}`);
  check(!r.forbidden.ok && r.forbidden.error.code === "forbidden" && r.connected, `forbidden join ${JSON.stringify(r.forbidden)}`);
  check(r.ack.ok === true, `ack ${JSON.stringify(r.ack)}`);
  await publish("device:7", 2);
  await waitReadings(a.page, [1, 2], "device:7 event");

  step("bob's tab: both see both online (usePresence)");
  const b = await tab("bob");
  await waitState(b.page, "connected", "bob connects");
  await waitOnline(a.page, ["alice", "bob"], "alice sees bob");
  await waitOnline(b.page, ["alice", "bob"], "bob sees alice");
  await shot(a.page, "socketio-alice-two-online.png");

  step("the network drops; 3 and 4 are published during the outage; the page recovers them");
  await ctl("drop?hold=1", {});
  await waitState(a.page, "disconnected", "alice sees the outage");
  await publish("staff", 3);
  await publish("device:7", 4);
  await ctl("up", {});
  await waitState(a.page, "connected", "alice reconnects");
  check((await a.page.locator("#state").getAttribute("data-recovered")) === "true", "socket.recovered");
  await waitReadings(a.page, [1, 2, 3, 4], "missed events after the recovery");
  await publish("device:7", 5);
  await waitReadings(a.page, [1, 2, 3, 4, 5], "live again in the joined room");
  await waitOnline(a.page, ["alice", "bob"], "presence after the recovery");
  await shot(a.page, "socketio-alice-recovered.png");

  step("bob closes his tab: alice sees him go");
  await b.ctx.close();
  await waitOnline(a.page, ["alice"], "bob gone");

  step("a bad token: connect_error with the hub's code");
  const c = await tab("carol", "not-a-jwt");
  await waitState(c.page, "error:token_malformed", "bad token");
  await c.ctx.close();

  check(errors.length === 0, `page errors: ${errors.join("; ")}`);
  await a.ctx.close();
  console.log("PASS");
} finally {
  await browser.close();
}
