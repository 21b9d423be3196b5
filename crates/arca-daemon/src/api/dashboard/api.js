// The daemon's API, called as any script calls it: the token in the
// Authorization header of every request (never in a URL, never a cookie:
// a page of another site cannot make the browser send it, so no request
// can be forged), JSON in and out.

const KEY = "arca-token";

/** The token of this tab (sessionStorage: gone when the tab closes). */
export function token() {
  return sessionStorage.getItem(KEY);
}

export function keepToken(t) {
  sessionStorage.setItem(KEY, t);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

/** An answer that is not 2xx: its status and the daemon's `error`. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let refused = () => {};

/** What to do when the daemon refuses the token (it changed, or was never right). */
export function onRefused(f) {
  refused = f;
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token() ?? ""}`, ...extra };
}

async function check(r) {
  if (r.ok) return r;
  let message = `${r.status} ${r.statusText}`;
  try {
    message = (await r.json()).error ?? message;
  } catch {
    // Not JSON: keep the status line.
  }
  if (r.status === 401) refused(message);
  throw new ApiError(r.status, message);
}

/** `method path` with an optional JSON body; the decoded JSON answer. */
export async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await check(await fetch(path, init));
  return r.json();
}

export const get = (path) => api("GET", path);

/** A query string of the fields of `q` that have a value. */
export function query(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** A file's bytes (with the token), and the name the daemon gives it. */
export async function download(path) {
  const r = await check(await fetch(path, { headers: headers(), cache: "no-store" }));
  const disposition = r.headers.get("Content-Disposition") ?? "";
  const m = /filename="([^"]*)"/.exec(disposition);
  return { blob: await r.blob(), name: m ? m[1] : "download" };
}

/**
 * Server-sent events as a parser fed with text: calls `on(event, data)`
 * for each complete event (data decoded from JSON). EventSource cannot
 * send the Authorization header, so the stream is read by fetch() and
 * parsed here, by the rules of the format (fields, comments, blank line).
 */
export function sseParser(on) {
  let buf = "";
  let event = "";
  let data = [];
  return (text) => {
    buf += text;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (data.length) on(event || "message", JSON.parse(data.join("\n")));
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
  };
}

/** Run `id`'s document read every two seconds, told as the events would tell it, until it ends. */
export async function poll(id, on, signal) {
  let status = null;
  for (;;) {
    const doc = await get(`/api/runs/${id}`);
    if (["succeeded", "failed", "cancelled"].includes(doc.status)) return on("end", doc);
    if (doc.status !== status) on("status", { status: (status = doc.status), attempt: doc.attempt, waiting: doc.waiting });
    if (doc.progress) on("progress", doc.progress);
    if (signal?.aborted) return;
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

/**
 * Follows run `id` until it ends: `on(event, data)` for each `status`,
 * `progress` and `end` event. A stream cut before `end` (a proxy, a
 * restart) is opened again after a pause, a few times; then the run's
 * document is read once, so the caller always hears of the end.
 */
export async function follow(id, on, signal) {
  for (let attempt = 0; attempt < 5; attempt++) {
    let ended = false;
    try {
      const r = await check(
        await fetch(`/api/runs/${id}/events`, { headers: headers({ Accept: "text/event-stream" }), signal, cache: "no-store" }),
      );
      const feed = sseParser((event, data) => {
        if (event === "end") ended = true;
        on(event, data);
      });
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(value);
      }
    } catch (e) {
      if (signal?.aborted || (e instanceof ApiError && e.status < 500)) throw e;
    }
    if (ended) return;
    await new Promise((ok) => setTimeout(ok, 1000 * (attempt + 1)));
  }
  const doc = await get(`/api/runs/${id}`);
  on(["succeeded", "failed", "cancelled"].includes(doc.status) ? "end" : "status", doc);
}
