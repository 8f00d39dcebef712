// Drives Debian's chromium (headless, through playwright-core) over the control plane's
// pages, for crates/croupier/tests/pages.rs: the status page renders its components, uptime
// bars and the active incident; the feeds answer; the dashboard signs in, draws live charts
// from real data and drains a node with its button. Screenshots of both pages go to --out.
// Prints one JSON line with what it saw; exits non-zero on the first failed expectation.
import { args, expect, launch, seen } from "./launch.mjs";

const { control, token, out, drain, incident } = args;
// The control plane backs up a SQLite ledger itself; a PostgreSQL one is pgBackRest's.
const backups = args.backups !== "none";
const charts = Number(args.charts);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });

  // The status page: six components, 90 bars each, today's bar has data, the incident shows.
  await page.goto(control + "/status");
  seen.components = await page.locator(".component").count();
  expect(seen.components === 6, "six components");
  seen.bars = await page.locator(".component[data-component=wallet] .bar").count();
  expect(seen.bars === 90, "90 uptime bars");
  seen.today = await page.locator(".component[data-component=wallet] .bar").last().getAttribute("class");
  expect(!seen.today.includes("none"), "today's bar to have data");
  seen.incident = await page.locator("#incidents .incident h3").first().textContent();
  expect(seen.incident === incident, "the active incident");
  seen.slot = await page.locator(".component[data-component=slot] .state").textContent();
  seen.maintenance = await page.locator("#maintenance .window h3").first().textContent();
  expect(seen.maintenance === "Roulette wheel upgrade", "the scheduled maintenance");
  await page.screenshot({ path: out + "/status-page.png", fullPage: true });

  const atom = await (await page.request.get(control + "/status/feed.atom")).text();
  expect(atom.includes("<entry>") && atom.includes(incident), "the incident in the Atom feed");
  const feed = await (await page.request.get(control + "/status/feed.json")).json();
  expect(feed.items.some(i => i.title.includes(incident)), "the incident in the JSON feed");

  // The dashboard sends strangers to the sign-in, and takes the ops token.
  await page.goto(control + "/dashboard");
  expect(page.url().endsWith("/login"), "a redirect to /login");
  await page.fill("input[name=token]", "not the token");
  await page.click("button[type=submit]");
  seen.refused = await page.locator(".error").textContent();
  await page.fill("input[name=token]", token);
  await Promise.all([page.waitForURL("**/dashboard"), page.click("button[type=submit]")]);
  seen.errors_before_sign_in = errors.splice(0); // the refused token's 401 is expected

  // Live charts: every chart gets points, and more keep arriving each second.
  await page.waitForFunction(() => [...document.querySelectorAll("[data-chart]")].every(c => Number(c.dataset.points || 0) >= 3), null, { timeout: 20000 });
  const before = Number(await page.locator("#chart-cpu").getAttribute("data-points"));
  await page.waitForFunction(n => Number(document.querySelector("#chart-cpu").dataset.points) > n, before, { timeout: 10000 });
  seen.canvases = await page.locator(".chart canvas").count();
  expect(seen.canvases === charts, `${charts} drawn charts`);
  seen.nodes = await page.locator("#nodes tbody tr").count();
  expect(seen.nodes === 3, "three nodes");
  await page.waitForFunction(() => document.querySelectorAll("#slos tbody tr").length >= 4, null, { timeout: 10000 });
  seen.slos = await page.locator("#slos tbody tr").count();
  if (backups) {
    // The backups panel: the first restore test passed.
    await page.waitForFunction(() => document.querySelector("#backup-health .pill")?.textContent === "ok", null, { timeout: 20000 });
    seen.restore_tests = await page.locator("#backups tbody tr").count();
    expect(seen.restore_tests >= 1, "a restore test on the dashboard");
  }
  await page.screenshot({ path: out + "/dashboard.png", fullPage: true });

  // The drain button drains the node on the gateway, and the row says so.
  await page.click(`button.drain[data-node="${drain}"]`);
  await page.waitForFunction(name => document.querySelector(`#nodes tr[data-node="${name}"] .pill`)?.textContent === "draining", drain, { timeout: 10000 });
  seen.message = await page.locator("#node-message").textContent();
  expect(seen.message === `${drain} is now draining.`, "the drain to be confirmed");
  seen.undrain = await page.locator(`button.undrain[data-node="${drain}"]`).count();
  expect(seen.undrain === 1, "an undrain button in its place");
  seen.errors = errors;
  expect(errors.length === 0, "no errors in the page's console");
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
