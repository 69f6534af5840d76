// Drives the fallback page (index.html) in Chromium (playwright-core,
// Debian's chromium: never a browser download) for examples/drill's
// TestBrowserFallback: three hub nodes on Redis behind nginx (round robin),
// and in front a proxy that kills every WebSocket 200 ms after the upgrade.
// Environment: PAGE (the page's URL on the proxy), TOKEN, CHROMIUM. The Go
// test publishes numbered events to "bcast" and "room:fb" all along; the
// line "@@stop" asks it to stop and answer with the numbers it published
// (one JSON line). Checks: the client is live on the HTTP stream within 5 s,
// its commands work (each POST lands on any node), and it receives every
// event published after its first one, once, in order. Prints PASS.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const { PAGE, TOKEN } = process.env;
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
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${PAGE}?` + new URLSearchParams({ token: TOKEN }));
  const state = () => page.evaluate(() => ({ ...window.rthub, client: undefined, ctor: undefined }));

  // 1. On the HTTP stream within 5 s of the page's start.
  await page.waitForFunction(() => window.rthub?.live.some(([, t]) => t === "http"), null, { timeout: 10000 }).catch(() => {});
  let s = await state();
  step(`transports ${JSON.stringify(s.transports)}; live ${JSON.stringify(s.live)}; lost ${JSON.stringify(s.lost)}`);
  const onHTTP = s.live.find(([, t]) => t === "http");
  check(onHTTP, "never live on the HTTP stream");
  check(onHTTP[0] < 5000, `live on the HTTP stream after ${onHTTP[0]} ms, want < 5000`);
  check(s.transports[0][1] === "websocket", "WebSocket was not tried first");

  // 2. Commands: each POST goes to any node (nginx round robin); those that
  //    land on another node than the stream's are relayed through Redis.
  const replies = await page.evaluate(async () => {
    const c = window.rthub.client;
    const out = [];
    for (let i = 0; i < 30; i++) out.push(await c.ping().then(() => "ok", (e) => e.code));
    out.push(await c.join("admin").then(() => "joined", (e) => e.code));
    return out;
  });
  check(replies.slice(0, 30).every((r) => r === "ok"), `pings: ${replies}`);
  check(replies[30] === "forbidden", `join of a forbidden room: ${replies[30]}`);
  step("30 pings and a forbidden join answered over the HTTP stream");

  // 3. Events keep flowing; then the publisher stops and says what it published.
  await new Promise((r) => setTimeout(r, 3000));
  const accepted = await ask("@@stop");
  const want = (room, first) => (accepted[room] || []).filter((n) => n >= first);
  await page
    .waitForFunction(
      (acc) => Object.entries(acc).every(([room, seqs]) => { const got = window.rthub.got[room] || []; return got.length > 0 && got.includes(seqs[seqs.length - 1]); }),
      accepted,
      { timeout: 15000 },
    )
    .catch(() => {});
  s = await state();
  for (const room of ["bcast", "room:fb"]) {
    const got = s.got[room] || [];
    check(got.length > 0, `no event of ${room}`);
    const w = want(room, got[0]);
    const missing = w.filter((n) => !got.includes(n));
    const dups = got.length - new Set(got).size;
    const ordered = got.every((n, i) => i === 0 || n > got[i - 1]);
    step(`${room}: received ${got.length} events (${got[0]}..${got[got.length - 1]}), published ${w.length} from the first received; missing ${missing.length}, duplicates ${dups}`);
    check(missing.length === 0, `${room}: missing ${missing.slice(0, 20)}`);
    check(dups === 0 && ordered, `${room}: duplicates or out of order: ${got}`);
  }
  const lostOnHTTP = s.lost.filter(([t, tr]) => tr === "http" && t > onHTTP[0]);
  check(lostOnHTTP.length === 0, `the HTTP stream was lost: ${JSON.stringify(lostOnHTTP)}`);
  check(s.resets.length === 0, `resets: ${s.resets}`);
  check(errors.length === 0, `page errors: ${errors}`);
  console.log("PASS");
} finally {
  await browser.close();
  lines.close();
}
