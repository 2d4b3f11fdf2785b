// The gateway's API as the console uses it: the key from sessionStorage as a bearer token, problems as errors.

const KEY = "durable.apiKey";
const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) { if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY); },
  // What the gateway told us of the key (when it says), else what 403s taught us.
  role: sessionStorage.getItem("durable.role") || "",
  tenant: sessionStorage.getItem("durable.tenant") || "",
  remember(tenant, role) {
    if (tenant) { this.tenant = tenant; sessionStorage.setItem("durable.tenant", tenant); }
    if (role) { this.role = role; sessionStorage.setItem("durable.role", role); }
  },
  clear() { sessionStorage.clear(); this.role = ""; this.tenant = ""; },
};

function headers(extra = {}) {
  return { Authorization: `Bearer ${session.key || ""}`, Accept: "application/json", ...extra };
}

export async function call(method, path, { query, body } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(url, init);
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    const err = new ApiError(res.status, typeof data === "object" ? data : { detail: data });
    if (res.status === 401) window.dispatchEvent(new CustomEvent("durable:unauthorized", { detail: err }));
    throw err;
  }
  return data;
}

export const get = (path, query) => call("GET", path, { query });
export const post = (path, body) => call("POST", path, { body: body === undefined ? {} : body });

export const runPath = (id) => `/runs/${encodeURIComponent(id)}`;
export const letterPath = (id) => `/deadletters/${encodeURIComponent(id)}`;

/** A list out of a response that is a list or an object holding one. */
export function items(data, ...names) {
  if (Array.isArray(data)) return data;
  for (const n of [...names, "items", "data", "results"]) if (data && Array.isArray(data[n])) return data[n];
  return [];
}

/**
 * Follow server-sent events with the key in a header (EventSource cannot send one): fetch, read the stream,
 * split on blank lines. Calls onEvent({event, data, id}) for each; returns a function that stops following.
 */
export function follow(path, onEvent, onEnd) {
  const ctrl = new AbortController();
  (async () => {
    try {
      const res = await fetch(BASE + path, { headers: headers({ Accept: "text/event-stream" }), signal: ctrl.signal });
      if (!res.ok || !res.body) throw new ApiError(res.status, await res.json().catch(() => null));
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const msg = { event: "message", data: "", id: null };
          const data = [];
          for (const line of block.split("\n")) {
            if (!line || line.startsWith(":")) continue;
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "event") msg.event = val;
            else if (field === "data") data.push(val);
            else if (field === "id") msg.id = val;
          }
          msg.data = data.join("\n");
          if (data.length || msg.event !== "message") onEvent(msg);
        }
      }
      if (onEnd) onEnd(null);
    } catch (err) {
      if (err.name !== "AbortError" && onEnd) onEnd(err);
    }
  })();
  return () => ctrl.abort();
}
