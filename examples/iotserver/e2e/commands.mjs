// Browser scenario of commands to devices, driven by browser_test.go
// (TestBrowser_Commands) against the server on Mosquitto and PostgreSQL:
// an admin changes a simulated device's reporting interval and alert
// threshold from the device's panel and sees each command pending, then
// done (the device acknowledged); a device cut off (its Last Will says
// offline) gets its command when it comes back, and one with a 1 s TTL
// shows expired; a staff user sees the commands but has no forms, and a
// forged call is refused with forbidden.
// Environment: BASE_URL, ARTIFACTS (directory for screenshots), CHROMIUM.

import { artifacts, base, browser, check, errors, join, newPage, shot, step } from "./harness.mjs";

async function login(page, user, password) {
  await page.goto(base + "/");
  await page.fill("#username", user);
  await page.fill("#password", password);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector('[data-testid=conn-state][data-state="live"]', { timeout: 15000 });
}

const cmdItem = (name, state) => `[data-testid=commands] li[data-name="${name}"][data-state="${state}"]`;

try {
  step("admin logs in and opens dev-01");
  const admin = await newPage("admin");
  await login(admin, "admin", "admin-pw");
  await admin.waitForSelector('[data-testid="device-dev-01"][data-status="online"] .values b', { timeout: 15000 });
  await admin.click('[data-testid="device-dev-01"]');
  await admin.waitForSelector("[data-testid=cmd-interval]:not([hidden])", { timeout: 5000 });

  step("set the reporting interval to 2 s");
  await admin.fill("#cmd-seconds", "2");
  await admin.click("#cmd-interval button[type=submit]");
  await admin.waitForSelector(cmdItem("set_interval", "done"), { timeout: 15000 });
  check((await admin.textContent(cmdItem("set_interval", "done"))).includes("reporting interval 2 s"), "interval command shown done");
  // The device obeys: readings now come 2 s apart.
  const gap = await admin.evaluate(async () => {
    const at = () => /** @type {any} */ (window).__iot.devices.get("dev-01").last.at;
    const wait = async (prev) => {
      for (let i = 0; i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if (at() !== prev) return at();
      }
      return prev;
    };
    const a = await wait(at());
    const b = await wait(a);
    return Date.parse(b) - Date.parse(a);
  });
  check(gap >= 1800 && gap <= 2600, `readings 2 s apart after set_interval (got ${gap} ms)`);
  step(`readings now ${gap} ms apart`);

  step("set the temperature alert threshold to 12");
  await admin.selectOption("#cmd-metric", "temperature");
  await admin.fill("#cmd-value", "12");
  await admin.click("#cmd-threshold button[type=submit]");
  await admin.waitForSelector(cmdItem("set_threshold", "done"), { timeout: 15000 });
  // dev-01 (climate, about 23 °C) is now over its own threshold: an alert opens.
  await admin.waitForSelector('[data-testid=alerts] li[data-device="dev-01"]', { timeout: 15000 });
  await shot(admin, "commands-01-done.png");

  step("dev-02 drops out: a command waits for it, one with a 1 s TTL expires");
  await admin.click('[data-testid="device-dev-02"]');
  await admin.waitForSelector('[data-testid="device-dev-02"][data-status="online"]', { timeout: 15000 });
  await admin.click("[data-testid=dropout]"); // 10 s without a connection: the broker publishes its Last Will
  await admin.waitForSelector('[data-testid="device-dev-02"][data-status="offline"]', { timeout: 15000 });
  await admin.fill("#cmd-seconds", "3");
  await admin.click("#cmd-interval button[type=submit]");
  await admin.waitForSelector(cmdItem("set_interval", "queued"), { timeout: 5000 });
  check((await admin.textContent(cmdItem("set_interval", "queued"))).includes("pending"), "queued shows pending");
  const short = await admin.evaluate(() =>
    /** @type {any} */ (window).__iot.client.call("device:command", { device: "dev-02", command: "set_threshold", metric: "temperature", value: 9, ttl_s: 1 }),
  );
  check(short.state === "queued", "the short command is queued");
  await admin.waitForSelector(cmdItem("set_threshold", "expired"), { timeout: 10000 });
  check((await admin.textContent(cmdItem("set_threshold", "expired"))).includes("stayed offline"), "expired, never sent");
  await shot(admin, "commands-02-pending-expired.png");
  await admin.waitForSelector('[data-testid="device-dev-02"][data-status="online"]', { timeout: 30000 });
  await admin.waitForSelector(cmdItem("set_interval", "done"), { timeout: 15000 });
  step("dev-02 came back and acknowledged the queued command");
  await shot(admin, "commands-03-after-reconnect.png");

  step("alice (staff) sees the commands, without the forms; a forged call is forbidden");
  const alice = await newPage("alice");
  await login(alice, "alice", "alice-pw");
  await alice.click('[data-testid="device-dev-01"]');
  check(await alice.isHidden("[data-testid=cmd-interval]"), "staff has no command form");
  await admin.fill("#cmd-seconds", "4");
  await admin.click('[data-testid="device-dev-01"]');
  await admin.click("#cmd-interval button[type=submit]");
  await alice.waitForSelector(cmdItem("set_interval", "done"), { timeout: 15000 });
  const forged = await alice.evaluate(async () => {
    try {
      await /** @type {any} */ (window).__iot.client.call("device:command", { device: "dev-01", command: "set_interval", seconds: 1 });
      return "accepted";
    } catch (e) {
      return e.code;
    }
  });
  check(forged === "forbidden", `staff call refused with forbidden (got ${forged})`);
  check(errors.length === 0, "no page errors:\n" + errors.join("\n"));
  console.log("PASS");
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log("FAIL: " + (e.stack || e));
  if (errors.length) console.log("page errors:\n" + errors.join("\n"));
  for (const ctx of browser.contexts())
    for (const [i, p] of ctx.pages().entries()) await p.screenshot({ path: join(artifacts, `commands-failure-${i}.png`), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
