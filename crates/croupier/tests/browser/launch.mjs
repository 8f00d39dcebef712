// What every browser check shares: its --name value arguments, Debian's chromium launched
// headless through playwright-core, expectations that fail with what was seen so far, and the
// dashboard's sign-in with the ops token.
import { chromium } from "playwright-core";

export const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? pairs.concat([[arg.slice(2), all[i + 1]]]) : pairs), []),
);

// What the check saw: printed as its one JSON line, and in every failed expectation.
export const seen = {};

export function expect(condition, what) {
  if (!condition) throw new Error("expected " + what + "; saw " + JSON.stringify(seen));
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

// `name` (optional) is who the audit log records: session:<name>.
export async function signIn(page, control, token, name) {
  await page.goto(control + "/login");
  await page.fill("input[name=token]", token);
  if (name) await page.fill("input[name=name]", name);
  await Promise.all([page.waitForURL("**/dashboard"), page.click("button[type=submit]")]);
}
