// Drives the panel's web pages in Debian's headless Chromium, as a customer would.
//
//   node panel.mjs URL LOGIN PASSWORD SCREENSHOT.png SERVER_NAME
//
// Logs in through the login form, creates a firewall, tries a rule with a bad
// source (the error must show next to the field), adds the SSH preset, enables
// the firewall, assigns the server and checks that its status reads "pending"
// (no edge runs), takes a full-page screenshot, reads the audit log, creates
// an IP list and pastes its entries (first a block with a bad line, whose
// error must name the line, then a good one, whose entry count it checks)
// and logs out; then checks that a `next` with a tab (which browsers drop) never leads
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

  // IP lists: create one from the navigation, paste a block with a bad line
  // (the error names the line and nothing is stored), then a good block.
  await Promise.all([page.waitForURL("**/lists"), page.click("nav a:has-text('Lists')")]);
  check(await page.isVisible("text=You have no IP lists yet"), "empty Lists page");
  await page.fill("#create-name", "office");
  await page.fill("#create-description", "our offices");
  await Promise.all([page.waitForURL(/\/lists\/\d+/), page.click("button:has-text('Create list')")]);
  const listId = Number(new URL(page.url()).pathname.split("/")[2]);
  check(listId > 0, `list ${listId} created`);
  check((await page.textContent("#entry-count")).trim() === "0", "a new list has no entries");
  const badBlock = "# offices\n203.0.113.0/24\n198.51.100.300\n2001:db8::/32\n";
  await page.fill("#entries-text", badBlock);
  await page.click("button:has-text('Save entries')");
  await page.waitForSelector("#entries-text-error");
  const listErr = await page.textContent("#entries-text-error");
  check(listErr.includes("line 3") && listErr.includes("198.51.100.300") && listErr.includes("is not an address"),
    `the bad line is named: ${listErr}`);
  check((await page.inputValue("#entries-text")) === badBlock, "pasted text kept");
  check((await page.getAttribute("#entries-text", "aria-invalid")) === "true", "box marked invalid");
  check((await page.textContent("#entry-count")).trim() === "0", "nothing stored");
  const goodBlock = "# offices\n203.0.113.0/25\n203.0.113.128/25  # annex\n198.51.100.7\n\n2001:db8::/32\n";
  await page.fill("#entries-text", goodBlock);
  await Promise.all([page.waitForURL(/done=saved/), page.click("button:has-text('Save entries')")]);
  const entryCount = (await page.textContent("#entry-count")).trim();
  const rangeCount = (await page.textContent("#range-count")).trim();
  check(entryCount === "4" && rangeCount === "3", `4 entries in 3 kernel ranges (${entryCount}, ${rangeCount})`);
  const listShot = screenshot.replace(/\.png$/, "") + "-list.png";
  await page.screenshot({ path: listShot, fullPage: true });
  check(true, `screenshot ${listShot}`);
  await Promise.all([page.waitForURL("**/lists"), page.click("nav a:has-text('Lists')")]);
  const listRow = page.locator(`#lists tr[data-list-id="${listId}"]`);
  check((await listRow.locator("td.entries").innerText()).trim() === "4", "the Lists page shows the entry count");

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
  console.log(JSON.stringify({ firewall_id: firewallId, server_id: Number(serverId), list_id: listId }));
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
