// Drives Debian's chromium (headless, through playwright-core) for crates/croupier/tests/sla.rs:
// signs in to the dashboard with the ops token, follows its "SLA report: last month" link,
// reads the summary table and prints the report to PDF (A4, print CSS) as --out/sla-report.pdf.
// Prints one JSON line with what it saw; exits non-zero on the first failed expectation.
import { args, expect, launch, seen, signIn } from "./launch.mjs";

const { control, token, out } = args;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await signIn(page, control, token);
  await Promise.all([page.waitForURL("**/api/v1/sla?**"), page.click("#sla-last-month")]);
  seen.url = page.url();
  seen.title = await page.locator("h1").textContent();
  expect(seen.title === "Service level report", "the report's heading");
  seen.rows = await page.locator("#summary tbody tr").count();
  seen.wallet = await page.locator("#summary tr[data-component=wallet] td").allTextContents();
  seen.incident_links = await page.locator("table.incidents a").count();
  expect(seen.incident_links > 0, "postmortem links");
  await page.pdf({ path: out + "/sla-report.pdf", format: "A4", printBackground: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
