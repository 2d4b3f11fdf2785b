// Dead letters: the error, traceback and input of each, and a redrive button for operators.
import { ApiError, get, items, letterPath, post, session } from "./api.js";
import { fill, fmtTime, h, jsonBlock, msOf, say } from "./dom.js";

const idOf = (d) => d.id || d.letter_id || d.dead_letter_id || d.key;

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
      h("span.muted", { text: [d.step, fmtTime(msOf(d, "at_ms", "failed_at_ms", "at", "created_at"))].filter(Boolean).join(" · ") }),
      h("span.errline", { text: firstLine(d.error || d.reason || d.error_message) })),
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

function draw(body, full, summary) {
  const letter = full.dead_letter || full.letter || full;
  const id = idOf(letter) || idOf(summary);
  const result = h("p", { role: "status" });
  const button = h("button", { type: "button", "data-action": "redrive",
    disabled: session.role && session.role !== "operator", on: { click: redrive } }, "Redrive");
  const traceback = letter.traceback || letter.stack || (Array.isArray(letter.attempts)
    ? letter.attempts.map((a) => a.traceback || a.error || "").filter(Boolean).join("\n\n") : "");
  fill(body,
    h("dl.facts", {},
      ["run_id", "workflow", "step", "attempts", "redrivable"].filter((k) => letter[k] !== undefined && typeof letter[k] !== "object")
        .map((k) => [h("dt", { text: k.replace("_", " ") }), h("dd", { text: String(letter[k]) })])),
    h("h3", { text: "Error" }), h("pre.err", { tabindex: "0", text: letter.error || letter.reason || letter.error_message || "" }),
    traceback ? [h("h3", { text: "Traceback" }), jsonBlock(traceback, "Traceback")] : null,
    h("h3", { text: "Input" }), jsonBlock(letter.input ?? letter.record ?? letter.payload ?? {}, "Input"),
    h("div.actions", {}, button, result));

  async function redrive() {
    button.disabled = true;
    result.textContent = "Redriving…";
    try {
      const answer = await post(`${letterPath(id)}/redrive`);
      result.textContent = `Redriven: ${answer.detail || answer.status || answer.message || "sent back to its run"}`;
      result.className = "pass";
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) session.remember("", session.role || "not operator");
      result.textContent = `Not redriven: ${err.message}`;
      result.className = "error";
      button.disabled = err instanceof ApiError && err.status === 403;
    }
  }
}
