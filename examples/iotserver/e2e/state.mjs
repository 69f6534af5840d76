// Browser scenario of the dashboard's join with state, driven by
// browser_test.go (TestBrowser_SnapshotRace): a reading is published
// between the page's load and its subscription (the WebSocket is routed
// through the test, which holds the page's join with state until the
// server published it). The card must show it and every reading after it,
// each applied once, the first from the hub's snapshot, not from REST.
// Protocol on stdout/stdin as in dashboard.mjs: "@@reading N" → the test
// publishes reading N of device lab-7 and answers "@@published".

import { ask, base, browser, check, errors, newPage, shot, step } from "./harness.mjs";

const temp = (n) => 20 + n / 10;

try {
  check((await ask("@@reading 1")) === "@@published", "reading 1 published");
  const page = await newPage("alice");
  let held = false;
  // Forward the page's WebSocket through this script, in order; the join
  // with state of staff waits for reading 2 to be published.
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    let chain = Promise.resolve();
    ws.onMessage((m) => {
      chain = chain.then(async () => {
        const text = String(m);
        if (!held && /"op":"join"/.test(text) && /"state":true/.test(text) && /"room":"staff"/.test(text)) {
          held = true;
          step("the page asks to join staff with state: reading 2 is published first");
          check((await ask("@@reading 2")) === "@@published", "reading 2 published");
        }
        server.send(m);
      });
    });
    server.onMessage((m) => ws.send(m));
  });
  await page.goto(base + "/");
  await page.fill("#username", "alice");
  await page.fill("#password", "alice-pw");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector('[data-testid=conn-state][data-state="live"]', { timeout: 15000 });
  check(held, "the join with state went through the route");
  check((await ask("@@reading 3")) === "@@published", "reading 3 published");
  await page.waitForFunction(
    (t) => (window.__iot.devices.get("lab-7")?.last?.values?.temperature ?? 0) >= t,
    temp(3),
    { timeout: 10000 },
  );
  const applied = await page.evaluate(() => window.__iot.applied.filter((a) => a.device === "lab-7"));
  step(`applied to lab-7's card: ${JSON.stringify(applied)}`);
  const ats = applied.map((a) => a.at);
  check(new Set(ats).size === ats.length, "no reading applied twice");
  const offs = applied.map((a) => a.offset);
  check(offs.every((o, i) => i === 0 || o > offs[i - 1]), `offsets increase: ${offs}`);
  check(applied[0].via === "snapshot", "the first reading on the card comes from the snapshot");
  // The snapshot has reading 2, published while the join was held: a hub
  // that read its state before that publication would show reading 1 here,
  // and reading 2 would be lost (not only applied twice).
  check(applied[0].values.temperature === temp(2), `the snapshot's reading is reading 2 (${applied[0].values.temperature})`);
  check(applied.length === 2 && applied[1].via === "event", "then only reading 3, as an event");
  const last = await page.evaluate(() => window.__iot.devices.get("lab-7").last.values.temperature);
  check(last === temp(3), `the card shows reading 3 (${last})`);
  await shot(page, "state-01-snapshot.png");
  check(errors.length === 0, "no page errors:\n" + errors.join("\n"));
  console.log("PASS");
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log("FAIL: " + (e.stack || e));
  if (errors.length) console.log("page errors:\n" + errors.join("\n"));
  await browser.close();
  process.exit(1);
}
