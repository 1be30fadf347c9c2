// The dashboard's entry point: the header, the token, the router, the notices.
// Views live in view-*.js; each is `async (main, params, ctx) => void` and
// stops its polling when ctx.signal aborts (the user went elsewhere).

import {api, token} from "./api.js";
import {clear, h} from "./dom.js";
import {deadLetter, deadLetters} from "./view-deadletters.js";
import {groups} from "./view-groups.js";
import {overview} from "./view-overview.js";
import {stream, streams} from "./view-streams.js";
import {topic} from "./view-topics.js";
import {trace} from "./view-trace.js";

const ROUTES = [
  [/^overview$/, overview, "overview"],
  [/^groups$/, groups, "groups"],
  [/^deadletters$/, deadLetters, "deadletters"],
  [/^deadletters\/(.+)$/, deadLetter, "deadletters"],
  [/^streams$/, streams, "streams"],
  [/^streams\/(.+)$/, stream, "streams"],
  [/^topics\/(.+)$/, topic, "overview"],
  [/^trace(?:\/(.+))?$/, trace, "trace"],
];

const main = document.getElementById("view");
const notice = document.getElementById("notice");
let info = {app: "", auth: false, store: false, poll_seconds: 2, retry_prefixes: [], dead_letter_prefixes: []};
let current = null; // AbortController of the view on screen
let keepNotice = false;

function notify(text, kind = "info") {
  notice.hidden = !text;
  notice.className = kind;
  notice.textContent = text || "";
}

export function explain(error) {
  if (error.status === 401) {
    return "This gateway needs a valid token: paste one in the Token field above " +
      "(scope read to look; admin to replay or discard).";
  }
  if (error.status === 403) return `Not allowed: ${error.detail}`;
  return error.detail || error.message || String(error);
}

function fail(error) {
  if (error && error.name === "AbortError") return;
  notify(explain(error), "error");
}

const dialog = document.getElementById("confirm");
/** A modal question; resolves true when the user confirms. */
function confirmAction(text, okLabel = "OK") {
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => () => {
      ok.onclick = null;
      document.getElementById("confirm-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    ok.onclick = done(true);
    document.getElementById("confirm-cancel").onclick = done(false);
    dialog.onclose = done(false);
    dialog.showModal();
  });
}

function go(hash, {keep = false} = {}) {
  keepNotice = keep;
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  if (current) current.abort();
  current = new AbortController();
  if (!keepNotice) notify("");
  keepNotice = false;
  const route = location.hash.replace(/^#\/?/, "").split("?")[0] || "overview";
  let found = null;
  for (const [pattern, view, tab] of ROUTES) {
    const match = pattern.exec(route);
    if (match) { found = [view, tab, match.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p)))]; break; }
  }
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", found !== null && link.dataset.view === found[1]);
  }
  clear(main);
  if (found === null) {
    main.append(h("h1", {text: "Not found"}), h("p", {}, "No view ", h("code", {text: route}), ". ",
      h("a", {href: "#/overview", text: "Back to the overview"})));
    return;
  }
  if (info.auth && !token.get()) {
    notify("This gateway needs a token: paste one in the Token field above " +
      "(scope read to look; admin to replay or discard).", "error");
  }
  const [view, , params] = found;
  const ctx = {signal: current.signal, info, notify, fail, confirm: confirmAction, go};
  try {
    await view(main, params, ctx);
  } catch (error) {
    fail(error);
  }
}

function setupToken() {
  const input = document.getElementById("token");
  const showState = () => { input.placeholder = token.get() ? "token set (this tab only)" : "bearer token"; };
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    input.value = "";
    showState();
    render();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    token.set("");
    input.value = "";
    showState();
    render();
  });
  showState();
}

async function start() {
  setupToken();
  try {
    info = await api("api/dashboard/info");
    document.getElementById("app-name").textContent = info.app;
    document.title = `herald: ${info.app}`;
  } catch (error) {
    fail(error);
  }
  window.addEventListener("hashchange", render);
  await render();
  document.body.dataset.ready = "true";
}

start();
