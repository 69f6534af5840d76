// Drives the React page in Chromium (playwright-core, Debian's chromium:
// never a browser download) for TestReactPage (react_test.go), against the
// real hub of the Go test server. Environment: PAGE (the page's URL), HUB
// (the hub's ws:// URL), CTL (the server's control API), HUB_ID,
// ARTIFACTS (screenshots), CHROMIUM. It asks the Go test for what the hub
// sees with the line "@@stats" (answer: one JSON line) and prints PASS at
// the end; any failed check throws.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const { PAGE, HUB, CTL, HUB_ID } = process.env;
const artifacts = process.env.ARTIFACTS || "artifacts";
mkdirSync(artifacts, { recursive: true });

const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => waiting.shift()?.(l.trim()));
/** What the hub sees now: {connections, accepted, joins: {"user room": n}, rooms: [...], presence: {user: conns}}. */
const stats = () =>
  new Promise((resolve) => {
    waiting.push((l) => resolve(JSON.parse(l)));
    console.log("@@stats");
  });

const step = (msg) => console.log(`step: ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
async function ctl(path, body) {
  const r = await fetch(`${CTL}/hub/${HUB_ID}${path}`, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${text}`);
  return text;
}
const reading = (n) => ({ room: "device:7", event: "sensor:data", data: { device: "7", n } });
const publish = (n) => ctl("/publish", reading(n));
const seq = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
async function tab(user) {
  const token = await ctl(`/token?` + new URLSearchParams({ sub: user, roles: "staff", name: user[0].toUpperCase() + user.slice(1) }));
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => errors.push(`${user}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/WebSocket connection|Failed to load resource/.test(m.text())) errors.push(`${user}: console: ${m.text()}`);
  });
  await page.goto(`${PAGE}?` + new URLSearchParams({ hub: HUB, token }));
  return { page, ctx, user };
}
const shot = async (page, name) => {
  const path = join(artifacts, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
};
const online = (page) => page.locator("#online li").allTextContents();
const waitOnline = (page, names, what) =>
  page
    .waitForFunction((want) => JSON.stringify([...document.querySelectorAll("#online li")].map((li) => li.textContent)) === JSON.stringify(want), names, { timeout: 10000 })
    .catch(async () => check(false, `${what}: online list ${JSON.stringify(await online(page))}, want ${JSON.stringify(names)}`));
const waitReadings = (page, ns, what) =>
  page
    .waitForFunction((want) => document.querySelector("#readings")?.textContent === want, ns.join(","), { timeout: 10000 })
    .catch(async () => check(false, `${what}: readings "${await page.locator("#readings").textContent()}", want "${ns.join(",")}"`));
const waitJoined = (page, label, joined) =>
  page.waitForSelector(`#room-${label}[data-joined="${joined}"]`, { timeout: 10000 });
/** Polls the hub until ok(stats) holds (the page's commands reach it asynchronously), for at most 5 s. */
async function hubSees(ok, what) {
  let s;
  for (let i = 0; i < 50; i++) {
    s = await stats();
    if (ok(s)) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  check(false, `${what}: the hub sees ${JSON.stringify(s)}`);
}

try {
  step("tab A (alice) loads the page in StrictMode: live, in device:7 (two components), Alice online");
  const a = await tab("alice");
  await a.page.waitForSelector('#state[data-state="live"]', { timeout: 10000 });
  await waitJoined(a.page, "a", true);
  await waitJoined(a.page, "b", true);
  await waitOnline(a.page, ["Alice"], "tab A alone");
  const effects = await a.page.evaluate(() => window.probe.effects);
  check(effects === 2, `StrictMode ran App's mount effect ${effects} times, want 2 (a development build double-mounts)`);

  step("StrictMode leaves one listener of each kind per hook (none leaked by the double mount)");
  // Readings: one sensor:data handler. The presence list: one user:online,
  // user:offline and user:viewing handler, and one onConnected. Each room
  // (staff, device:7): one onReset and one onConnected. The connection
  // state: one onState.
  const base = { "sensor:data": 1, "user:online": 1, "user:offline": 1, "user:viewing": 1, state: 1, connected: 3, reset: 2 };
  const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([x], [y]) => (x < y ? -1 : 1)));
  const listeners = async () => JSON.stringify(sorted(await a.page.evaluate(() => window.probe.listeners())));
  check((await listeners()) === JSON.stringify(sorted(base)), `listeners ${await listeners()}, want ${JSON.stringify(sorted(base))}`);

  step("StrictMode: the hub sees one connection and one join of device:7 for tab A");
  // Give a second connection or join, had the page made one, time to arrive.
  await new Promise((r) => setTimeout(r, 500));
  let s = await hubSees((s) => s.connections === 1, "one connection");
  check(s.accepted === 1, `${s.accepted} handshakes accepted for one StrictMode tab, want 1`);
  check(s.joins["alice device:7"] === 1, `alice joined device:7 ${s.joins["alice device:7"]} times, want 1`);
  // staff is joined by the server (AutoJoin), which authorizes it as a join too: once per connection.
  check(s.joins["alice staff"] === 1, `alice's joins of staff: ${s.joins["alice staff"]}, want 1 (the server's auto-join; usePresence must not join it again)`);
  check(s.presence.alice === 1, `alice has ${s.presence.alice} connections in staff's presence, want 1`);

  step("tab B (bob): each tab sees the other arrive");
  const b = await tab("bob");
  await b.page.waitForSelector('#state[data-state="live"]', { timeout: 10000 });
  await waitOnline(b.page, ["Alice", "Bob"], "tab B");
  await waitOnline(a.page, ["Alice", "Bob"], "tab A after B arrived");
  s = await hubSees((s) => s.connections === 2, "two connections");
  check(s.accepted === 2, `${s.accepted} handshakes accepted for two tabs, want 2`);
  check(s.joins["bob device:7"] === 1, `bob joined device:7 ${s.joins["bob device:7"]} times, want 1`);

  step("live events reach both tabs, in order, once");
  for (const n of seq(1, 3)) await publish(n);
  await waitReadings(a.page, seq(1, 3), "tab A");
  await waitReadings(b.page, seq(1, 3), "tab B");
  await shot(a.page, "react-two-tabs-a.png");
  await shot(b.page, "react-two-tabs-b.png");

  step("tab B closes: tab A sees Bob leave");
  await b.ctx.close();
  await waitOnline(a.page, ["Alice"], "tab A after B left");
  await hubSees((s) => s.connections === 1 && !s.presence.bob, "bob gone");

  step("one of the two device:7 components unmounts: the room is kept (reference count)");
  await a.page.click("#toggle-a");
  await a.page.waitForSelector("#room-a", { state: "detached" });
  await publish(4);
  await waitReadings(a.page, seq(1, 4), "tab A with one device:7 component");
  s = await hubSees((s) => s.rooms.includes("device:7"), "device:7 kept");
  check(s.joins["alice device:7"] === 1, `alice joined device:7 ${s.joins["alice device:7"]} times, want still 1`);

  step("the last one unmounts: the page leaves device:7 (its listeners go); it mounts again: one more join");
  await a.page.click("#toggle-b");
  await hubSees((s) => !s.rooms.includes("device:7"), "device:7 left");
  const without = { ...base, connected: 2, reset: 1 };
  check((await listeners()) === JSON.stringify(sorted(without)), `listeners without device:7: ${await listeners()}, want ${JSON.stringify(sorted(without))}`);
  await a.page.click("#toggle-b");
  await waitJoined(a.page, "b", true);
  s = await hubSees((s) => s.rooms.includes("device:7"), "device:7 joined again");
  check(s.joins["alice device:7"] === 2, `alice joined device:7 ${s.joins["alice device:7"]} times, want 2`);
  check((await listeners()) === JSON.stringify(sorted(base)), `listeners after the room's components came and went: ${await listeners()}, want ${JSON.stringify(sorted(base))}`);

  step("server restart: events published before, during and after it arrive without gap or repeat");
  await publish(5);
  await publish(6);
  await waitReadings(a.page, seq(1, 6), "tab A before the restart");
  await ctl("/restart?history=keep", [reading(7), reading(8)]); // published before the new hub serves: only a resume brings them
  await a.page.waitForFunction(() => window.probe.states.includes("reconnecting"), null, { timeout: 10000 });
  await a.page.waitForSelector('#state[data-state="live"]', { timeout: 15000 });
  await waitReadings(a.page, seq(1, 8), "tab A after the restart (resumed)");
  await publish(9);
  await publish(10);
  await waitReadings(a.page, seq(1, 10), "tab A after the restart (live)");
  const probe = await a.page.evaluate(() => window.probe);
  check(JSON.stringify(probe.events) === JSON.stringify(seq(1, 10)), `events ${JSON.stringify(probe.events)}: each once, in order`);
  check((await a.page.getAttribute("#room-b", "data-resets")) === "0", "a reset was reported though the history was kept");
  await waitOnline(a.page, ["Alice"], "tab A after the restart");
  s = await hubSees((s) => s.connections === 1 && s.rooms.includes("device:7"), "one connection after the restart");
  check(s.accepted === 1, `${s.accepted} handshakes on the restarted hub, want 1`);
  check(s.joins["alice device:7"] === 3, `alice joined device:7 ${s.joins["alice device:7"]} times, want 3 (the rejoin after the restart)`);
  console.log(`states: ${probe.states.join(" → ")}`);
  await shot(a.page, "react-after-restart.png");

  check(errors.length === 0, `page errors: ${errors.join("; ")}`);
  console.log("PASS");
} finally {
  await browser.close();
  lines.close();
}
