// An operator's word on a run: compensate a PAUSED one (undo it), roll back a COMPLETED one (retract its decision).
// The gateway checks the run and signs the request (POST /api/v1/runs/{id}/compensate|rollback); this form asks why.
import { ApiError, post, runPath, session } from "./api.js";
import { fill, h } from "./dom.js";

const WORDS = {
  PAUSED: { action: "compensate", label: "Compensate", hint: "Undo the run's completed steps, newest first (a redrive of its dead letter resumes it instead)." },
  COMPLETED: { action: "rollback", label: "Roll back", hint: "Undo the run's steps, newest first, and retract its decision." },
};

/** The form for a run's page; `update(status)` shows it for a status it applies to, `onDone` reloads the run. */
export function operatorWord(id, onDone) {
  const reason = h("input#word-reason", { name: "reason", required: true, maxlength: 500, autocomplete: "off" });
  const hint = h("p.muted");
  const submit = h("button", { type: "submit" });
  const result = h("p", { role: "status" });
  let word = null;
  const form = h("form.card.word", { "aria-labelledby": "word-title", hidden: "", on: { submit: send } },
    h("h2#word-title", { text: "Operator" }), hint,
    h("label", { for: "word-reason", text: "Reason (recorded with your key; personal data is redacted)" }), reason,
    h("div.actions", {}, submit), result);

  async function send(ev) {
    ev.preventDefault();
    if (!word || !reason.value.trim()) return;
    submit.disabled = true;
    try {
      const answer = await post(`${runPath(id)}/${word.action}`, { reason: reason.value });
      result.textContent = `${word.label}: ${answer.status}.`;
      reason.value = "";
      onDone();
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) session.remember("", session.role || "not operator");
      fill(result, h("span.error", { role: "alert", text: `${word.label}: ${err.message}` }));
    } finally {
      submit.disabled = false;
    }
  }

  function update(status) {
    word = WORDS[status] || null;
    const operator = !session.role || session.role === "operator";
    form.hidden = !word || !operator;
    if (!word) return;
    hint.textContent = word.hint;
    submit.textContent = word.label;
  }
  return { form, update };
}
