// Browser scenario of the admin console (web/console.html), driven by
// console_test.go (TestBrowser_Console), which answers this script's
// requests, one line each on stdout/stdin:
//   "@@goclient"        → alice connects a Go client (joins staff); answers "@@goclient <her token>"
//   "@@publish"         → an admin publishes ops:notice with secret-looking fields to staff over
//                          /api/admin/publish; answers "@@published <the admin's token>"
//   "@@goclient-closed" → waits for alice's Go client to stop; answers "@@closed <close code> <refused|accepted>"
//                          (whether her old token is then refused at the handshake and by /api/token)
// Environment: BASE_URL, ARTIFACTS (directory for screenshots), CHROMIUM.
//
// What it checks: a staff user gets no console (403 at the console's
// sign-in, 403 from the admin API with their dashboard token); an admin
// sees rooms with member counts and presence, a live event tail with
// secret-looking fields redacted, disconnects bob (his dashboard shows the
// sign-in with close 4101) and revokes alice (her Go client stops with
// 4102, her dashboard shows the sign-in with close 4102, her old token is
// refused). At the end, a scan of everything the console page received or
// sent — response bodies, headers and URLs, request URLs, headers and
// bodies, navigations, console messages, the DOM, localStorage and
// sessionStorage — finds none of the JWTs issued during the test, nor
// anything shaped like a JWT.

import { artifacts, ask, base, browser, check, errors, join, newPage, shot, step } from "./harness.mjs";

const tokens = new Set(); // every JWT issued during the test
const jwtShape = /eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}/;

// captureTokens collects the tokens a dashboard page receives.
const captures = [];
function captureTokens(page) {
  page.on("response", (res) => {
    if (!/\/api\/(login|token)$/.test(new URL(res.url()).pathname)) return;
    captures.push(
      res.text().then((b) => {
        const tok = JSON.parse(b).token;
        if (tok) tokens.add(tok);
      }),
    );
  });
}

async function dashboardLogin(page, user, password) {
  await page.goto(base + "/");
  await page.fill("#username", user);
  await page.fill("#password", password);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector('[data-testid=conn-state][data-state="live"]', { timeout: 15000 });
  // The dashboard keeps its session (with the token) in sessionStorage.
  tokens.add(await page.evaluate(() => JSON.parse(sessionStorage.getItem("rthub-iot-session")).token));
}

// signedOut waits for the dashboard's sign-in with a reason matching re.
async function signedOut(page, who, re) {
  try {
    await page.waitForFunction(
      (src) => !document.querySelector("#login-view").hidden && new RegExp(src).test(document.querySelector("#login-error").textContent),
      re.source,
      { timeout: 15000 },
    );
  } catch {
    throw new Error(`check failed: ${who}'s dashboard shows no sign-in matching ${re}: "${await page.textContent("#login-error")}", state ${await page.getAttribute("[data-testid=conn-state]", "data-state")}`);
  }
  return page.textContent("#login-error");
}

// roomMembers is the members cell of room in the console, or null.
const roomMembers = (page, room) =>
  page.evaluate((room) => document.querySelector(`[data-testid=rooms] tr[data-room="${room}"] td.members`)?.textContent ?? null, room);

try {
  // 1. Two staff users on the dashboard, and alice's Go client.
  step("bob and alice (staff) sign in to the dashboard");
  const bob = await newPage("bob");
  captureTokens(bob);
  await dashboardLogin(bob, "bob", "bob-pw");
  const alice = await newPage("alice");
  captureTokens(alice);
  await dashboardLogin(alice, "alice", "alice-pw");
  await Promise.all(captures);
  step(`captured ${captures.length} token responses, ${tokens.size} tokens`);
  const goclient = await ask("@@goclient");
  check(goclient.startsWith("@@goclient "), `go client: ${goclient}`);
  tokens.add(goclient.split(" ")[1]);
  check(tokens.size === 3, `three tokens captured, got ${tokens.size}`);

  // 2. Staff get no console.
  step("bob opens the console: 403");
  const bobConsole = await bob.context().newPage();
  await bobConsole.goto(base + "/console/");
  await bobConsole.waitForSelector("[data-testid=console-login]", { state: "visible" });
  await bobConsole.fill("#username", "bob");
  await bobConsole.fill("#password", "bob-pw");
  const [loginRes] = await Promise.all([
    bobConsole.waitForResponse((r) => r.url().endsWith("/console/login")),
    bobConsole.click("[data-testid=console-login] button[type=submit]"),
  ]);
  check(loginRes.status() === 403, `bob's console sign-in: ${loginRes.status()}, want 403`);
  await bobConsole.waitForFunction(() => /admins only \(403\)/.test(document.querySelector("[data-testid=console-error]").textContent));
  check(await bobConsole.isHidden("#console"), "bob sees no console");
  check((await bob.context().cookies()).every((c) => c.name !== "rthub_console"), "bob got no console session");
  const bobToken = [...tokens][0];
  const viaAPI = await bob.evaluate(async (tok) => {
    const out = {};
    for (const p of ["/api/admin/rooms", "/api/admin/stats", "/console/api/rooms"]) out[p] = (await fetch(p, { headers: { Authorization: "Bearer " + tok } })).status;
    return out;
  }, bobToken);
  check(viaAPI["/api/admin/rooms"] === 403 && viaAPI["/api/admin/stats"] === 403, `bob's token on the admin API: ${JSON.stringify(viaAPI)}, want 403`);
  check(viaAPI["/console/api/rooms"] === 401, `the console API takes no token: ${JSON.stringify(viaAPI)}, want 401`);
  await shot(bobConsole, "console-01-staff-403.png");
  await bobConsole.close();

  // 3. The admin's console, every byte it sees recorded.
  step("the admin signs in to the console");
  const ctx = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
  const page = await ctx.newPage();
  const seen = []; // [where, text]
  const pending = [];
  page.on("pageerror", (e) => errors.push(`console page: ${e.message}`));
  page.on("console", (m) => seen.push(["console message", m.text()]));
  page.on("framenavigated", (f) => seen.push(["navigation", f.url()]));
  page.on("request", (req) => {
    seen.push(["request URL", req.url()]);
    pending.push(req.allHeaders().then((h) => seen.push(["request headers " + req.url(), JSON.stringify(h)])));
    if (req.postData()) seen.push(["request body " + req.url(), req.postData()]);
  });
  page.on("websocket", (ws) => seen.push(["websocket", ws.url()]));
  page.on("response", (res) => {
    seen.push(["response URL", res.url()]);
    pending.push(res.allHeaders().then((h) => seen.push(["response headers " + res.url(), JSON.stringify(h)])));
    pending.push(res.text().then((b) => seen.push(["response body " + res.url(), b]), () => {}));
  });
  await page.goto(base + "/console/");
  await page.waitForSelector("[data-testid=console-login]", { state: "visible" });
  await page.fill("#username", "admin");
  await page.fill("#password", "admin-pw");
  await page.click("[data-testid=console-login] button[type=submit]");
  await page.waitForSelector("#console", { state: "visible", timeout: 10000 });

  // 4. Rooms and counts: bob's and alice's tabs and alice's Go client are in staff.
  step("the admin sees staff with 3 members, 2 people");
  await page.waitForFunction(() => document.querySelector('[data-testid=rooms] tr[data-room="staff"] td.members')?.textContent === "3", null, { timeout: 10000 });
  check((await page.textContent('[data-testid=rooms] tr[data-room="staff"] td.people')) === "2", "staff: 2 people");
  await page.waitForSelector('[data-testid=presence] li[data-user="alice"]', { timeout: 10000 });
  await page.waitForSelector('[data-testid=presence] li[data-user="bob"]', { timeout: 10000 });
  check(/2 tab/.test(await page.textContent('[data-testid=presence] li[data-user="alice"]')), "alice has 2 connections in staff");
  check(Number(await page.textContent('[data-testid=stats] dd[data-key="connections"]')) === 3, "3 connections");

  // 5. The live tail, redacted.
  step("an admin publishes a notice with secret-looking fields: the tail shows it redacted");
  const published = await ask("@@publish");
  check(published.startsWith("@@published "), `publish: ${published}`);
  tokens.add(published.split(" ")[1]);
  await page.waitForSelector('[data-testid=tail] li[data-event="ops:notice"]', { timeout: 10000 });
  const line = await page.textContent('[data-testid=tail] li[data-event="ops:notice"]');
  check(/console tail check/.test(line) && /"password":"\[redacted\]"/.test(line) && /"token":"\[redacted\]"/.test(line), `tail line redacted: ${line}`);
  check(!/hunter2/.test(line), `the password is not in the tail: ${line}`);
  await shot(page, "console-02-admin.png");

  // 6. Disconnect bob: his dashboard shows the sign-in with 4101.
  step("the admin disconnects bob");
  await page.click("[data-testid=disconnect-bob]");
  await page.waitForFunction(() => {
    const r = document.querySelector("[data-testid=action-result]");
    return r.dataset.action === "disconnect" && r.dataset.connections === "1";
  }, null, { timeout: 10000 });
  const bobReason = await signedOut(bob, "bob", /close 4101/);
  step(`bob's dashboard: "${bobReason}"`);

  // 7. Revoke alice: her Go client and her dashboard stop with 4102.
  step("the admin revokes alice's tokens");
  await page.fill("[data-testid=target-user]", "alice");
  await page.click("[data-testid=do-revoke]");
  await page.waitForFunction(() => {
    const r = document.querySelector("[data-testid=action-result]");
    return r.dataset.action === "revoke" && r.dataset.connections === "2";
  }, null, { timeout: 10000 });
  const closed = await ask("@@goclient-closed");
  check(closed === "@@closed 4102 refused", `alice's Go client: ${closed}, want "@@closed 4102 refused"`);
  const aliceReason = await signedOut(alice, "alice", /close 4102/);
  step(`alice's dashboard: "${aliceReason}"`);

  // 8. The counts follow.
  await page.waitForFunction(() => !document.querySelector('[data-testid=rooms] tr[data-room="staff"]'), null, { timeout: 10000 });
  step(`staff has no member left (members cell: ${await roomMembers(page, "staff")})`);
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=actions] li").length >= 2, null, { timeout: 10000 });
  const actions = await page.textContent("[data-testid=actions]");
  check(/admin revoke alice 200/.test(actions) && /admin disconnect bob 200/.test(actions), `action log: ${actions}`);
  await shot(page, "console-03-after.png");

  // 9. The session cookie is out of the page's reach.
  const cookies = await ctx.cookies();
  const sess = cookies.find((c) => c.name === "rthub_console");
  check(sess && sess.httpOnly && sess.sameSite === "Strict" && sess.path === "/console/", `session cookie: ${JSON.stringify(sess && { ...sess, value: "…" })}`);
  check((await page.evaluate(() => document.cookie)) === "", "document.cookie is empty");

  // 10. The scan.
  step(`scanning what the console page saw for ${tokens.size} tokens`);
  seen.push(["DOM", await page.content()]);
  seen.push(["URL", page.url()]);
  seen.push(["localStorage", await page.evaluate(() => JSON.stringify({ ...localStorage }))]);
  seen.push(["sessionStorage", await page.evaluate(() => JSON.stringify({ ...sessionStorage }))]);
  await Promise.allSettled(pending);
  check(tokens.size === 4, `four tokens issued (bob, alice, alice's Go client, the admin's publish): ${tokens.size}`);
  let bodies = 0;
  for (const [where, text] of seen) {
    if (where.startsWith("response body")) bodies++;
    for (const t of tokens) check(!text.includes(t), `a token appears in the console page's ${where}`);
    const jwt = text.match(jwtShape);
    check(!jwt, `something shaped like a JWT appears in the console page's ${where}: ${jwt && jwt[0].slice(0, 20)}…`);
  }
  check(bodies >= 20 && seen.some(([w]) => w === "websocket") === false, `scanned ${seen.length} items, ${bodies} response bodies, no WebSocket`);
  step(`scanned ${seen.length} items (${bodies} response bodies): no token`);

  check(errors.length === 0, "no page errors:\n" + errors.join("\n"));
  console.log("PASS");
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log("FAIL: " + (e.stack || e));
  if (errors.length) console.log("page errors:\n" + errors.join("\n"));
  let i = 0;
  for (const c of browser.contexts()) for (const p of c.pages()) await p.screenshot({ path: join(artifacts, `console-failure-${i++}.png`), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
