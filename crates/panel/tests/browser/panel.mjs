// Drives the panel's web pages in Debian's headless Chromium, as a customer would.
//
//   node panel.mjs URL LOGIN PASSWORD SCREENSHOT.png SERVER_NAME
//
// Logs in through the login form, creates a firewall, tries a rule with a bad
// source (the error must show next to the field), adds the SSH preset, enables
// the firewall, assigns the server and checks that its status reads "pending"
// (no edge runs), takes a full-page screenshot, reads the audit log and logs
// out; then checks that a `next` with a tab (which browsers drop) never leads
// off the panel, after a login or when already logged in. Prints one JSON line ({"firewall_id": N}) for the Rust test
// (tests/browser.rs), which then checks the store. Any failed step exits 1.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, login, password, screenshot, serverName] = process.argv.slice(2);
if (!url || !login || !password || !screenshot || !serverName) {
  console.error("usage: node panel.mjs URL LOGIN PASSWORD SCREENSHOT.png SERVER_NAME");
  process.exit(2);
}

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Without these, Chromium tries to reach Google's services and fails on a
// closed network.
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.error(`ok: ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), "portwall-chromium-"));
let context;
try {
  // A fresh profile directory (Playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Script errors, CSP violations, and any asset (stylesheet, script, icon)
  // that fails to load. Pages themselves may answer 4xx on purpose (a form
  // with an error is 422), so only failed sub-resources count.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && r.request().resourceType() !== "document") {
      problems.push(`${r.status()} for ${r.url()}`);
    }
  });
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  page.on("dialog", (d) => d.accept());

  // Not logged in: / leads to the login form.
  await page.goto(`${url}/`);
  check(new URL(page.url()).pathname === "/login", "/ redirects to /login");
  await page.fill("#login", login);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL("**/firewalls"), page.click("button:has-text('Log in')")]);
  check(await page.isVisible("text=You have no firewalls yet"), "logged in, empty firewall list");

  // Create a firewall.
  await page.fill("#create-name", "web-frontends");
  await page.fill("#create-description", "the public web servers");
  await Promise.all([
    page.waitForURL(/\/firewalls\/\d+/),
    page.click("button:has-text('Create firewall')"),
  ]);
  const firewallId = Number(new URL(page.url()).pathname.split("/")[2]);
  check(firewallId > 0, `firewall ${firewallId} created`);
  check((await page.textContent(".page-head .pill")).trim() === "inactive", "new firewall is inactive");

  // A bad source: the error shows next to the field, and what was typed stays.
  await page.selectOption("#rule-protocol", "tcp");
  await page.fill("#rule-port", "22");
  await page.fill("#rule-sources", "203.0.113.300/24");
  await page.click("button:has-text('Add rule')");
  await page.waitForSelector("#rule-sources-error");
  const err = await page.textContent("#rule-sources-error");
  check(err.includes("203.0.113.300/24") && err.includes("is not an IP address"), `error next to the field: ${err}`);
  check((await page.inputValue("#rule-sources")) === "203.0.113.300/24", "typed value kept");
  check((await page.getAttribute("#rule-sources", "aria-invalid")) === "true", "field marked invalid");
  check(await page.isVisible("text=No rules yet"), "nothing stored");

  // Add the SSH preset (the script greys out protocol and port).
  await page.selectOption("#rule-preset", "SSH");
  check(await page.isDisabled("#rule-port"), "preset disables the port field");
  await page.fill("#rule-sources", "203.0.113.0/24");
  await page.fill("#rule-description", "admin access");
  await Promise.all([
    page.waitForURL(/done=rule-added/),
    page.click("button:has-text('Add rule')"),
  ]);
  const ruleRow = page.locator("#rules tbody tr").first();
  const ruleText = await ruleRow.innerText();
  check(/TCP/.test(ruleText) && /\b22\b/.test(ruleText) && ruleText.includes("203.0.113.0/24"), `rule row: ${ruleText.replace(/\s+/g, " ")}`);

  // Enable it.
  await Promise.all([
    page.waitForURL(/done=enabled/),
    page.locator(".page-head").getByRole("button", { name: "Enable", exact: true }).click(),
  ]);
  check((await page.textContent(".page-head .pill")).trim() === "active", "firewall is active");

  // Assign the server.
  const option = page.locator("#assign-server_id option", { hasText: serverName });
  const serverId = await option.getAttribute("value");
  await page.selectOption("#assign-server_id", serverId);
  await Promise.all([
    page.waitForURL(/done=assigned/),
    page.click("form:has(#assign-server_id) button[type=submit]"),
  ]);
  const row = page.locator(`#servers tr[data-server-id="${serverId}"]`);
  const rowText = await row.innerText();
  check(rowText.includes(serverName), `server ${serverName} (#${serverId}) assigned`);
  const status = (await row.locator("td.status").innerText()).trim();
  check(status === "pending", `server status reads "${status}" (no edge runs)`);

  await page.screenshot({ path: screenshot, fullPage: true });
  check(true, `screenshot ${screenshot}`);

  // The audit log shows what was done.
  await page.click("nav a:has-text('Audit log')");
  await page.waitForURL("**/audit");
  const audit = await page.textContent("main");
  for (const action of ["firewall.create", "rule.create", "firewall.enable", "assignment.create"]) {
    check(audit.includes(action), `audit log lists ${action}`);
  }

  // Log out.
  await Promise.all([page.waitForURL("**/login"), page.click("button:has-text('Log out')")]);
  await page.goto(`${url}/firewalls`);
  check(new URL(page.url()).pathname === "/login", "logged out");

  // No open redirect: browsers drop tabs and newlines in a URL and read "\"
  // as "/", so a `next` of "/<TAB>/evil.example" would lead to
  // //evil.example. The login form (with its CSRF token and cookie) must
  // land on this panel, whatever `next` says.
  const origin = new URL(url).origin;
  await page.goto(`${url}/login?next=/%09/evil.example`);
  check((await page.inputValue("input[name=next]")) === "/firewalls", "a tab in next is not put in the form");
  await page.$eval("input[name=next]", (e) => { e.value = "/\t/evil.example"; });
  await page.fill("#login", login);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL("**/firewalls"), page.click("button:has-text('Log in')")]);
  check(new URL(page.url()).origin === origin, `a posted next with a tab stays on the panel (${page.url()})`);
  for (const next of ["%09/evil.example", "/%09/evil.example", "/%5Cevil.example", "/%0A/evil.example"]) {
    await page.goto(`${url}/login?next=${next}`);
    const at = new URL(page.url());
    check(at.origin === origin && at.pathname === "/firewalls", `logged in, /login?next=${next} stays on the panel (${page.url()})`);
  }
  await Promise.all([page.waitForURL("**/login"), page.click("button:has-text('Log out')")]);

  check(problems.length === 0, `no script or CSP errors ${problems.join("; ")}`);
  console.log(JSON.stringify({ firewall_id: firewallId, server_id: Number(serverId) }));
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
