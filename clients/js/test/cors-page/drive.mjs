// Drives the cross-origin fallback page (index.html) in Chromium
// (playwright-core, Debian's chromium: never a browser download) for
// clients/js's TestFallbackCrossOrigin. The page is served from PAGE's
// origin; two hubs listen on other origins and refuse every WebSocket
// upgrade: HUB_OK allows the page's origin, HUB_NO does not.
// Environment: PAGE, HUB_OK, HUB_NO (ws:// URLs), TOKEN, CHROMIUM. The line
// "@@publish" asks the Go test to publish numbered events to device:cors on
// HUB_OK and answer with their numbers (one JSON line). Checks:
//   1. HUB_OK: the WebSocket is tried and fails, the client goes live on the
//      HTTP stream, its POSTed commands get replies (pings, a forbidden and
//      an allowed join), and it receives every event published, in order.
//   2. HUB_OK with a bad token: the 401 is readable across origins, so the
//      client stops with 4100 (onAuthError) instead of retrying blind (1006).
//   3. HUB_NO: the client never goes live, the stream's fetch fails as a
//      CORS failure (TypeError), and the page throws nothing.
// Prints PASS.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const { PAGE, HUB_OK, HUB_NO, TOKEN } = process.env;
const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => waiting.shift()?.(l.trim()));
const ask = (q) =>
  new Promise((resolve) => {
    waiting.push((l) => resolve(JSON.parse(l)));
    console.log(q);
  });
const step = (msg) => console.log(`step: ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
async function open(hub, token) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${PAGE}?` + new URLSearchParams({ hub, token }));
  const state = () => page.evaluate(() => ({ ...window.rthub, client: undefined }));
  return { page, errors, state };
}
try {
  check(new URL(PAGE).origin !== new URL(HUB_OK.replace(/^ws/, "http")).origin, "the page and the hub share an origin");

  // 1. Allowed origin: live on the HTTP stream, commands, events.
  const ok = await open(HUB_OK, TOKEN);
  await ok.page.waitForFunction(() => window.rthub?.live.includes("http"), null, { timeout: 15000 }).catch(() => {});
  let s = await ok.state();
  step(`allowed: transports ${JSON.stringify(s.transports)}; live ${JSON.stringify(s.live)}; lost ${JSON.stringify(s.lost)}`);
  check(s.transports[0] === "websocket", "WebSocket was not tried first");
  check(s.live.length > 0 && s.live.every((t) => t === "http"), `not live on the HTTP stream alone: ${s.live}`);
  const replies = await ok.page.evaluate(async () => {
    const c = window.rthub.client;
    const out = [];
    for (let i = 0; i < 10; i++) out.push(await c.ping().then(() => "ok", (e) => e.code));
    out.push(await c.join("admin").then(() => "joined", (e) => e.code));
    out.push(await c.join("device:7").then(() => "joined", (e) => e.code));
    return out;
  });
  check(replies.slice(0, 10).every((r) => r === "ok"), `pings: ${replies}`);
  check(replies[10] === "forbidden" && replies[11] === "joined", `joins: ${replies.slice(10)}`);
  step(`10 pings, a forbidden and an allowed join answered across origins: ${replies.slice(10)}`);
  const published = await ask("@@publish");
  await ok.page.waitForFunction((n) => window.rthub.got.length >= n, published.length, { timeout: 10000 }).catch(() => {});
  s = await ok.state();
  step(`received ${s.got.length} of ${published.length} events`);
  check(JSON.stringify(s.got) === JSON.stringify(published), `events ${s.got}, want ${published}`);
  check(s.lost.filter(([t]) => t === "http").length === 0, `the HTTP stream was lost: ${JSON.stringify(s.lost)}`);
  check(ok.errors.length === 0, `page errors: ${ok.errors}`);
  await ok.page.evaluate(() => window.rthub.client.close());

  // 2. Allowed origin, bad token: the refusal is readable.
  const bad = await open(HUB_OK, "not-a-token");
  await bad.page.waitForFunction(() => window.rthub?.auth.length > 0, null, { timeout: 15000 }).catch(() => {});
  s = await bad.state();
  step(`bad token: transports ${JSON.stringify(s.transports)}; auth errors ${JSON.stringify(s.auth)}; lost ${JSON.stringify(s.lost)}`);
  check(s.auth.length === 1 && s.auth[0][0] === "http" && s.auth[0][1] === 4100, `auth errors ${JSON.stringify(s.auth)}, want 4100 on the HTTP stream`);
  check(s.live.length === 0, `live with a bad token: ${s.live}`);
  check(bad.errors.length === 0, `page errors: ${bad.errors}`);

  // 3. Origin not allowed: fails cleanly.
  const no = await open(HUB_NO, TOKEN);
  await no.page.waitForFunction(() => window.rthub?.transports.includes("http") && window.rthub.lost.some(([t]) => t === "http"), null, { timeout: 15000 }).catch(() => {});
  const probe = await no.page.evaluate(
    ([url, token]) =>
      fetch(url, { headers: { Accept: "text/event-stream", Authorization: "Bearer " + token } }).then(
        (r) => `status ${r.status}`,
        (e) => e.name,
      ),
    [HUB_NO.replace(/^ws/, "http"), TOKEN],
  );
  s = await no.state();
  step(`not allowed: transports ${JSON.stringify(s.transports)}; live ${JSON.stringify(s.live)}; lost ${JSON.stringify(s.lost)}; a fetch of the stream: ${probe}`);
  check(s.transports.includes("http"), "the HTTP stream was never tried");
  check(s.live.length === 0, `live from an origin not allowed: ${s.live}`);
  check(s.lost.some(([t, code]) => t === "http" && code === 1006), `no failed HTTP stream: ${JSON.stringify(s.lost)}`);
  check(s.got.length === 0 && s.auth.length === 0, `events or auth errors: ${JSON.stringify(s)}`);
  check(probe === "TypeError", `a fetch from an origin not allowed: ${probe}, want a TypeError (CORS)`);
  check(no.errors.length === 0, `page errors: ${no.errors}`);
  await no.page.evaluate(() => window.rthub.client.close());
  console.log("PASS");
} finally {
  await browser.close();
  lines.close();
}
