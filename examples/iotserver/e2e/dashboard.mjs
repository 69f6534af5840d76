// Browser scenario of the dashboard, driven by browser_test.go, which
// starts the server and answers this script's requests to stop and start
// it. Protocol on stdout/stdin, one line each:
//   script: "@@stop"  → test stops the server (SIGTERM), answers "@@stopped"
//   script: "@@start" → test starts it again on the same address, answers "@@started"
// Environment: BASE_URL, ARTIFACTS (directory for screenshots), CHROMIUM.

import { artifacts, ask, base, browser, check, errors, join, newPage, shot, step } from "./harness.mjs";

async function login(page, user, password) {
  await page.goto(base + "/");
  await page.fill("#username", user);
  await page.fill("#password", password);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector('[data-testid=conn-state][data-state="live"]', { timeout: 15000 });
}

const readingAt = (page, dev) => page.getAttribute(`[data-testid="device-${dev}"]`, "data-reading-at");

async function waitNewReading(page, dev, timeout = 10000) {
  const before = await readingAt(page, dev);
  await page.waitForFunction(
    ([d, b]) => {
      const el = document.querySelector(`[data-testid="device-${d}"]`);
      return el && el.dataset.readingAt && el.dataset.readingAt !== b;
    },
    [dev, before],
    { timeout },
  );
  return readingAt(page, dev);
}

try {
  // 1. Staff sees live readings.
  step("alice (staff) logs in");
  const alice = await newPage("alice");
  await login(alice, "alice", "alice-pw");
  await alice.waitForSelector('[data-testid="device-dev-01"] .values b', { timeout: 10000 });
  const r1 = await readingAt(alice, "dev-01");
  const r2 = await waitNewReading(alice, "dev-01");
  const r3 = await waitNewReading(alice, "dev-01");
  check(r1 !== r2 && r2 !== r3, "readings update");
  step(`readings update: ${r1} → ${r2} → ${r3}`);
  check(await alice.isHidden('[data-testid="admin-panel"]'), "staff does not see the admin panel");
  await alice.waitForSelector('[data-testid=health] dd[data-key="mqtt"].ok', { timeout: 10000 });
  await shot(alice, "01-staff-live.png");

  // An external device breaches its threshold: the alert shows, then clears.
  step("device lab-9 reports 35 °C");
  check((await ask("@@breach")) === "@@breached", "breach published");
  await alice.waitForSelector('[data-testid=alerts] li[data-device="lab-9"]', { timeout: 10000 });
  await alice.waitForSelector('[data-testid="device-lab-9"].alerting', { timeout: 10000 });
  check((await alice.textContent("[data-testid=alert-count]")).trim() !== "0", "alert counted");
  step("alert shown on the page");
  await shot(alice, "01b-alert.png");
  // alice acknowledges it: the button emits alert:ack; the page shows the
  // acknowledgement only when the server's alert:acked comes back.
  const alertLi = '[data-testid=alerts] li[data-device="lab-9"]';
  await alice.click(`${alertLi} button.ack`);
  await alice.waitForSelector(`${alertLi}[data-acked-by="alice"] small.acked`, { timeout: 10000 });
  check(await alice.isHidden(`${alertLi} button.ack`), "no Acknowledge button on an acknowledged alert");
  const acked = await alice.evaluate(() => [...window.__iot.alerts.values()].find((a) => a.device === "lab-9"));
  check(acked && acked.acked_by === "alice" && acked.acked_at, `acknowledged alert in the page state: ${JSON.stringify(acked)}`);
  step(`alert acknowledged: ${(await alice.textContent(`${alertLi} small.acked`)).trim()}`);
  await shot(alice, "01c-alert-acked.png");
  check((await ask("@@recover")) === "@@recovered", "recovery published");
  await alice.waitForSelector('[data-testid=alerts] li[data-device="lab-9"]', { state: "detached", timeout: 10000 });
  step("alert resolved on the page");

  // 2. A second user appears in alice's online list, with what they view.
  step("bob (staff) logs in and opens device dev-02");
  const bob = await newPage("bob");
  await login(bob, "bob", "bob-pw");
  await alice.waitForSelector('[data-testid=online] li[data-user="bob"]', { timeout: 10000 });
  await bob.click('[data-testid="device-dev-02"]');
  await bob.waitForSelector("[data-testid=detail] svg.chart path.line", { timeout: 10000 });
  await alice.waitForFunction(() => /viewing device dev-02/.test(document.querySelector('[data-testid="viewing-bob"]')?.textContent || ""), null, { timeout: 10000 });
  await alice.waitForFunction(() => /Bob/.test(document.querySelector('[data-testid="device-dev-02"] .viewers')?.textContent || ""), null, { timeout: 10000 });
  step("alice sees bob online, viewing device dev-02");
  await shot(alice, "02-presence.png");
  await shot(bob, "02b-bob-detail.png");

  // 3. A forged admin join from the staff page is refused.
  step("alice forges a join of the admin room");
  const code = await alice.evaluate(() => window.__iot.client.join("admin").then(() => "joined", (e) => e.code));
  check(code === "forbidden", `forged admin join: got ${code}, want forbidden`);
  check(await alice.isHidden('[data-testid="admin-panel"]'), "still no admin panel");
  check((await alice.getAttribute("[data-testid=conn-state]", "data-state")) === "live", "still connected after the refusal");

  // ... and the admin sees it in the audit log.
  step("admin logs in and finds the refused join in the audit log");
  const admin = await newPage("admin");
  await login(admin, "admin", "admin-pw");
  await admin.waitForSelector('[data-testid="admin-panel"]', { state: "visible" });
  await admin.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=audit] tr[data-kind="forbidden"]')].some((tr) => /alice/.test(tr.textContent) && /join "admin"/.test(tr.textContent)),
    null,
    { timeout: 10000 },
  );
  await admin.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=audit] tr[data-kind="alert_ack"]')].some((tr) => /alice/.test(tr.textContent) && /lab-9/.test(tr.textContent)),
    null,
    { timeout: 10000 },
  );
  step("the admin's audit log also has alice's acknowledgement");
  await shot(admin, "03-admin-audit.png");
  await admin.context().close();

  // 4. The server stops: the page says so, then recovers by itself.
  step("stopping the server");
  check((await ask("@@stop")) === "@@stopped", "server stopped");
  await alice.waitForFunction(() => ["reconnecting", "stale"].includes(document.querySelector("[data-testid=conn-state]").dataset.state), null, { timeout: 15000 });
  const shown = await alice.textContent("[data-testid=conn-state]");
  step(`alice's page shows: ${shown.trim()}`);
  await alice.waitForTimeout(1500);
  await shot(alice, "04-reconnecting.png");
  const before = await readingAt(alice, "dev-01");
  step("starting the server again");
  check((await ask("@@start")) === "@@started", "server started");
  await alice.waitForSelector('[data-testid=conn-state][data-state="live"]', { timeout: 40000 });
  const after = await waitNewReading(alice, "dev-01", 15000);
  check(after !== before, "readings flow again");
  await alice.waitForSelector('[data-testid=online] li[data-user="bob"]', { timeout: 20000 });
  step(`recovered: live, new reading at ${after}, bob back online`);
  await shot(alice, "05-recovered.png");

  check(errors.length === 0, "no page errors:\n" + errors.join("\n"));
  console.log("PASS");
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log("FAIL: " + (e.stack || e));
  if (errors.length) console.log("page errors:\n" + errors.join("\n"));
  for (const ctx of browser.contexts())
    for (const [i, p] of ctx.pages().entries()) await p.screenshot({ path: join(artifacts, `failure-${i}.png`), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
