// Building elements from data: text is always set as text, never parsed as HTML.

/** h("tag.class#id", {attr: value, on: {click: fn}}, ...children) -> Element. */
export function h(spec, attrs = {}, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/i) || [null, "div", ""];
  const el = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "style") for (const [p, v] of Object.entries(value)) el.style.setProperty(p, v);
    else if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false, year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function fmtUsd(v, places = 4) {
  return v === null || v === undefined ? "" : `$${Number(v).toFixed(places)}`;
}

export function fmtInt(v) {
  return v ? Number(v).toLocaleString("en-GB") : "";
}

export function badge(status) {
  const s = String(status || "UNKNOWN").toUpperCase();
  return h(`span.badge.s-${s.toLowerCase()}`, { text: s });
}

/** A JSON value pretty-printed in a focusable, scrollable block. */
export function jsonBlock(value, label) {
  return h("pre.json", { tabindex: "0", "aria-label": label || "JSON" },
    typeof value === "string" ? value : JSON.stringify(value, null, 2));
}

/** The page's one status line (errors, confirmations), read out by screen readers. */
export function say(text, kind = "info") {
  const el = document.getElementById("status");
  el.textContent = text || "";
  el.className = `banner ${kind}`;
  el.hidden = !text;
}

/** Milliseconds since the epoch of a run-ish object, whatever the field is called. */
export function msOf(obj, ...names) {
  for (const n of names) {
    const v = obj ? obj[n] : undefined;
    if (typeof v === "number") return v;
    if (typeof v === "string" && v) { const t = Date.parse(v); if (!Number.isNaN(t)) return t; }
  }
  return 0;
}
