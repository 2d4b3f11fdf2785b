// The runs list: filter by status and start time, refreshed live every two seconds while "live" is on.
import { get, items } from "./api.js";
import { badge, fill, fmtMs, fmtTime, h, msOf, say } from "./dom.js";
import { decisionLine } from "./run.js";

const STATUSES = ["", "RUNNING", "COMPLETED", "FAILED", "COMPENSATING", "COMPENSATED", "PAUSED"];
const SINCE = [["", "any time"], ["900", "last 15 min"], ["3600", "last hour"], ["86400", "last 24 h"], ["604800", "last 7 days"]];
const EVERY_MS = 2000;
const state = { status: "", since: "", live: true };

export async function showRuns(view) {
  const body = h("tbody");
  const count = h("p.muted", { "aria-live": "polite" });
  const select = (id, label, options, key) => h("label", { for: id }, label,
    h(`select#${id}`, { on: { change: (e) => { state[key] = e.target.value; refresh(); } } },
      options.map(([v, t]) => h("option", { value: v, selected: state[key] === v }, t))));
  const live = h("input#live", { type: "checkbox", checked: state.live,
    on: { change: (e) => { state.live = e.target.checked; schedule(); } } });
  fill(view,
    h("div.heading", {}, h("h1", { text: "Runs" }),
      h("form.filters", { on: { submit: (e) => e.preventDefault() } },
        select("f-status", "Status", STATUSES.map((s) => [s, s || "any status"]), "status"),
        select("f-since", "Started", SINCE, "since"),
        h("label.check", { for: "live" }, live, "Live"))),
    h("div.scroll", {}, h("table.runs", {},
      h("caption.sr", { text: "Runs, newest first" }),
      h("thead", {}, h("tr", {}, ["Run", "Status", "Started", "Took", "Decision"].map((t) => h("th", { scope: "col", text: t })))),
      body)),
    count);

  let timer = null;
  let stopped = false;
  async function refresh() {
    const query = { limit: 100, status: state.status || undefined };
    if (state.since) query.since = new Date(Date.now() - Number(state.since) * 1000).toISOString();
    try {
      const runs = items(await get("/runs", query), "runs");
      if (stopped) return;
      fill(body, runs.map(row));
      if (!runs.length) fill(body, h("tr", {}, h("td.muted", { colspan: "5", text: "No runs match." })));
      count.textContent = `${runs.length} run(s)${state.live ? " · live" : ""}`;
    } catch (err) {
      say(`Runs: ${err.message}`, "error");
    }
    schedule();
  }
  function schedule() {
    clearTimeout(timer);
    if (state.live && !stopped) timer = setTimeout(refresh, EVERY_MS);
  }
  await refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

/** What the decision cell says when the gateway withheld the decision (its signature did not verify). */
function withheld(sig) {
  if (!sig || sig.status === "verified" || sig.status === "unsigned") return "";
  return sig.status === "invalid" ? "✗ withheld: signature invalid" : "withheld: not yet verified";
}

function row(run) {
  const id = run.run_id || run.id;
  const started = msOf(run, "started_at_ms", "started_ms");
  const last = msOf(run, "last_event_at_ms", "last_ms");
  const decision = run.decision || run.output;
  return h("tr", { "data-run": id },
    h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(id)}`, text: id })),
    h("td", {}, badge(run.status)),
    h("td", { text: fmtTime(started) }),
    h("td.nowrap", { text: started && last ? fmtMs(last - started) : "" }),
    h("td.dline", { text: decision ? decisionLine(decision, run.summary) : withheld(run.signature) }));
}
