// A small SVG chart of values over time: lines with their points, or
// bars, readable axes (bytes in KiB/MiB/GiB, durations in s/min/h, dates),
// a legend, and the numbers in a table for those who do not see it. No
// library: the dashboard is served from the binary and fetches nothing.

import { byteScale, bytes, durationUnit, el, time } from "./format.js";

const W = 960;
const H = 300;
const M = { top: 14, right: 16, bottom: 40, left: 76 };
let charts = 0;

/** A step of 1, 2 or 5 times a power of ten, giving about `n` steps over `span`. */
function niceStep(span, n = 4) {
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => span / s <= n + 1) ?? 10 * p;
}

/** The y axis: its top, ticks and how a value reads, in the unit that suits `max`. */
function yAxis(max, kind) {
  let unit = 1;
  let label = (v) => String(v);
  let fmt = (v) => String(v);
  if (kind === "bytes") {
    const s = byteScale(max);
    unit = 1024 ** s;
    label = (v) => (v ? bytes(v, s) : "0");
    fmt = (v) => bytes(v);
  } else if (kind === "seconds") {
    const u = durationUnit(max);
    unit = u.secs;
    label = (v) => (v ? `${+(v / u.secs).toFixed(2)} ${u.name}` : "0");
    fmt = (v) => `${(v / u.secs).toFixed(1)} ${u.name}`;
  }
  const step = niceStep(max / unit || 1) * unit;
  const top = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks, label, fmt };
}

const MIN = 60e3;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const TIME_STEPS = [MIN, 5 * MIN, 15 * MIN, 30 * MIN, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY];

/** Ticks on the time axis at round local times, about five of them. */
function xTicks(from, to) {
  const step = TIME_STEPS.find((s) => (to - from) / s <= 6) ?? 365 * DAY;
  const offset = new Date(from).getTimezoneOffset() * MIN;
  const ticks = [];
  for (let t = Math.ceil((from - offset) / step) * step + offset; t <= to; t += step) ticks.push(t);
  if (!ticks.length) ticks.push((from + to) / 2);
  const day = (t) => time(new Date(t)).slice(0, 10);
  const label =
    step >= DAY ? day : to - from <= DAY && day(from) === day(to) ? (t) => time(new Date(t)).slice(11) : (t) => time(new Date(t)).slice(5);
  return { ticks, label };
}

/**
 * A chart as a <figure>: `series` is [{name, color?, points: [{t: Date|string, v: number, label?}]}]
 * (`color`: an index, so that a job keeps its colour from chart to chart),
 * `kind` "line" or "bar", `unit` "bytes", "seconds" or "count". Points are
 * <circle class="point">, bars <rect class="bar">, each with a <title>.
 */
export function chart({ title, series, kind = "line", unit = "count", name }) {
  const id = `chart-${++charts}`;
  const all = series.flatMap((s) => s.points.map((p) => ({ ...p, t: new Date(p.t).getTime() })));
  const figure = el("figure", { class: "chart", "data-chart": name }, el("figcaption", { id, text: title }));
  if (!all.length) {
    figure.append(el("p", { class: "empty", text: "No data yet." }));
    return figure;
  }
  let from = Math.min(...all.map((p) => p.t));
  let to = Math.max(...all.map((p) => p.t));
  // Room on both sides (bars at the very ends), and at least ten minutes
  // in all: runs seconds apart still get a readable time axis.
  const pad = Math.max((to - from) * 0.04, (10 * MIN - (to - from)) / 2);
  from -= pad;
  to += pad;
  const y = yAxis(Math.max(...all.map((p) => p.v), 0), unit);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (t) => M.left + ((t - from) / (to - from)) * pw;
  const sy = (v) => M.top + ph - (v / y.top) * ph;

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": id, class: "chart-svg" });
  const axes = el("g", { class: "axes" });
  for (const v of y.ticks) {
    axes.append(
      el("line", { x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v), class: v === 0 ? "axis" : "grid" }),
      el("text", { x: M.left - 6, y: sy(v) + 4, "text-anchor": "end", text: y.label(v) }),
    );
  }
  const x = xTicks(from, to);
  for (const t of x.ticks) {
    axes.append(
      el("line", { x1: sx(t), x2: sx(t), y1: M.top + ph, y2: M.top + ph + 5, class: "axis" }),
      el("text", { x: sx(t), y: H - M.bottom + 20, "text-anchor": "middle", text: x.label(t) }),
    );
  }
  axes.append(el("line", { x1: M.left, x2: M.left, y1: M.top, y2: M.top + ph, class: "axis" }));
  svg.append(axes);

  const barWidth = Math.max(3, Math.min(18, (pw / Math.max(1, all.length)) * 0.6));
  series.forEach((s, i) => {
    const g = el("g", { class: `series series-${(s.color ?? i) % 6}`, "data-series": s.name });
    const pts = s.points.map((p) => ({ ...p, t: new Date(p.t).getTime() })).sort((a, b) => a.t - b.t);
    if (kind === "line" && pts.length > 1) {
      g.append(el("polyline", { points: pts.map((p) => `${sx(p.t)},${sy(p.v)}`).join(" "), class: "line" }));
    }
    for (const p of pts) {
      const tip = el("title", { text: `${s.name}: ${y.fmt(p.v)}, ${time(new Date(p.t))}${p.label ? ` (${p.label})` : ""}` });
      if (kind === "bar") {
        const top = sy(p.v);
        g.append(el("rect", { class: "bar", x: sx(p.t) - barWidth / 2, y: top, width: barWidth, height: Math.max(1, M.top + ph - top) }, tip));
      } else {
        g.append(el("circle", { class: "point", cx: sx(p.t), cy: sy(p.v), r: 4 }, tip));
      }
    }
    svg.append(g);
  });
  figure.append(svg);

  figure.append(
    el("ul", { class: "legend" }, series.map((s, i) => el("li", {}, el("span", { class: `swatch series-${(s.color ?? i) % 6}`, "aria-hidden": "true" }), s.name))),
  );
  // The same numbers as a table: for screen readers, and for copying.
  const rows = series.flatMap((s) => s.points.map((p) => el("tr", {}, el("td", { text: s.name }), el("td", { text: time(p.t) }), el("td", { text: y.fmt(p.v) }))));
  figure.append(
    el(
      "details",
      { class: "chart-data" },
      el("summary", { text: "The numbers" }),
      el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "series" }), el("th", { text: "time" }), el("th", { text: "value" }))), el("tbody", {}, rows))),
    ),
  );
  return figure;
}
