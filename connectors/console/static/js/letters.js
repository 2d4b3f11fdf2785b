// Dead letters: the error, traceback and input of each, and a redrive button for operators.
import { ApiError, get, items, letterPath, post, session } from "./api.js";
import { fill, fmtTime, h, jsonBlock, msOf, say } from "./dom.js";

const idOf = (d) => d.dead_letter_id || d.id;

function firstLine(text) {
  return String(text || "").split("\n").find((l) => l.trim()) || "";
}

export async function showLetters(view, openId) {
  const list = h("ul.letters", { "aria-label": "Dead letters" });
  const count = h("p.muted", { "aria-live": "polite" });
  fill(view,
    h("div.heading", {}, h("h1", { text: "Dead letters" }),
      h("button.quiet", { type: "button", on: { click: () => refresh() } }, "Refresh")),
    count, list);

  async function refresh() {
    let letters;
    try {
      letters = items(await get("/deadletters"), "deadletters", "dead_letters", "letters");
    } catch (err) {
      fill(list);
      say(err instanceof ApiError && err.status === 403 ? `Dead letters: ${err.message}` : `Dead letters: ${err.message}`, "error");
      return;
    }
    count.textContent = letters.length ? `${letters.length} dead letter(s)` : "No dead letters.";
    fill(list, letters.map((d) => item(d, idOf(d) === openId)));
  }
  await refresh();
  return () => {};
}

function item(d, open) {
  const id = idOf(d);
  const body = h("div.letter-body");
  const details = h("details.card", { "data-letter": id, open },
    h("summary", {},
      h("strong", { text: d.run_id || id }), " ",
      h("span.muted", { text: [d.kind, d.step, fmtTime(msOf(d, "at_ms"))].filter(Boolean).join(" · ") }),
      h(`span.badge.s-${d.status === "open" ? "failed" : "completed"}`, { text: d.status || "" }),
      h("span.errline", { text: [d.error_type, firstLine(d.reason)].filter(Boolean).join(": ") })),
    body);
  let loaded = false;
  const load = async () => {
    if (loaded) return;
    loaded = true;
    try {
      draw(body, await get(letterPath(id)), d);
    } catch (err) {
      loaded = false;
      fill(body, h("p.error", { role: "alert", text: err.message }));
    }
  };
  details.addEventListener("toggle", () => { if (details.open) load(); });
  if (open) load();
  return h("li", {}, details);
}

/** One letter as GET /deadletters/{id} gives it (`durable dlq show`): why, where from, each attempt, the input. */
function draw(body, letter, summary) {
  const id = idOf(letter) || idOf(summary);
  const result = h("p", { role: "status" });
  const operator = !session.role || session.role === "operator";
  const button = operator && letter.status !== "redriven" && ["step", "compensation"].includes(letter.kind)
    ? h("button", { type: "button", "data-action": "redrive", on: { click: redrive } }, "Redrive") : null;
  const attempts = Array.isArray(letter.attempts) ? letter.attempts : [];
  const traceback = attempts.map((a, i) => [`${a.action || "attempt"} #${a.attempt ?? i + 1}${a.worker ? ` on ${a.worker}` : ""}: ${a.type || ""}: ${a.message || ""}`,
    a.traceback || ""].filter(Boolean).join("\n")).join("\n\n") || letter.traceback || "";
  fill(body,
    h("dl.facts", {},
      ["dead_letter_id", "run_id", "workflow", "step", "attempt", "kind", "status", "source_topic", "source_partition", "source_offset"]
        .filter((k) => letter[k] !== undefined && letter[k] !== null && typeof letter[k] !== "object")
        .map((k) => [h("dt", { text: k.replaceAll("_", " ") }), h("dd", { text: String(letter[k]) })])),
    h("h3", { text: "Error" }), h("pre.err", { tabindex: "0", text: [letter.error_type, letter.reason].filter(Boolean).join(": ") }),
    traceback ? [h("h3", { text: "Traceback" }), jsonBlock(traceback, "Traceback")] : null,
    h("h3", { text: "Input" }), jsonBlock(letter.input ?? letter.payload ?? {}, "Input"),
    letter.redrive ? [h("h3", { text: "Redrive" }), jsonBlock(letter.redrive, "Redrive")] : null,
    h("div.actions", {}, button, result));

  async function redrive() {
    button.disabled = true;
    result.textContent = "Redriving…";
    try {
      const answer = await post(`${letterPath(id)}/redrive`);
      result.textContent = `Redrive ${answer.status}: run ${answer.run_id} resumes at its dead-lettered step.`;
      result.className = "pass";
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) session.remember("", session.role || "not operator");
      result.textContent = `Not redriven: ${err.message}`;
      result.className = "error";
      button.disabled = err instanceof ApiError && err.status === 403;
    }
  }
}
