// Drives Debian's chromium (headless, through playwright-core) for crates/croupier/tests/oncall.rs:
// signs in to the dashboard with the ops token as --name, reads the On call panel (who is on
// call for --schedule now) and acknowledges the open page --page with its Acknowledge button; the
// row must then say "acknowledged" and offer no Acknowledge button.
// Prints one JSON line with what it saw; exits non-zero on the first failed expectation.
import { args, expect, launch, seen, signIn } from "./launch.mjs";

const { control, token, name, page: id, schedule } = args;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  // Script errors, and failed answers to the on-call panel's calls. (Other panels may fail
  // here: this control plane watches a killed node and no gateway, so /api/v1/nodes is a 502.)
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  seen.other_failures = [];
  page.on("response", r => {
    if (r.status() < 400) return;
    const failure = r.status() + " " + new URL(r.url()).pathname;
    if (/\/api\/v1\/(oncall|pages)/.test(r.url())) errors.push(failure);
    else if (!seen.other_failures.includes(failure)) seen.other_failures.push(failure);
  });
  await signIn(page, control, token, name);

  const row = `#pages tr[data-page="${id}"]`;
  await page.waitForSelector(`${row} button.ack`, { timeout: 10000 });
  seen.on_call = await page.locator(`#oncall tr[data-schedule="${schedule}"] .now`).textContent();
  seen.before = await page.locator(`${row} .pill`).textContent();
  expect(seen.before === "open", "the page open before the click");

  await page.click(`${row} button.ack`);
  await page.waitForFunction(r => document.querySelector(r + " .pill")?.textContent === "acknowledged", row, { timeout: 10000 });
  seen.message = await page.locator("#page-message").textContent();
  expect(seen.message === `Page #${id} acknowledged.`, "the acknowledgement confirmed");
  seen.ack_buttons = await page.locator(`${row} button.ack`).count();
  expect(seen.ack_buttons === 0, "no Acknowledge button on an acknowledged page");
  seen.errors = errors;
  expect(errors.length === 0, "no script errors and no failed on-call calls");
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
