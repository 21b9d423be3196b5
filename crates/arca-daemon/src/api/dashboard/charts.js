// Charts over time: each destination's stored size (GET /api/sizes, one
// point per measurement after a run), the bytes each backup added, and how
// long backups took (GET /api/runs).

import { get, query } from "./api.js";
import { between, el } from "./format.js";
import { chart } from "./chart.js";

/** Points grouped into series by `key`, by name, each name with the same colour in every chart. */
function byName(items, key, point) {
  const series = new Map();
  for (const it of items) {
    const k = key(it);
    if (!series.has(k)) series.set(k, { name: k, points: [] });
    series.get(k).points.push(point(it));
  }
  return [...series.values()].sort((a, b) => a.name.localeCompare(b.name)).map((s) => ({ ...s, color: colour(s.name) }));
}

/** A stable colour index for a name. */
function colour(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return h % 6;
}

export async function loadCharts() {
  const box = document.getElementById("charts");
  box.setAttribute("aria-busy", "true");
  try {
    const [sizes, backups] = await Promise.all([
      get("/api/sizes").then((r) => r.sizes),
      get(`/api/runs${query({ task: "backup", limit: 1000 })}`).then((r) => r.runs),
    ]);
    const ended = backups.filter((r) => r.task === "backup" && r.finished_at && r.started_at && (r.status === "succeeded" || r.status === "failed"));
    const ok = ended.filter((r) => r.status === "succeeded");
    box.replaceChildren(
      chart({
        name: "size",
        title: "Repository size per destination",
        unit: "bytes",
        series: byName(sizes, (s) => s.destination, (s) => ({ t: s.time, v: s.size_bytes, label: `${s.snapshots} snapshots` })),
      }),
      chart({
        name: "added",
        title: "Bytes added per backup",
        unit: "bytes",
        kind: "bar",
        series: byName(ok, (r) => r.job, (r) => ({ t: r.finished_at, v: r.bytes_added, label: `run ${r.id}` })),
      }),
      chart({
        name: "duration",
        title: "Backup duration",
        unit: "seconds",
        series: byName(ended, (r) => r.job, (r) => ({ t: r.started_at, v: between(r.started_at, r.finished_at), label: `run ${r.id}, ${r.status}` })),
      }),
    );
  } catch (e) {
    box.replaceChildren(el("p", { class: "error", text: `Could not draw the charts: ${e.message}` }));
  } finally {
    box.removeAttribute("aria-busy");
  }
}
