// Runs going on and waiting, each followed live through its server-sent
// events (phase, percentage, items, bytes, rate, time left) with a button
// to cancel it; when one ends its card moves to "Ended here" with the
// result. Every run the daemon reports is followed, whichever view is shown,
// so a run started from another view is already there.

import { api, follow, get, poll } from "./api.js";
import { bytes, duration, el, rate } from "./format.js";

const live = new Map();
const ENDED_KEPT = 12;
// A browser opens at most six connections to one address over HTTP/1.1,
// and each event stream holds one: beyond a few runs followed live, the
// others are read every two seconds, leaving room for the page's requests.
const MAX_STREAMS = 3;
let streams = 0;
const $ = (id) => document.getElementById(id);

function title(id, doc) {
  const what = doc.task ? `${doc.task}${doc.strategy ? ` (${doc.strategy})` : ""} of ${doc.job}` : `job ${doc.job ?? "…"}`;
  return `Run ${id}: ${what}`;
}

function figure(name, label) {
  return [el("dt", { text: label }), el("dd", { "data-field": name, text: "–" })];
}

function card(id, what, ctx) {
  const cancel = el("button", { type: "button", class: "danger", text: "Cancel", "aria-label": `Cancel run ${id}` });
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api("DELETE", `/api/runs/${id}`);
      ctx.notice(`Run ${id}: cancelling.`);
    } catch (e) {
      ctx.notice(`Run ${id}: ${e.message}`, true);
      cancel.disabled = false;
    }
  });
  const bar = el("progress", { id: `run-${id}-bar`, max: 100 });
  return el(
    "article",
    { class: "run", "data-run": id, "data-status": "queued", "aria-labelledby": `run-${id}-title` },
    el("h3", { id: `run-${id}-title`, text: title(id, what) }),
    el("p", { class: "status", "data-field": "status", text: "waiting" }),
    el("label", { for: `run-${id}-bar`, "data-field": "phase", text: "not started" }),
    bar,
    el("dl", { class: "figures" }, figure("items", "Done"), figure("bytes", "Bytes"), figure("rate", "Rate"), figure("eta", "Time left")),
    el("p", { class: "result", "data-field": "result" }),
    el("div", { class: "actions" }, cancel),
  );
}

function set(c, field, text) {
  c.querySelector(`[data-field="${field}"]`).textContent = text;
}

function progress(c, p) {
  const pct = p.percentage;
  set(c, "phase", `${p.phase ?? "starting"}${pct === null || pct === undefined ? "" : `: ${pct.toFixed(1)} %`}`);
  const bar = c.querySelector("progress");
  if (pct === null || pct === undefined) bar.removeAttribute("value");
  else bar.value = pct;
  const unit = p.unit ?? "files";
  set(c, "items", p.files_total ? `${p.files.toLocaleString()} of ${p.files_total.toLocaleString()} ${unit}` : `${p.files.toLocaleString()} ${unit}`);
  set(c, "bytes", p.bytes_total ? `${bytes(p.bytes)} of ${bytes(p.bytes_total)}` : bytes(p.bytes));
  set(c, "rate", rate(p.rate));
  set(c, "eta", p.eta_seconds === null || p.eta_seconds === undefined ? "–" : duration(p.eta_seconds));
}

const files = (n) => `${n.toLocaleString()} file${n === 1 ? "" : "s"}`;

/** The result of a run that ended, in one line. */
export function outcome(doc) {
  const took = doc.started_at && doc.finished_at ? ` in ${duration((new Date(doc.finished_at) - new Date(doc.started_at)) / 1000)}` : "";
  if (doc.status !== "succeeded") return `${doc.status}${took}: ${doc.error ?? "no reason given"}`;
  const r = doc.result ?? {};
  if (doc.task === "backup") return `succeeded${took}: ${files(doc.files)}, ${bytes(doc.bytes_read)} read, ${bytes(doc.bytes_added)} added`;
  if (doc.task === "restore") return `succeeded${took}: ${files(r.files ?? 0)} (${bytes(r.bytes ?? 0)}) restored into ${r.target ?? "the target"}`;
  if (doc.task === "verify") {
    const damaged = (r.destinations ?? []).flatMap((d) => d.verify?.damaged ?? []);
    return `succeeded${took}: ${damaged.length ? `${files(damaged.length)} damaged` : "no damage found"}`;
  }
  return `succeeded${took}`;
}

function ended(id, c, doc, ctx) {
  c.dataset.status = doc.status;
  set(c, "status", doc.status);
  set(c, "result", outcome(doc));
  c.querySelector(".result").className = `result result-${doc.status}`;
  // What was live is over: the result line holds the final figures.
  for (const sel of [".actions", "label", "progress", ".figures"]) c.querySelector(sel)?.remove();
  c.querySelector("h3").textContent = title(id, doc);
  const list = $("runs-ended");
  list.prepend(c);
  while (list.children.length > ENDED_KEPT) list.lastElementChild.remove();
  live.delete(id);
  count();
  ctx.ended(id, doc);
}

function count() {
  $("running-count").textContent = live.size ? `(${live.size})` : "";
  $("running-empty").hidden = live.size > 0;
}

/** Follows run `id` (`what`: its job, task, strategy as far as known); `done(doc)` once it ended. */
export function watch(id, what, ctx, done) {
  const known = live.get(id);
  if (known) {
    if (done) known.done.push(done);
    return;
  }
  const c = card(id, what, ctx);
  const entry = { card: c, done: done ? [done] : [] };
  live.set(id, entry);
  $("runs-live").append(c);
  count();
  get(`/api/runs/${id}`)
    .then((doc) => (c.querySelector("h3").textContent = title(id, doc)))
    .catch(() => {});
  const streamed = streams < MAX_STREAMS;
  if (streamed) streams++;
  (streamed ? follow : poll)(id, (event, data) => {
    if (event === "status") {
      c.dataset.status = data.status;
      set(c, "status", `${data.status}${data.attempt > 1 ? ` (try ${data.attempt})` : ""}${data.waiting ? `: ${data.waiting}` : ""}`);
    } else if (event === "progress") {
      c.dataset.status = "running";
      progress(c, data);
    } else if (event === "end") {
      ended(id, c, data, ctx);
      for (const f of entry.done) f(data);
    }
  })
    .catch((e) => {
      set(c, "result", `Could not follow the run: ${e.message}`);
      live.delete(id);
      count();
    })
    .finally(() => {
      if (streamed) streams--;
    });
}

export function initRunning() {
  count();
}

/** Follows every run /api/jobs says is going on or waiting. */
export function syncRunning(ctx) {
  for (const job of ctx.jobs) {
    for (const id of [...job.running, ...job.queued]) watch(id, { job: job.name }, ctx);
  }
}
