// A run's page: the decision, latency and cost against the tenant's budget, the trace as a waterfall of
// spans (duration, tokens, cost, eval mark), the evaluator's gates, the journal timeline, live while in flight.
import { ApiError, follow, get, items, post, runPath, session } from "./api.js";
import { badge, fill, fmtInt, fmtMs, fmtTime, fmtUsd, h, jsonBlock, msOf, say } from "./dom.js";
import { operatorWord } from "./word.js";

const TERMINAL = new Set(["COMPLETED", "FAILED", "COMPENSATED"]);
// Events after which the run may have a new decision to show (a pause writes one too).
const ENDS = new Set(["RUN_COMPLETED", "RUN_FAILED", "RUN_COMPENSATED", "RUN_PAUSED"]);
const CURRENCY = { GBP: "£", USD: "$", EUR: "€" };

/** How a decision reads in one line, as `durable trace` prints it: "ROUTED · reserve £5,600 · queue · MEDIUM". */
export function decisionLine(d, given) {
  if (given) return String(given);
  if (!d || typeof d !== "object") return d ? String(d) : "";
  const symbol = CURRENCY[d.currency] ?? (d.currency ? `${d.currency} ` : "");
  const parts = [d.status];
  if (d.reserve !== undefined && d.reserve !== null) {
    parts.push(`reserve ${symbol}${Math.round(Number(d.reserve)).toLocaleString("en-GB")}`);
  }
  if (d.queue) parts.push(d.queue);
  if (d.severity) parts.push(d.severity);
  if (Array.isArray(d.documents_requested)) parts.push(`docs: ${d.documents_requested.join(", ") || "-"}`);
  return parts.filter(Boolean).join(" · ");
}

/** The decision's signature check (the gateway's `signature` object) in one line, e.g. "✓ Signature verified · key 1e06…". */
export function signatureLine(sig) {
  if (!sig || typeof sig !== "object") return "";
  const why = sig.reason ? `: ${sig.reason}` : "";
  switch (sig.status) {
    case "verified": return `✓ Signature verified · key ${String(sig.key_id || "").slice(0, 16)}`;
    case "invalid": return `✗ Decision withheld, its signature does not verify${why}`;
    case "unverified": return `Decision withheld until its signature can be checked${why}`;
    case "unsigned": return "Unsigned: this gateway checks no signatures";
    default: return String(sig.status || "");
  }
}

function attrsOf(span) {
  if (span.attributes && typeof span.attributes === "object") return span.attributes;
  try { return JSON.parse(span.attributes_json || "{}"); } catch { return {}; }
}

/** Spans in one shape whatever the response's: ms times, tokens, cost, depth-first under their parents. */
export function spansOf(trace) {
  const list = items(trace, "spans").map((s) => {
    const attrs = attrsOf(s);
    const start = s.start_unix_nano !== undefined ? s.start_unix_nano / 1e6 : msOf(s, "start_ms", "start");
    const end = s.end_unix_nano !== undefined ? s.end_unix_nano / 1e6
      : s.duration_ms !== undefined ? start + s.duration_ms : msOf(s, "end_ms", "end");
    const tokens = s.tokens ?? (Number(attrs["gen_ai.usage.input_tokens"] || 0) + Number(attrs["gen_ai.usage.output_tokens"] || 0));
    const cost = s.cost_usd ?? Number(attrs["durable.cost_usd"] || 0);
    return { name: s.name, id: s.span_id || s.id, parent: s.parent_span_id || s.parent_id || null, start, end,
      status: s.status || "", attempt: attrs["durable.attempt"], tokens, cost, attrs };
  });
  const ids = new Set(list.map((s) => s.id));
  const children = new Map();
  for (const s of list) {
    const p = ids.has(s.parent) ? s.parent : null;
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(s);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const s of (children.get(parent) || []).sort((a, b) => a.start - b.start || a.name.localeCompare(b.name))) {
      out.push({ ...s, depth });
      walk(s.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

/** The trace's gates, budgets and output (GET /runs/{id}/trace); the run's output while the trace has none. */
function evaluationOf(trace, run) {
  const t = trace || {};
  return {
    gates: items(t, "gates"),
    latencyMs: t.latency_ms ?? null,
    latencyBudgetMs: t.latency_budget_ms ?? null,
    costBudgetUsd: t.cost_budget_usd ?? null,
    output: t.output || (run && run.output) || null,
    summary: t.summary || "",
    signature: t.signature || (run && run.signature) || null,
  };
}

function meter(label, used, budget, fmt) {
  const share = budget ? Math.min(used / budget, 1.5) : 0;
  const over = budget && used > budget;
  return h("div.meter", {},
    h("span.meter-label", { text: label }),
    h("span.meter-value", { text: budget ? `${fmt(used)} of ${fmt(budget)}` : fmt(used) }),
    budget ? h("meter", { min: "0", max: "1.5", low: "0.8", high: "1", optimum: "0.2", value: String(share),
      "aria-label": `${label}: ${fmt(used)} of a ${fmt(budget)} budget${over ? ", over" : ""}`, class: over ? "over" : "" }) : null);
}

function waterfall(spans, gates) {
  if (!spans.length) return h("p.muted", { text: "No spans yet: a run's spans are written as its steps finish." });
  const t0 = Math.min(...spans.map((s) => s.start));
  const total = Math.max(1, Math.max(...spans.map((s) => s.end)) - t0);
  const marks = new Map();
  for (const g of gates) if (g.span) marks.set(g.span, (marks.get(g.span) ?? true) && Boolean(g.passed));
  const rows = spans.map((s) => {
    const left = ((s.start - t0) / total) * 100;
    const width = Math.max(((s.end - s.start) / total) * 100, 0.6);
    const mark = marks.has(s.name) ? (marks.get(s.name) ? "✓" : "✗") : "";
    const failed = s.status === "ERROR";
    const named = s.name + (s.attempt && s.attempt !== 1 ? ` #${s.attempt}` : "");
    return h("li.span", { tabindex: "0", "data-span": s.name,
      "aria-label": `${named}: starts +${fmtMs(s.start - t0)}, takes ${fmtMs(s.end - s.start)}` +
        `${s.tokens ? `, ${s.tokens} tokens` : ""}${s.cost ? `, ${fmtUsd(s.cost)}` : ""}` +
        `${mark ? (mark === "✓" ? ", eval passed" : ", eval failed") : ""}${failed ? ", error" : ""}` },
      h("span.sname", { style: { "--depth": String(s.depth) }, title: named, text: named }),
      h("span.track", {}, h(`span.bar${failed ? ".err" : ""}`, { style: { left: `${left}%`, width: `${Math.min(width, 100 - left)}%` } })),
      h("span.num", { text: fmtMs(s.end - s.start) }),
      h("span.num", { text: fmtInt(s.tokens) }),
      h("span.num", { text: s.cost ? fmtUsd(s.cost) : "" }),
      h(`span.mark${mark === "✗" ? ".fail" : mark ? ".pass" : ""}`, { text: mark + (failed ? " error" : "") }));
  });
  return h("div.waterfall", {},
    h("div.span.head", { "aria-hidden": "true" }, ["span", "timeline", "duration", "tokens", "cost", "eval"].map((t) => h("span", { text: t }))),
    h("ol.spans", { "aria-label": "Spans of the trace, in order" }, rows));
}

function gatesList(gates) {
  if (!gates.length) return null;
  return h("section.card", { "aria-labelledby": "gates-title" },
    h("h2#gates-title", { text: `Evaluator · ${gates.filter((g) => g.passed).length}/${gates.length} gates passed` }),
    h("ul.gates", {}, gates.map((g) => h(`li.${g.passed ? "pass" : "fail"}`, {},
      h("span.mark", { text: g.passed ? "✓" : "✗", "aria-label": g.passed ? "passed" : "failed" }),
      h("strong", { text: g.name }), " ", h("span", { text: g.reason || "" }),
      g.span ? h("span.muted", { text: ` · ${g.span}` }) : null))));
}

function eventsOf(run) {
  return items(run, "events", "timeline", "journal", "steps");
}

function timeline(events) {
  const t0 = events.length ? msOf(events[0], "at_ms", "at") : 0;
  return h("ol.timeline", { "aria-label": "Journal events" }, events.map((e) => h(`li.k-${String(e.kind || "").toLowerCase()}`, {},
    h("span.num", { text: `+${fmtMs(msOf(e, "at_ms", "at") - t0) || "0 ms"}` }),
    h("span.kind", { text: e.kind || e.event || "" }),
    h("span", { text: [e.step, e.attempt && e.attempt > 1 ? `attempt ${e.attempt}` : ""].filter(Boolean).join(" · ") }),
    h("time.muted", { text: fmtTime(msOf(e, "at_ms", "at")) }))));
}

/** POST /runs/{id}/replay's report: the verdict per recorded attempt, what differs, and the report itself. */
function replayReport(report) {
  const attempts = items(report, "attempts");
  const differing = attempts.filter((a) => (a.diff || []).length || !/^(same|match|identical|ok)/i.test(a.verdict || ""));
  const counts = Object.entries(report.counts || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
  return h("section.card#replay", { "aria-labelledby": "replay-title" },
    h("h2#replay-title", { tabindex: "-1", text: "Replay report" }),
    h("p", {}, "Recorded ", badge(report.recorded_status),
      h(`strong.${report.would_complete ? "pass" : "fail"}`, { text: report.would_complete ? " · would complete with the current code" : " · would not complete with the current code" })),
    counts ? h("p.muted", { text: `Attempts: ${counts}. Nothing was written.` }) : h("p.muted", { text: "Nothing was written." }),
    attempts.length ? h("div.scroll", {}, h("table", {},
      h("thead", {}, h("tr", {}, ["Step", "Action", "Attempt", "Verdict", "Differences"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, attempts.map((a) => h("tr", {},
        h("td", { text: a.step }), h("td", { text: a.action }), h("td.num", { text: a.attempt }),
        h(`td.${differing.includes(a) ? "fail" : "pass"}`, { text: a.verdict }),
        h("td", { text: (a.diff || []).join("; ") })))))) : null,
    (report.not_finished || []).length ? h("p.muted", { text: `Not finished: ${report.not_finished.join(", ")}` }) : null,
    h("details", {}, h("summary", { text: "The report as JSON" }), jsonBlock(report, "Replay report")));
}

export async function showRun(view, id) {
  const parts = {
    status: h("span"), decision: h("p.decision", { "aria-live": "polite" }), budgets: h("div.budgets"),
    signature: h("p.signature", { "aria-live": "polite", hidden: "" }),
    trace: h("div"), gates: h("div"), timeline: h("div"), replay: h("div"), live: h("span.live"),
  };
  const replayButton = h("button", { type: "button", on: { click: replay } }, "Replay");
  const word = operatorWord(id, () => afterWord().catch(() => {}));
  fill(view,
    h("p", {}, h("a", { href: "#/runs", text: "← All runs" })),
    h("div.heading", {}, h("h1.runid", { text: id }), parts.status, parts.live,
      h("div.actions", {}, replayButton)),
    parts.decision, parts.signature, parts.budgets,
    h("section.card", { "aria-labelledby": "trace-title" }, h("h2#trace-title", { text: "Trace" }), parts.trace),
    parts.gates,
    h("section.card", { "aria-labelledby": "journal-title" }, h("h2#journal-title", { text: "Journal" }), parts.timeline),
    parts.replay, word.form);

  let run = null;
  let events = [];
  let stop = null;
  let pending = null;
  let closed = false;

  async function load() {
    try {
      run = await get(runPath(id));
    } catch (err) {
      // Just submitted: the gateway took it but no worker has journaled it yet. Its events will say when.
      if (!(err instanceof ApiError) || err.status !== 404 || (run && !run.missing)) throw err;
      run = { run_id: id, status: "ACCEPTED", timeline: [], missing: true };
    }
    if (!run.missing) events = eventsOf(run);
    draw();
    if (!run.missing) await loadTrace();
  }
  async function loadTrace() {
    let trace = null;
    try { trace = await get(`${runPath(id)}/trace`); } catch (err) { if (!(err instanceof ApiError) || err.status !== 404) throw err; }
    if (closed) return;
    const ev = evaluationOf(trace, run);
    const spans = spansOf(trace);
    fill(parts.trace, waterfall(spans, ev.gates));
    fill(parts.gates, gatesList(ev.gates));
    const root = spans.find((s) => s.name === "orchestrator.run");
    const queued = root ? Number(root.attrs["durable.queued_ms"] || 0) : 0;
    const latency = ev.latencyMs ?? (root ? root.end - root.start - queued : 0);
    const tokens = spans.reduce((a, s) => a + (s.tokens || 0), 0);
    const cost = spans.reduce((a, s) => a + (s.cost || 0), 0);
    fill(parts.budgets, spans.length ? [
      meter("Latency", latency, ev.latencyBudgetMs, fmtMs),
      meter("Cost", cost, ev.costBudgetUsd, (v) => fmtUsd(v, 4)),
      h("div.meter", {}, h("span.meter-label", { text: "Tokens" }), h("span.meter-value", { text: fmtInt(tokens) || "0" })),
      ev.gates.length ? h("div.meter", {}, h("span.meter-label", { text: "Evals" }),
        h("span.meter-value", { text: `${ev.gates.filter((g) => g.passed).length}/${ev.gates.length}` })) : null,
    ] : []);
    const line = decisionLine(ev.output, ev.summary);
    parts.decision.textContent = line;
    parts.decision.hidden = !line;
    const sig = ev.signature;
    parts.signature.textContent = signatureLine(sig);
    parts.signature.className = `signature sig-${sig ? sig.status : "none"}`;
    parts.signature.hidden = !sig;
  }
  function status() {
    const s = String((run && run.status) || "UNKNOWN").toUpperCase();
    return s;
  }
  function draw() {
    fill(parts.status, badge(status()), run && run.version ? h("span.muted", { text: ` version ${run.version}` }) : null);
    fill(parts.timeline, events.length ? timeline(events) : h("p.muted", { text: "No journal events yet." }));
    replayButton.hidden = Boolean(session.role) && session.role !== "operator";
    word.update(run && !run.missing ? status() : "");
  }
  function onEvent(msg) {
    let e;
    try { e = JSON.parse(msg.data); } catch { return; }
    if (!e || typeof e !== "object") return;
    const key = e.event_id || `${e.seq}`;
    if (!events.some((x) => (x.event_id || `${x.seq}`) === key)) events.push(e);
    events.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    draw();
    clearTimeout(pending);
    // The run's own view after each event (its status); a finished run's last spans are written just after
    // its last event, so the trace is read once more a little later.
    pending = setTimeout(() => load().catch(() => {}), ENDS.has(e.kind) ? 600 : 300);
  }
  async function replay() {
    fill(parts.replay, h("section.card", {}, h("p.muted", { text: "Replaying from the journal…" })));
    try {
      const report = await post(`${runPath(id)}/replay`);
      fill(parts.replay, replayReport(report));
      document.getElementById("replay-title").focus();
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) session.remember("", session.role || "not operator");
      fill(parts.replay, h("section.card", {}, h("p.error", { role: "alert", text: `Replay: ${err.message}` })));
      draw();
    }
  }

  // After an operator's word the run moves again once a worker applies it (a rolled-back run had ended, and
  // its event stream would end at once): read it until its status changes, then follow it live.
  async function afterWord() {
    const before = status();
    for (let i = 0; i < 40 && !closed && status() === before; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250)); // polling the run, bounded to 10 s
      await load();
    }
    if (!TERMINAL.has(status())) followLive();
  }
  function followLive() {
    if (stop || closed) return;
    parts.live.textContent = "● live";
    stop = follow(`${runPath(id)}/events`, onEvent, (err) => {
      stop = null;
      parts.live.textContent = "";
      if (err && !closed) say(`Live events stopped: ${err.message}`, "error");
      if (!closed) load().catch(() => {});
    });
  }

  await load();
  if (!TERMINAL.has(status())) followLive();
  return () => { closed = true; clearTimeout(pending); if (stop) stop(); };
}
