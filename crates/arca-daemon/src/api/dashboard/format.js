// How figures read for a person: binary byte units, durations in s/min/h,
// times in the browser's own zone, ages ("3 h ago"). Shared by every view
// and by the charts' axes.

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** The power of 1024 that suits `n` bytes (0 for B, 1 for KiB, …). */
export function byteScale(n) {
  let i = 0;
  while (Math.abs(n) >= 1024 && i < BYTE_UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return i;
}

/** `n` bytes in the unit of `scale` (byteScale of n by default). */
export function bytes(n, scale) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const i = scale === undefined ? byteScale(n) : scale;
  const v = n / 1024 ** i;
  const digits = i === 0 || Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${BYTE_UNITS[i]}`;
}

/** Bytes per second. */
export function rate(n) {
  return n ? `${bytes(n)}/s` : "–";
}

/** Seconds as "42 s", "3.5 min", "2.1 h" (one unit: a glance, not a clock). */
export function duration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return "–";
  const u = durationUnit(secs);
  const v = secs / u.secs;
  return `${v.toFixed(u.secs === 1 && v >= 10 ? 0 : 1)} ${u.name}`;
}

/** The unit a duration of `secs` reads best in. */
export function durationUnit(secs) {
  if (Math.abs(secs) >= 2 * 3600) return { name: "h", secs: 3600 };
  if (Math.abs(secs) >= 120) return { name: "min", secs: 60 };
  return { name: "s", secs: 1 };
}

/** An RFC 3339 time as a local date and time ("2026-12-07 03:11"). */
export function time(t) {
  if (!t) return "–";
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** How long ago `t` was ("just now", "5 min ago", "3 d ago"), or until when it comes. */
export function age(t, now = Date.now()) {
  if (!t) return "never";
  const secs = (now - new Date(t).getTime()) / 1000;
  const a = Math.abs(secs);
  let text;
  if (a < 45) return secs >= 0 ? "just now" : "in a moment";
  if (a < 5400) text = `${Math.round(a / 60)} min`;
  else if (a < 48 * 3600) text = `${Math.round(a / 3600)} h`;
  else text = `${Math.round(a / 86400)} d`;
  return secs >= 0 ? `${text} ago` : `in ${text}`;
}

/** Seconds between two RFC 3339 times, or null. */
export function between(from, to) {
  if (!from || !to) return null;
  return (new Date(to).getTime() - new Date(from).getTime()) / 1000;
}

/** A percentage 0..1 as "97.5 %". */
export function percent(r) {
  return r === null || r === undefined ? "–" : `${(r * 100).toFixed(r === 1 || r === 0 ? 0 : 1)} %`;
}

/** An element: tag, attributes ({class, text, …}), children. Text is set as text, never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "line", "path", "circle", "rect", "text", "title", "polyline"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k in e && !svg && typeof v !== "string") e[k] = v;
    else e.setAttribute(k === "className" ? "class" : k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
