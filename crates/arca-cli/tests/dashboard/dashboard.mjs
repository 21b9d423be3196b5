// The dashboard driven in headless Chromium by Playwright, as a person uses
// it. Run by crates/arca-cli/tests/cli/dashboard.rs, which starts the daemon
// and its jobs (home: two backups; broken: failed; never: never run; slow:
// a source that writes for a few seconds) and passes, in the environment:
// DASHBOARD_URL, DASHBOARD_TOKEN, DASHBOARD_SRC (home's source folder),
// DASHBOARD_RESTORE (a folder to restore into), DASHBOARD_OUT (screenshots).
// Every check throws on failure (exit 1); the last line of stdout is a JSON
// report for the Rust test, which checks the files.

import { createRequire } from "node:module";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(import.meta.url);
// NODE_PATH (the test's node_modules) is honoured by require, not by import.
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const URL_ = env("DASHBOARD_URL");
const TOKEN = env("DASHBOARD_TOKEN");
const SRC = env("DASHBOARD_SRC");
const RESTORE = env("DASHBOARD_RESTORE");
const OUT = env("DASHBOARD_OUT");
const report = { screenshots: [] };
const began = Date.now();
const step = (s) => console.error(`[dashboard ${((Date.now() - began) / 1000).toFixed(1)} s] ${s}`);
/** Waits until `f()` is true (polled), or fails saying `what`. */
async function until(f, what, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    const got = await f();
    if (got === true) return;
    if (Date.now() > end) throw new Error(`${what}: ${JSON.stringify(got)}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

const browser = await chromium.launch({
  executablePath: env("ARCA_TEST_CHROMIUM"),
  headless: true,
  // As root Chromium needs --no-sandbox; without the network flags it
  // tries to reach Google's hosts, which a closed network refuses.
  args: [
    ...(process.getuid() === 0 ? ["--no-sandbox"] : []),
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    "--disable-quic",
  ],
});
const timer = setTimeout(() => {
  console.error("[dashboard] took more than 100 s");
  process.exit(3);
}, 100_000);

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  // Errors of the page itself: a script error, a refused script or style (CSP).
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[14]/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  // A blank page that decodes screenshots, in a context of its own; the
  // page under test stays in front (a tab behind gets no animation frames,
  // and Playwright waits for those before each click).
  const probe = await (await browser.newContext()).newPage();
  await page.bringToFront();
  async function shot(view, target = page) {
    const file = path.join(OUT, `${view}.png`);
    const png = await target.screenshot({ path: file, fullPage: true });
    const colors = await probe.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement("canvas");
      [c.width, c.height] = [img.width, img.height];
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      for (let i = 0; i < d.length && seen.size < 10000; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      return seen.size;
    }, png.toString("base64"));
    report.screenshots.push({ view, file, bytes: png.length, colors });
  }
  /** An API call from the page, with the token it keeps. */
  const apiGet = (p) =>
    page.evaluate(async (p) => (await fetch(p, { headers: { Authorization: `Bearer ${sessionStorage.getItem("arca-token")}` } })).json(), p);

  step("the token is asked for, and data needs it");
  await page.goto(`${URL_}/`);
  await page.locator("#login-form").waitFor();
  assert.equal(await page.locator("#nav").isHidden(), true, "no views before the token");
  assert.equal(await page.evaluate(() => fetch("/api/jobs").then((r) => r.status)), 401, "no token: refused");
  assert.equal(
    await page.evaluate(() => fetch("/api/jobs", { headers: { Authorization: "Bearer wrong-token-0123456789" } }).then((r) => r.status)),
    401,
  );
  // A wrong token is refused by the form and not kept.
  await page.getByLabel("API token").fill("not-the-token-0123456789");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#login-error").filter({ hasText: "refused" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("arca-token")), null);
  await shot("login");
  await page.getByLabel("API token").fill(TOKEN);
  await page.keyboard.press("Enter");
  await page.locator("body[data-loaded=true]").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("arca-token")), TOKEN, "kept in sessionStorage");
  assert.ok(!page.url().includes(TOKEN), `the token is in the address: ${page.url()}`);
  assert.equal(await page.evaluate(() => document.cookie), "", "no cookie");
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  // Asked once: a reload keeps it (the tab's session).
  await page.reload();
  await page.locator("body[data-loaded=true]").waitFor();
  assert.equal(await page.locator("#login").isHidden(), true, "asked again after a reload");

  step("overview: each job's state, the failed one stands out");
  const row = (job) => page.locator(`#jobs tbody tr[data-job="${job}"]`);
  await row("never").waitFor();
  assert.equal(await row("home").getAttribute("data-state"), "ok");
  assert.equal(await row("broken").getAttribute("data-state"), "failed");
  assert.equal(await row("never").getAttribute("data-state"), "never");
  assert.equal(await row("slow").getAttribute("data-state"), "never");
  assert.match((await row("broken").getAttribute("class")) ?? "", /\bproblem\b/, "the failed job is marked");
  assert.doesNotMatch((await row("home").getAttribute("class")) ?? "", /\bproblem\b/);
  assert.equal(await row("never").getAttribute("class"), "attention", "never backed up: marked, less than a failure");
  // The state in words, not colour alone.
  assert.match(await row("broken").locator(".badge").innerText(), /failed/);
  const failedBg = await row("broken").evaluate((e) => getComputedStyle(e).backgroundColor);
  const okBg = await row("home").evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.notEqual(failedBg, okBg, "the failed row looks different");
  assert.match(await row("home").locator('[data-destination="local"]').getAttribute("class"), /dest-ok/);
  assert.match(await row("broken").locator('[data-destination="missing"]').getAttribute("class"), /dest-bad/);
  assert.match(await page.locator("#verdict").getAttribute("class"), /verdict-bad/);
  assert.match(await page.locator("#verdict").innerText(), /broken/);
  assert.match(await row("home").locator("td").nth(1).innerText(), /ago|just now/, "last success age");
  assert.match(await row("home").locator("td").nth(2).innerText(), /\d{4}-\d\d-\d\d \d\d:\d\d/, "next run");
  await shot("overview");

  step("keyboard: every view is reached by Tab, and each has its label");
  await page.evaluate(() => document.activeElement?.blur());
  await page.locator("body").focus();
  const reached = [];
  for (let i = 0; i < 12 && reached.length < 5; i++) {
    await page.keyboard.press("Tab");
    const id = await page.evaluate(() => document.activeElement?.id ?? "");
    if (id.startsWith("nav-")) reached.push(id);
  }
  assert.deepEqual(reached, ["nav-overview", "nav-running", "nav-history", "nav-charts", "nav-snapshots"]);
  await page.keyboard.press("Shift+Tab"); // back to Charts, opened by Enter
  await page.keyboard.press("Enter");
  await page.locator("#view-charts").waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "h-charts", "the view's heading takes the focus");
  for (const v of ["overview", "running", "history", "charts", "snapshots"]) {
    const label = await page.locator(`#view-${v}`).getAttribute("aria-labelledby");
    assert.ok((await page.locator(`#${label}`).innerText()).trim().length > 0, `${v} has a label`);
  }
  assert.equal(await page.locator("header").count(), 1);
  assert.equal(await page.locator("main").count(), 1);
  assert.equal(await page.locator('nav[aria-label="Views"]').count(), 1);

  step("run now: slow's progress moves live, then its result");
  await page.getByRole("link", { name: "Overview" }).click();
  await row("slow").getByLabel("Strategy of the run of slow").selectOption("full");
  await row("slow").getByRole("button", { name: "Run slow now" }).click();
  await page.locator("#notice").filter({ hasText: /run \d+ queued/ }).waitFor();
  const runId = Number(/run (\d+) queued/.exec(await page.locator("#notice").innerText())[1]);
  await page.getByRole("link", { name: /Running/ }).click();
  const card = page.locator(`#runs-live article[data-run="${runId}"]`);
  await card.locator('[data-field="phase"]').filter({ hasText: "backing up" }).waitFor();
  const bytesNow = () => card.locator('[data-field="bytes"]').innerText();
  const first = await bytesNow();
  let moved = first;
  for (let i = 0; i < 80 && moved === first; i++) {
    await page.waitForTimeout(100);
    moved = await bytesNow();
  }
  assert.notEqual(moved, first, "the progress did not move");
  assert.match(moved, /^\d+(\.\d+)? (B|KiB|MiB)$/);
  assert.match(await card.locator('[data-field="rate"]').innerText(), /\/s$/);
  assert.match(await card.locator("h3").innerText(), /backup \(full\) of slow/);
  await shot("running");
  const ended = page.locator(`#runs-ended article[data-run="${runId}"]`);
  await ended.waitFor({ timeout: 30_000 });
  assert.equal(await ended.getAttribute("data-status"), "succeeded", await ended.innerText());
  assert.match(await ended.locator('[data-field="result"]').innerText(), /succeeded in .*: 1 file, .* read/);
  // Cancel: started again, and stopped from its card.
  await page.getByRole("link", { name: "Overview" }).click();
  await row("slow").getByRole("button", { name: "Run slow now" }).click();
  await page.locator("#notice").filter({ hasText: new RegExp(`run (?!${runId}\\b)\\d+ queued`) }).waitFor();
  const again = Number(/run (\d+) queued/.exec(await page.locator("#notice").innerText())[1]);
  await page.getByRole("link", { name: /Running/ }).click();
  const second = page.locator(`#runs-live article[data-run="${again}"]`);
  await second.locator('[data-field="phase"]').filter({ hasText: "backing up" }).waitFor();
  await second.getByRole("button", { name: `Cancel run ${again}` }).click();
  const cancelled = page.locator(`#runs-ended article[data-run="${again}"]`);
  await cancelled.waitFor({ timeout: 30_000 });
  assert.equal(await cancelled.getAttribute("data-status"), "cancelled");
  await page.getByRole("link", { name: "Overview" }).click();
  await row("slow").locator(".badge").filter({ hasText: /^ok$/ }).waitFor({ timeout: 15_000 });

  step("charts: one point per measured size, axes with units and dates");
  await page.getByRole("link", { name: "Charts" }).click();
  // A measurement may land while the chart is drawn: drawn again until the
  // sizes before and after agree.
  const points = page.locator('[data-chart="size"] circle.point');
  let sizes = [];
  for (let settled = false, i = 0; !settled; i++) {
    const before = (await apiGet("/api/sizes")).sizes;
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.locator("#charts:not([aria-busy])").waitFor();
    sizes = (await apiGet("/api/sizes")).sizes;
    settled = before.length === sizes.length;
    assert.ok(settled || i < 3, "the sizes keep changing");
  }
  assert.equal(await points.count(), sizes.length, "a point per measurement");
  const local = sizes.filter((s) => s.destination === "local").length;
  assert.ok(local >= 2, `two backups of home, ${local} measurements`);
  assert.equal(await page.locator('[data-chart="size"] g[data-series="local"] circle.point').count(), local);
  const yLabels = await page.locator('[data-chart="size"] .axes text').allTextContents();
  assert.ok(yLabels.some((t) => /^\d+(\.\d+)? (B|KiB|MiB|GiB)$/.test(t)), `byte units: ${yLabels}`);
  assert.ok(yLabels.some((t) => /^(\d\d:\d\d|\d\d-\d\d \d\d:\d\d|\d{4}-\d\d-\d\d)$/.test(t)), `dates: ${yLabels}`);
  const ok = (await apiGet("/api/runs?task=backup&status=succeeded&limit=1000")).runs.length;
  assert.equal(await page.locator('[data-chart="added"] rect.bar').count(), ok, "a bar per backup that succeeded");
  const durations = await page.locator('[data-chart="duration"] .axes text').allTextContents();
  assert.ok(durations.some((t) => /^\d+(\.\d+)? (s|min|h)$/.test(t)), `duration units: ${durations}`);
  await shot("charts");

  step("history: runs with filters, schedules with their success rate");
  await page.getByRole("link", { name: "History" }).click();
  await page.locator("#runs tbody tr[data-run]").first().waitFor();
  const all = (await apiGet("/api/runs?limit=50")).runs;
  assert.equal(await page.locator("#runs tbody tr[data-run]").count(), all.length);
  const filter = page.locator("#history-filter");
  const shown = () => page.locator("#runs tbody tr[data-run]").evaluateAll((rs) => rs.map((r) => `${r.children[1].textContent} ${r.dataset.status}`));
  await filter.getByLabel("Status").selectOption("failed");
  await until(async () => JSON.stringify(await shown()) === JSON.stringify(["broken failed"]) || (await shown()), "only the failed run");
  await filter.getByLabel("Status").selectOption("");
  await filter.getByLabel("Job").selectOption("home");
  await until(async () => JSON.stringify(await shown()) === JSON.stringify(["home succeeded", "home succeeded"]) || (await shown()), "home's two backups");
  assert.match(await page.locator('#schedules tr[data-job="home"]').innerText(), /100 %/);
  await shot("history");

  step("snapshots: browse the folders, download a file, restore a folder, verify");
  await page.getByRole("link", { name: "Snapshots" }).click();
  await page.locator("#snapshots-pick").getByLabel("Job").selectOption("home");
  await until(async () => (await page.locator('#snapshot-lists [data-destination="local"] h2').innerText().catch(() => "")).includes("2 snapshots"), "home's snapshots");
  const browse = page.locator('#snapshot-lists [data-destination="local"] tbody tr').first().getByRole("button", { name: /^Browse/ });
  await browse.click();
  // It opens at the snapshot's source folder; the breadcrumb leads up.
  await page.locator("#entries-caption").filter({ hasText: `${SRC} in snapshot` }).waitFor();
  assert.deepEqual(await page.locator("#crumbs button").allInnerTexts(), ["/", ...SRC.split("/").filter(Boolean)]);
  const listed = (await page.locator("#entries tbody tr[data-entry]").evaluateAll((rs) => rs.map((r) => r.dataset.entry))).sort();
  assert.deepEqual(listed, fs.readdirSync(SRC).sort(), "the snapshot's folder lists the source's entries");
  assert.equal(await page.locator('#entries tr[data-entry="docs"]').getAttribute("data-type"), "dir");
  step("download");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download photo.bin" }).click()]);
  assert.equal(download.suggestedFilename(), "photo.bin");
  report.download = path.join(OUT, "photo.bin");
  report.downloaded_from = "photo.bin";
  await download.saveAs(report.download);
  assert.ok(fs.readFileSync(report.download).equals(fs.readFileSync(path.join(SRC, "photo.bin"))), "downloaded bytes differ");
  // A file in a folder below, whose name has glob characters.
  await page.getByRole("button", { name: "Open folder docs" }).click();
  await page.locator('#entries tr[data-entry="report [2026].txt"]').waitFor();
  const listedDocs = (await page.locator("#entries tbody tr[data-entry]").evaluateAll((rs) => rs.map((r) => r.dataset.entry))).sort();
  assert.deepEqual(listedDocs, fs.readdirSync(path.join(SRC, "docs")).sort());
  const [odd] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download report [2026].txt" }).click()]);
  const oddFile = path.join(OUT, "report.txt");
  await odd.saveAs(oddFile);
  assert.ok(fs.readFileSync(oddFile).equals(fs.readFileSync(path.join(SRC, "docs/report [2026].txt"))));
  step("restore");
  // Restore this folder (docs), from the breadcrumb back at the source.
  await page.locator("#crumbs").getByRole("button", { name: path.basename(SRC), exact: true }).click();
  await page.locator("#entries-caption").filter({ hasText: `${SRC} in snapshot` }).waitFor();
  await page.getByRole("button", { name: "Restore docs" }).click();
  assert.equal(await page.getByLabel("Path in the snapshot").inputValue(), `${SRC}/docs`);
  await page.getByLabel(/Target folder/).fill(RESTORE);
  await page.locator("#restore-form").getByRole("button", { name: "Restore" }).click();
  await page.locator("#restore-result[data-status]").waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#restore-result").getAttribute("data-status"), "succeeded", await page.locator("#restore-result").innerText());
  assert.match(await page.locator("#restore-result").innerText(), /succeeded.*: 3 files/);
  step("verify");
  // A verification of the structure (fast), its result shown.
  await page.getByLabel("Mode").selectOption("structure");
  await page.locator("#verify-form").getByRole("button", { name: "Verify" }).click();
  await page.locator("#verify-result[data-status]").waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#verify-result").getAttribute("data-status"), "succeeded", await page.locator("#verify-result").innerText());
  assert.match(await page.locator("#verify-result").innerText(), /no damage found/);
  await shot("snapshots");

  step("a narrow screen: no sideways scrolling in any view");
  await page.setViewportSize({ width: 390, height: 844 });
  for (const view of ["Snapshots", "Charts", "History", /Running/, "Overview"]) {
    await page.getByRole("link", { name: view }).click();
    await page.waitForTimeout(300);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    const wide = await page.evaluate(() =>
      [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > 391)
        .map((e) => `${e.tagName}#${e.id}.${e.className}`)
        .slice(0, 6)
        .join(" "),
    );
    assert.ok(width <= 390, `${view}: the page is ${width} px wide on a 390 px screen: ${wide}`);
  }
  await shot("overview-narrow");

  assert.deepEqual(problems, [], "errors in the page");
  await context.close();
} finally {
  clearTimeout(timer);
  await browser.close();
}
step("done");
console.log(JSON.stringify(report));
