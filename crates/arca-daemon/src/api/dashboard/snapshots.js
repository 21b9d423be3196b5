// Snapshots of a job on each destination; a snapshot's folders browsed one
// at a time, a file downloaded, a path restored into a folder of the
// daemon's machine, the latest snapshot verified. Restores and
// verifications are runs: their result shows here when they end.

import { api, download, get, query } from "./api.js";
import { bytes, el, time } from "./format.js";
import { outcome } from "./running.js";

const $ = (id) => document.getElementById(id);
/** What is being browsed: job, destination, snapshot id, folder. */
const at = { job: null, destination: null, snapshot: null, path: "/" };
// A choice made while a list is on its way: only the latest answer is shown.
let asked = 0;

/** A path as an include pattern that matches it alone (glob characters escaped). */
function pattern(path) {
  return path.replace(/[\\*?[\]{}]/g, "\\$&");
}

function snapshotTable(dest) {
  const rows = [...dest.snapshots]
    .sort((a, b) => b.timestamp.localeCompare(a.timestamp))
    .map((s) => {
      const browse = el("button", { type: "button", text: "Browse", "aria-label": `Browse snapshot ${s.short_id} on ${dest.destination}` });
      // Straight to what was backed up: the source folder when there is one.
      browse.addEventListener("click", () => browseTo(dest.destination, s.id, s.paths.length === 1 ? s.paths[0] : "/"));
      return el(
        "tr",
        { "data-snapshot": s.id },
        el("th", { scope: "row", "data-label": "Snapshot" }, el("code", { text: s.short_id })),
        el("td", { "data-label": "Taken" }, el("time", { datetime: s.timestamp, text: time(s.timestamp) })),
        el("td", { "data-label": "Strategy", text: s.strategy }),
        el("td", { "data-label": "Files", text: s.files.toLocaleString() }),
        el("td", { "data-label": "Size", text: bytes(s.size) }),
        el("td", { "data-label": "Paths", text: s.paths.join(", ") }),
        el("td", { "data-label": "Actions" }, browse),
      );
    });
  const head = ["Snapshot", "Taken", "Strategy", "Files", "Size", "Paths", "Actions"].map((h) => el("th", { scope: "col", text: h }));
  return el(
    "section",
    { class: "dest-snapshots", "data-destination": dest.destination, "aria-labelledby": `snaps-${dest.destination}` },
    el("h2", { id: `snaps-${dest.destination}`, text: `${dest.destination}: ${dest.snapshots.length} snapshot${dest.snapshots.length === 1 ? "" : "s"}` }),
    dest.error
      ? el("p", { class: "error", text: dest.error })
      : el("div", { class: "table-wrap" }, el("table", { class: "cards" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows))),
  );
}

export async function loadSnapshots(ctx) {
  const select = $("snapshots-job");
  const names = ctx.jobs.map((j) => j.name);
  if ([...select.options].map((o) => o.value).join("\n") !== names.join("\n")) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(chosen)) select.value = chosen;
  }
  const job = select.value;
  if (!job) return;
  const lists = $("snapshot-lists");
  lists.setAttribute("aria-busy", "true");
  const mine = ++asked;
  try {
    const r = await get(`/api/snapshots${query({ job })}`);
    if (mine !== asked) return;
    lists.replaceChildren(...r.destinations.map(snapshotTable));
    if (at.job !== job) $("browser").hidden = true;
    at.job = job;
    const dests = ctx.jobs.find((j) => j.name === job)?.config?.destinations ?? [];
    $("verify-destination").replaceChildren(el("option", { value: "", text: "every destination of the job" }), ...dests.map((d) => el("option", { value: d, text: d })));
    $("verify-form").hidden = false;
  } catch (e) {
    if (mine !== asked) return;
    lists.replaceChildren(el("p", { class: "error", text: `Could not list the snapshots: ${e.message}` }));
  } finally {
    if (mine === asked) lists.removeAttribute("aria-busy");
  }
}

function crumbs() {
  const parts = at.path.split("/").filter(Boolean);
  const links = [el("li", {}, crumb("/", "/"))];
  parts.forEach((p, i) => links.push(el("li", {}, crumb(p, `/${parts.slice(0, i + 1).join("/")}`))));
  $("crumbs").replaceChildren(el("ol", {}, links));
}

function crumb(text, path) {
  const b = el("button", { type: "button", class: "link", text });
  if (path === at.path) b.setAttribute("aria-current", "location");
  b.addEventListener("click", () => browseTo(at.destination, at.snapshot, path));
  return b;
}

async function save(entry) {
  const q = query({ destination: at.destination, path: entry.path });
  try {
    const { blob, name } = await download(`/api/snapshots/${encodeURIComponent(at.snapshot)}/file${q}`);
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name || entry.name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    document.getElementById("notice").textContent = `Download of ${entry.path}: ${e.message}`;
  }
}

function entryRow(e) {
  const actions = [];
  let name = el("span", { text: e.name });
  if (e.type === "dir") {
    name = el("button", { type: "button", class: "link", text: `${e.name}/`, "aria-label": `Open folder ${e.name}` });
    name.addEventListener("click", () => browseTo(at.destination, at.snapshot, e.path));
  } else if (e.type === "file") {
    const dl = el("button", { type: "button", text: "Download", "aria-label": `Download ${e.name}` });
    dl.addEventListener("click", () => save(e));
    actions.push(dl);
  }
  const restore = el("button", { type: "button", class: "quiet", text: "Restore…", "aria-label": `Restore ${e.name}` });
  restore.addEventListener("click", () => {
    $("restore-path").value = e.path;
    $("restore-target").focus();
  });
  actions.push(restore);
  return el(
    "tr",
    { "data-entry": e.name, "data-type": e.type },
    el("th", { scope: "row", "data-label": "Name" }, name),
    el("td", { "data-label": "Type", text: e.type }),
    el("td", { "data-label": "Size", text: e.type === "file" ? bytes(e.size) : "" }),
    el("td", { "data-label": "Modified", text: e.mtime ? time(e.mtime) : "" }),
    el("td", { "data-label": "Actions" }, el("div", { class: "actions" }, actions)),
  );
}

async function browseTo(destination, snapshot, path) {
  Object.assign(at, { destination, snapshot, path });
  $("browser").hidden = false;
  const tbody = document.querySelector("#entries tbody");
  try {
    const q = query({ destination, path });
    const t = await get(`/api/snapshots/${encodeURIComponent(snapshot)}/tree${q}`);
    at.snapshot = t.snapshot;
    at.path = t.path;
    crumbs();
    $("entries-caption").textContent = `${t.path} in snapshot ${t.snapshot.slice(0, 8)} on ${destination}`;
    tbody.replaceChildren(...t.entries.map(entryRow));
    if (!t.entries.length) tbody.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "This folder is empty." })));
    $("restore-path").value = t.path;
  } catch (e) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "error", text: `Could not read ${path}: ${e.message}` })));
  }
  $("h-browser").tabIndex = -1;
  $("h-browser").focus();
}

/** Starts a run by `post`, and shows its end in `out`. */
async function startRun(ctx, out, what, post) {
  out.className = "result";
  out.textContent = `${what}: starting…`;
  try {
    const r = await post();
    out.textContent = `${what}: run ${r.run_id} started…`;
    out.dataset.run = r.run_id;
    ctx.watch(r.run_id, {}, (doc) => {
      out.className = `result result-${doc.status}`;
      out.dataset.status = doc.status;
      out.textContent = `${what}, run ${r.run_id}: ${outcome(doc)}`;
    });
  } catch (e) {
    out.className = "result result-failed";
    out.textContent = `${what}: ${e.message}`;
  }
}

export function initSnapshots(ctx) {
  $("snapshots-pick").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadSnapshots(ctx);
  });
  $("snapshots-job").addEventListener("change", () => loadSnapshots(ctx));
  $("restore-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const path = $("restore-path").value.trim();
    const target = $("restore-target").value.trim();
    const body = { job: at.job, destination: at.destination, snapshot: at.snapshot, target };
    if (path && path !== "/") body.paths = [pattern(path)];
    startRun(ctx, $("restore-result"), `Restore of ${path || "/"}`, () => api("POST", "/api/restores", body));
  });
  $("verify-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const destination = $("verify-destination").value || undefined;
    const mode = $("verify-mode").value;
    startRun(ctx, $("verify-result"), `Verification (${mode}) of ${at.job}`, () => api("POST", "/api/verifications", { job: at.job, destination, mode }));
  });
}
