// The dashboard's entry: the token form, the views (one shown at a time,
// chosen by the address's #fragment, so Back and bookmarks work), and a
// refresh of the jobs and /health every few seconds while the tab is open.

import { ApiError, forgetToken, get, keepToken, onRefused, token } from "./api.js";
import { renderOverview } from "./overview.js";
import { initRunning, syncRunning, watch } from "./running.js";
import { initHistory, loadHistory, renderSchedules } from "./history.js";
import { loadCharts } from "./charts.js";
import { initSnapshots, loadSnapshots } from "./snapshots.js";

const VIEWS = ["overview", "running", "history", "charts", "snapshots"];
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

/** What the views share: the latest /api/jobs and /health, and what they may ask for. */
const ctx = {
  jobs: [],
  health: null,
  refresh,
  notice,
  watch: (id, what, done) => watch(id, what, ctx, done),
  ended: () => {
    refresh();
    if (current() === "history") loadHistory();
  },
};

let timer = null;

function current() {
  const v = location.hash.slice(1);
  return VIEWS.includes(v) ? v : "overview";
}

/** A line in the live region: what an action did, or why it failed. */
function notice(text, problem = false) {
  const n = $("notice");
  n.textContent = text;
  n.classList.toggle("error", problem);
}

function show(view, focus) {
  for (const v of VIEWS) {
    $(`view-${v}`).hidden = v !== view;
    const link = $(`nav-${v}`);
    if (v === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `arca: ${view}`;
  notice(""); // what an action in another view said is no longer in sight
  if (view === "history") loadHistory();
  if (view === "charts") loadCharts(ctx);
  if (view === "snapshots") loadSnapshots(ctx);
  // After a click on a view's link, reading starts at its heading.
  if (focus) $(`h-${view}`).focus({ preventScroll: true });
}

async function refresh() {
  try {
    const [jobs, health] = await Promise.all([get("/api/jobs"), fetch("/health", { cache: "no-store" }).then((r) => r.json())]);
    ctx.jobs = jobs.jobs;
    ctx.health = health;
    await renderOverview(ctx);
    renderSchedules(ctx);
    syncRunning(ctx);
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) notice(`The daemon did not answer: ${e.message}`, true);
  }
}

function signedIn() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  show(current(), false);
  refresh();
  clearInterval(timer);
  timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

function signIn(why) {
  clearInterval(timer);
  for (const v of VIEWS) $(`view-${v}`).hidden = true;
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why ?? "";
  $("token").focus();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  keepToken(t);
  try {
    await get("/api/jobs");
    $("token").value = "";
    signedIn();
  } catch (e) {
    forgetToken();
    $("login-error").textContent =
      e instanceof ApiError && e.status === 401 ? "The daemon refused this token: copy the first line of its token file." : `The daemon did not answer: ${e.message}`;
  }
});

$("signout").addEventListener("click", () => {
  forgetToken();
  signIn("Signed out.");
});

onRefused(() => {
  forgetToken();
  signIn("The daemon refused the token (it may have changed): paste it again.");
});

window.addEventListener("hashchange", () => {
  if (token()) show(current(), true);
});

for (const v of VIEWS) $(`h-${v}`).tabIndex = -1;
$("charts-refresh").addEventListener("click", () => loadCharts(ctx));
initRunning(ctx);
initHistory(ctx);
initSnapshots(ctx);
if (token()) signedIn();
else signIn();
