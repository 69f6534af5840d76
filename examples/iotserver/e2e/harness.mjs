// Shared setup of the browser scenarios (dashboard.mjs, session.mjs), which
// browser_test.go runs: the environment (BASE_URL, ARTIFACTS, CHROMIUM), the
// stdin/stdout request protocol with the test ("@@…" lines), steps,
// screenshots, checks, and Debian's Chromium with its pages' errors
// collected.

import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
export { join };

export const base = process.env.BASE_URL;
export const artifacts = process.env.ARTIFACTS || "artifacts";
mkdirSync(artifacts, { recursive: true });

const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => waiting.shift()?.(l.trim()));
export const ask = (msg) =>
  new Promise((resolve) => {
    waiting.push(resolve);
    console.log(msg);
  });

export const step = (msg) => console.log(`step: ${msg}`);
export const shot = async (page, name) => {
  const path = join(artifacts, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
};
export function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}

export const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
export const errors = [];
export async function newPage(who) {
  const ctx = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => errors.push(`${who}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource|WebSocket connection/.test(m.text())) errors.push(`${who}: console: ${m.text()}`);
  });
  return page;
}
