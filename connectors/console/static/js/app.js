// The console's shell: sign in, sign out, and which view the URL's fragment asks for.
import { ApiError, get, session } from "./api.js";
import { fill, say } from "./dom.js";
import { showLetters } from "./letters.js";
import { showRun } from "./run.js";
import { showRuns } from "./runs.js";

const $ = (id) => document.getElementById(id);
let leave = null; // the current view's clean-up (timers, event streams)
let shown = 0; // which navigation the view on screen belongs to: a view still loading when the user moves on is ended

function signedIn(yes) {
  $("signin").hidden = yes;
  $("nav").hidden = !yes;
  $("signout").hidden = !yes;
  $("view").hidden = !yes;
  $("who").textContent = yes ? [session.tenant && `tenant ${session.tenant}`, session.role].filter(Boolean).join(" · ") : "";
}

async function route() {
  if (leave) { leave(); leave = null; }
  say("");
  if (!session.key) {
    signedIn(false);
    $("apikey").focus();
    return;
  }
  signedIn(true);
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const view = $("view");
  fill(view);
  for (const a of document.querySelectorAll("#nav a")) {
    const current = hash.startsWith(`/${a.dataset.section}`);
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const [, section, ...rest] = hash.split("/");
  const id = rest.length ? decodeURIComponent(rest.join("/")) : "";
  const mine = ++shown;
  try {
    const end = section === "runs" && id ? await showRun(view, id)
      : section === "deadletters" ? await showLetters(view, id) : await showRuns(view);
    if (mine === shown) leave = end; else end();
  } catch (err) {
    say(err instanceof ApiError ? `${err.status}: ${err.message}` : String(err), "error");
  }
}

async function signIn(event) {
  event.preventDefault();
  const key = $("apikey").value.trim();
  $("signin-error").textContent = "";
  if (!key) return;
  session.clear();
  session.key = key;
  try {
    const me = await whoAmI();
    session.remember(me.tenant, me.role);
    $("apikey").value = "";
    if (!location.hash || location.hash === "#") location.hash = "#/runs"; else await route();
    $("main").focus();
  } catch (err) {
    session.clear();
    $("signin-error").textContent = err instanceof ApiError && err.status === 401
      ? "That key was not accepted (unknown, revoked or malformed)."
      : `Could not sign in: ${err.message}`;
  }
}

/** Who the key is: the gateway's own answer where it has one, else a read that proves the key works. */
async function whoAmI() {
  try {
    const me = await get("/whoami");
    return { tenant: me.tenant || "", role: me.role || "" };
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 401) throw err;
  }
  await get("/runs", { limit: 1 });
  return { tenant: "", role: "" };
}

window.addEventListener("durable:unauthorized", () => {
  session.clear();
  signedIn(false);
  $("signin-error").textContent = "The key is no longer accepted; sign in again.";
});
window.addEventListener("hashchange", route);
$("signin-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", () => { session.clear(); location.hash = ""; route(); });
route();
