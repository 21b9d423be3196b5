// The overview: one line per job with its state (ok, failed, running,
// overdue, never run), the age of its latest success, its next run and the
// health of each destination, and above them one verdict: is everything
// protected? A failed or overdue job is marked (class "problem"; one never
// backed up, "attention"), its state in words too: colour is never the
// only sign.

import { api, get, query } from "./api.js";
import { age, el, time } from "./format.js";

const STRATEGIES = ["incremental", "differential", "full"];
/** Each job's latest backup that ended, by the id of its latest run (refetched when that changes). */
const backups = new Map();
/** A backup that succeeded or failed: a cancelled one says nothing of the destinations. */
const judged = (r) => r.task === "backup" && r.report && (r.status === "succeeded" || r.status === "failed");

/** The job's latest judged backup (its report names each destination's outcome). */
async function latestBackup(job) {
  const last = job.last_run;
  if (!last) return null;
  if (judged(last)) return last;
  const known = backups.get(job.name);
  if (known && known.key === last.id) return known.run;
  const r = await get(`/api/runs${query({ job: job.name, task: "backup", limit: 20 })}`);
  // The task filter is the daemon's; checked here too.
  const run = r.runs.find(judged) ?? null;
  backups.set(job.name, { key: last.id, run });
  return run;
}

/**
 * The job's state from its runs and /health's reasons about it: `level`
 * "problem" (failed, overdue: not protected), "attention" (never backed
 * up) or "" (fine, or busy).
 */
function state(job, reasons, backup) {
  const mine = reasons.filter((r) => r.startsWith(`job ${job.name}: `)).map((r) => r.slice(`job ${job.name}: `.length));
  const last = job.last_run;
  if (job.running.length) return { state: "running", text: `running (run ${job.running.join(", ")})`, level: "" };
  const failedBackup = mine.find((r) => r.startsWith("the latest backup"));
  if (failedBackup) return { state: "failed", text: "failed", why: backup?.status === "failed" && backup.error ? backup.error : failedBackup, level: "problem" };
  if (last && last.status === "failed") return { state: "failed", text: `${last.task} failed`, why: last.error, level: "problem" };
  const overdue = mine.find((r) => r.startsWith("overdue:"));
  if (overdue) return { state: "overdue", text: "overdue", why: overdue.slice("overdue: ".length), level: "problem" };
  if (job.queued.length) return { state: "queued", text: "waiting to run", level: "" };
  if (job.stats.last_success) return { state: "ok", text: "ok", level: "" };
  return { state: "never", text: "never backed up", level: "attention" };
}

/** Each destination of the job with its health: the latest backup's outcome there, and /health's word on it. */
function destinations(job, backup, reasons) {
  const names = job.config?.destinations ?? [];
  return el(
    "ul",
    { class: "dests" },
    names.map((name) => {
      const d = backup?.report?.destinations?.find((x) => x.name === name);
      const down = reasons.find((r) => r.startsWith(`destination ${name} unreachable:`));
      let cls = "unknown";
      let text = "no backup yet";
      if (down) [cls, text] = ["bad", down.slice(`destination ${name} `.length)];
      else if (d && d.success) [cls, text] = ["ok", "ok"];
      else if (d) [cls, text] = ["bad", d.error ?? "failed"];
      return el("li", { class: `dest dest-${cls}`, "data-destination": name }, el("strong", { text: name }), `: ${text}`);
    }),
  );
}

function runNow(job, ctx) {
  const select = el(
    "select",
    { "aria-label": `Strategy of the run of ${job.name}` },
    STRATEGIES.map((s) => el("option", { value: s, selected: s === job.config?.strategy, text: s })),
  );
  const button = el("button", { type: "button", text: "Run now", "aria-label": `Run ${job.name} now` });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const r = await api("POST", `/api/jobs/${encodeURIComponent(job.name)}/run`, { strategy: select.value });
      ctx.notice(r.joined ? `Job ${job.name}: joined run ${r.run_id}, already waiting.` : `Job ${job.name}: run ${r.run_id} queued (${select.value}).`);
      ctx.watch(r.run_id, { job: job.name, task: "backup", strategy: select.value });
      ctx.refresh();
    } catch (e) {
      ctx.notice(`Job ${job.name}: ${e.message}`, true);
    } finally {
      button.disabled = false;
    }
  });
  return el("div", { class: "run-now" }, select, button);
}

/** A row per job, made once and updated in place (a choice being made in it survives the refresh). */
function row(job, ctx) {
  const tbody = document.querySelector("#jobs tbody");
  let tr = tbody.querySelector(`tr[data-job="${CSS.escape(job.name)}"]`);
  if (!tr) {
    tr = el(
      "tr",
      { "data-job": job.name },
      el("th", { scope: "row", "data-label": "Job", text: job.name }),
      ...["State", "Last success", "Next run", "Destinations"].map((l) => el("td", { "data-label": l })),
      el("td", { "data-label": "Run now" }, runNow(job, ctx)),
    );
    tbody.append(tr);
  }
  return tr;
}

export async function renderOverview(ctx) {
  const reasons = ctx.health?.reasons ?? [];
  const backupsOf = await Promise.all(ctx.jobs.map((j) => latestBackup(j).catch(() => null)));
  const problems = [...reasons];
  const names = new Set(ctx.jobs.map((j) => j.name));
  for (const tr of document.querySelectorAll("#jobs tbody tr")) if (!names.has(tr.dataset.job)) tr.remove();
  ctx.jobs.forEach((job, i) => {
    const s = state(job, reasons, backupsOf[i]);
    if (s.state === "never") problems.push(`job ${job.name}: never backed up`);
    else if (s.state === "failed" && !reasons.some((r) => r.startsWith(`job ${job.name}: `))) problems.push(`job ${job.name}: ${s.text}: ${s.why ?? ""}`);
    const tr = row(job, ctx);
    tr.className = s.level;
    tr.dataset.state = s.state;
    const [stateCell, successCell, nextCell, destCell] = tr.querySelectorAll("td");
    stateCell.replaceChildren(el("span", { class: `badge badge-${s.state}`, text: s.text }));
    if (s.why) stateCell.append(el("span", { class: "why", text: s.why }));
    const last = job.stats.last_success;
    successCell.replaceChildren(last ? el("time", { datetime: last, title: time(last), text: age(last) }) : "never");
    nextCell.replaceChildren(job.next_run ? el("time", { datetime: job.next_run, title: time(job.next_run), text: `${time(job.next_run)} (${age(job.next_run)})` }) : "no schedule");
    destCell.replaceChildren(destinations(job, backupsOf[i], reasons));
  });
  const v = document.getElementById("verdict");
  v.className = `verdict ${problems.length ? "verdict-bad" : "verdict-ok"}`;
  if (!ctx.jobs.length) v.replaceChildren(el("p", { text: "No job is configured: add one to arca.toml and reload the daemon." }));
  else if (!problems.length) v.replaceChildren(el("p", { text: `Everything is protected: ${ctx.jobs.length} job${ctx.jobs.length > 1 ? "s" : ""}, each backed up on schedule.` }));
  else
    v.replaceChildren(
      el("p", { text: `Not everything is protected: ${problems.length} problem${problems.length > 1 ? "s" : ""}.` }),
      el("ul", {}, problems.map((p) => el("li", { text: p }))),
    );
}
