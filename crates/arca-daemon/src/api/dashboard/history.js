// The run history (GET /api/runs with the job, task and status filters,
// paged back with `before`) and each schedule line's success rate.

import { get, query } from "./api.js";
import { age, between, bytes, duration, el, percent, time } from "./format.js";

const PAGE = 50;
const $ = (id) => document.getElementById(id);
let oldest = null;
// Filters change faster than the daemon answers: only the latest answer is shown.
let asked = 0;

function filters() {
  const f = new FormData($("history-filter"));
  return { job: f.get("job"), task: f.get("task"), status: f.get("status") };
}

function runRow(r) {
  const task = r.strategy ? `${r.task} (${r.strategy})` : r.task;
  return el(
    "tr",
    { "data-run": r.id, "data-status": r.status, class: r.status === "failed" ? "problem" : "" },
    el("th", { scope: "row", "data-label": "Run", text: r.id }),
    el("td", { "data-label": "Job", text: r.job }),
    el("td", { "data-label": "Task", text: task }),
    el("td", { "data-label": "Result" }, el("span", { class: `badge badge-${r.status}`, text: r.status })),
    el("td", { "data-label": "Started" }, r.started_at ? el("time", { datetime: r.started_at, text: time(r.started_at) }) : `queued ${time(r.queued_at)}`),
    el("td", { "data-label": "Duration", text: duration(between(r.started_at, r.finished_at)) }),
    el("td", { "data-label": "Bytes read", text: r.task === "backup" ? bytes(r.bytes_read) : "–" }),
    el("td", { "data-label": "Bytes added", text: r.task === "backup" ? bytes(r.bytes_added) : "–" }),
    el("td", { "data-label": "Error", class: "error-cell", text: r.error ?? "" }),
  );
}

/** The newest runs that match the filters; `more`: the page before the oldest shown. */
export async function loadHistory(more = false) {
  const tbody = document.querySelector("#runs tbody");
  const q = { ...filters(), limit: PAGE, before: more ? oldest : null };
  const mine = ++asked;
  try {
    const { runs } = await get(`/api/runs${query(q)}`);
    if (mine !== asked) return;
    if (!more) tbody.replaceChildren();
    tbody.append(...runs.map(runRow));
    if (runs.length) oldest = runs[runs.length - 1].id;
    $("runs-more").hidden = runs.length < PAGE;
    if (!tbody.children.length) tbody.append(el("tr", {}, el("td", { colspan: 9, class: "empty", text: "No run matches." })));
  } catch (e) {
    if (mine !== asked) return;
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "error", text: `Could not read the history: ${e.message}` })));
  }
}

export function initHistory() {
  $("history-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadHistory();
  });
  $("history-filter").addEventListener("change", () => loadHistory());
  $("runs-more").addEventListener("click", () => loadHistory(true));
}

/** The job filter's choices, and a line per schedule of every job. */
export function renderSchedules(ctx) {
  const select = $("history-filter").elements.job;
  const chosen = select.value;
  const names = ctx.jobs.map((j) => j.name);
  if ([...select.options].slice(1).map((o) => o.value).join("\n") !== names.join("\n")) {
    select.replaceChildren(el("option", { value: "", text: "all" }), ...names.map((n) => el("option", { value: n, text: n })));
    select.value = names.includes(chosen) ? chosen : "";
  }
  const rows = ctx.jobs.flatMap((job) =>
    job.schedules.map((s) =>
      el(
        "tr",
        { "data-job": job.name, "data-schedule": s.name },
        el("th", { scope: "row", "data-label": "Job", text: job.name }),
        el("td", { "data-label": "Schedule", text: s.name }),
        el("td", { "data-label": "Task", text: s.task }),
        el("td", { "data-label": "Next run", text: s.next_run ? `${time(s.next_run)} (${age(s.next_run)})` : "–" }),
        el("td", { "data-label": "Runs", text: `${s.stats.succeeded} of ${s.stats.runs} succeeded` }),
        el("td", { "data-label": "Success rate", text: percent(s.stats.success_rate) }),
        el("td", { "data-label": "Mean duration", text: duration(s.stats.mean_duration_seconds) }),
        el("td", { "data-label": "Last success", text: s.stats.last_success ? age(s.stats.last_success) : "never" }),
      ),
    ),
  );
  const tbody = document.querySelector("#schedules tbody");
  tbody.replaceChildren(...rows);
  if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: 8, class: "empty", text: "No job has a schedule." })));
}
