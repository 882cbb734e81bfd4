// The Nexum page: sessions, one session's calls, one call's result and history, from the JSON API.
// Every stored text reaches the page through textContent (results are web pages chosen by a
// language model); the token is sent as an Authorization header, never in a URL.
"use strict";

const REFRESH_MS = 2000;
const SESSIONS_PAGE = 50;
const CALLS_PAGE = 200;
const TOKEN_KEY = "nexum-token";

const state = { nextNotice: null, sessionPages: 1, callPages: 1, timer: null, busy: false, again: false, filter: "", skew: 0 };
const $ = (id) => document.getElementById(id);

// --- DOM: elements built from text, never from markup ---------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "className") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(id, visible) { $(id).hidden = !visible; }

function fact(label, value) {
  return el("div", null, el("dt", null, label), el("dd", null, value));
}

function statusBadge(status) { return el("span", { className: `status ${status}` }, status); }

// --- formatting -----------------------------------------------------------------------------------

function seconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// The server's clock, as of its last answer: times are compared with it, never with this machine's.
function serverNow() { return Date.now() / 1000 + state.skew; }
function keepServerTime(page) { state.skew = page.server_time - Date.now() / 1000; }

function ago(ts) {
  const s = serverNow() - ts;
  if (s < 5) return "just now";
  if (s < 120) return `${Math.round(s)} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }

function json(value) { return JSON.stringify(value, null, 2); }

function between(start, end) { return start && end ? seconds(end - start) : ""; }

// A call ran from its last attempt's start: a crash and the wait for a resume are not running time.
function lastAttempt(c) { return c.attempt_started_at || c.started_at; }
// Earlier attempts and the waits between them, shown apart from the running time.
function beforeLastAttempt(c) {
  return c.attempt_started_at && c.started_at && c.attempt_started_at > c.started_at
    ? seconds(c.attempt_started_at - c.started_at) : "";
}

// --- the API --------------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized(token ? "That token is not this server's." : "");
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") search.set(k, v);
  return search.toString();
}

// --- routing: #/ , #/sessions/<id> , #/sessions/<id>/calls/<execution id> -------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "sessions" && parts[1]) {
    if (parts[2] === "calls" && parts[3]) return { name: "call", session: parts[1], call: parts[3] };
    return { name: "session", session: parts[1] };
  }
  return { name: "sessions" };
}

function sessionHref(id) { return `#/sessions/${encodeURIComponent(id)}`; }
function callHref(session, id) { return `${sessionHref(session)}/calls/${encodeURIComponent(id)}`; }

// --- views ----------------------------------------------------------------------------------------

async function renderSessions() {
  const limit = Math.min(SESSIONS_PAGE * state.sessionPages, 500);
  const page = await api(`/v1/sessions?${query({ limit, contains: state.filter })}`);
  keepServerTime(page);
  const rows = page.sessions.map((s) => {
    const row = el("tr", { className: "link", "data-session": s.session_id },
      el("td", { className: "mono wrap" }, el("a", { href: sessionHref(s.session_id) }, s.session_id)),
      el("td", { className: "n" }, s.calls),
      el("td", { className: "n" }, s.cached_hits),
      el("td", { className: "n" }, s.completed),
      el("td", { className: "n" }, s.failed),
      el("td", { className: "n" }, s.running + s.pending),
      el("td", { title: when(s.last_activity) }, ago(s.last_activity)),
      el("td", { className: "n", title: "tool calls · model requests" },
        `${seconds(s.tool_seconds_saved) || "0 ms"} · ${seconds(s.model_seconds_saved) || "0 ms"}`));
    row.addEventListener("click", (event) => {
      if (!(event.target instanceof HTMLAnchorElement)) location.hash = sessionHref(s.session_id);
    });
    return row;
  });
  $("sessions").tBodies[0].replaceChildren(...rows);
  $("sessions-empty").textContent = state.filter ? "No session id contains that text."
    : "No sessions yet. Run the agent (make demo) and its calls appear here.";
  show("sessions-empty", rows.length === 0);
  show("more-sessions", Boolean(page.next_cursor) && limit < 500);
}

// --- waits: runs waiting for an answer; pending calls and their arguments are shown as text -------

function pendingCalls(wait) {
  if (!wait.request.calls.length) return [el("div", { className: "wf" }, wait.name)];
  return wait.request.calls.map((c) => el("div", { className: "pending" },
    el("span", { className: "tool" }, c.tool_name), " ",
    el("code", { className: "mono wrap args" }, JSON.stringify(c.args)),
    c.kind === "approval" ? null : el("span", { className: "wf" }, ` (${c.kind})`)));
}

function decisionButtons(wait) {
  if (wait.status !== "WAITING") return [];
  const approvals = wait.request.calls.some((c) => c.kind === "approval");
  return [
    approvals ? el("button", { type: "button", className: "approve", onclick: () => decide(wait, "approve") },
      "Approve") : null,
    el("button", { type: "button", className: "danger deny", onclick: () => decide(wait, "deny") }, "Deny"),
  ];
}

async function renderWaits() {
  const page = await api(`/v1/events?${query({ status: "waiting" })}`);
  keepServerTime(page);
  const items = page.waits.map((w) => el("li", { className: "wait", "data-token": w.token },
    el("div", { className: "what" }, el("a", { className: "mono", href: sessionHref(w.session_id) }, w.session_id),
      ` · waiting ${ago(w.created_at)}`, w.expires_at ? ` · times out ${ago(w.expires_at)}` : ""),
    ...pendingCalls(w),
    el("div", { className: "actions" }, ...decisionButtons(w))));
  $("waits").replaceChildren(...items);
  show("waits-box", items.length > 0);
}

async function renderSessionWaits(sessionId) {
  const page = await api(`/v1/events?${query({ session_id: sessionId })}`);
  const rows = page.waits.map((w) => el("tr", { "data-token": w.token },
    el("td", null, w.name),
    el("td", null, ...pendingCalls(w)),
    el("td", null, statusBadge(w.status)),
    el("td", { title: when(w.created_at) }, ago(w.created_at)),
    el("td", { className: "resolved-by" }, w.resolved_by || ""),
    el("td", { title: when(w.resolved_at) }, w.resolved_at ? when(w.resolved_at) : ""),
    el("td", { className: "actions" }, ...decisionButtons(w))));
  $("session-waits").tBodies[0].replaceChildren(...rows);
  show("session-waits-box", rows.length > 0);
}

async function decide(wait, decision) {
  const calls = wait.request.calls.map((c) => `${c.tool_name}(${JSON.stringify(c.args)})`).join("\n");
  let body;
  if (decision === "approve") {
    if (!confirm(`Approve for session "${wait.session_id}"?\n\n${calls}`)) return;
    body = { decision: "approve", by: "the page" };
  } else {
    const reason = prompt(`Deny for session "${wait.session_id}"?\n\n${calls}\n\nWhat should the model be told?`,
      "Denied from the Nexum page.");
    if (reason === null) return;
    body = { decision: "deny", reason: reason || "Denied from the Nexum page.", by: "the page" };
  }
  try {
    await api(`/v1/events/${encodeURIComponent(wait.token)}`, { method: "POST", body: JSON.stringify(body) });
    notice(`${decision === "approve" ? "Approved" : "Denied"} for session ${wait.session_id}.`);
  } catch (error) {
    if (error instanceof Unauthorized) askToken(error.message);
    else notice(`Not resolved: ${error.message}`);
  }
  refresh();
}

async function renderSession(sessionId) {
  $("session-title").textContent = sessionId;
  const limit = Math.min(CALLS_PAGE * state.callPages, 1000);
  let summary;
  try {
    summary = await api(`/v1/sessions/${encodeURIComponent(sessionId)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    summary = null;
  }
  const page = await api(`/v1/calls?${query({ session_id: sessionId, limit })}`);
  keepServerTime(page);
  const counts = summary ? [
    fact("Calls", summary.calls), fact("Cached hits", summary.cached_hits), fact("Executed", summary.completed),
    fact("Failed", summary.failed), fact("Running", summary.running), fact("Waiting", summary.pending),
    ...(summary.interrupted ? [fact("Interrupted", summary.interrupted)] : []),
    fact("Tool time saved", seconds(summary.tool_seconds_saved) || "0 ms"),
    fact("Model time saved", seconds(summary.model_seconds_saved) || "0 ms"),
    fact("Last activity", ago(summary.last_activity)),
  ] : [fact("Calls", 0)];
  if (summary && summary.forked_from) {
    const until = summary.fork_until === null ? "all completed calls" : `its first ${summary.fork_until} calls`;
    counts.push(fact("Forked from", el("span", null, el("a", { href: sessionHref(summary.forked_from) },
      summary.forked_from), ` (${until})`)));
  }
  $("session-counts").replaceChildren(...counts);
  show("forget", Boolean(summary));
  show("fork", Boolean(summary));
  const rows = page.calls.map((c) => {
    const name = c.tool !== null
      ? el("td", null, el("a", { className: "tool", href: callHref(sessionId, c.id) }, c.tool))
      : el("td", null, el("a", { className: "tool", href: callHref(sessionId, c.id) }, c.workflow_id),
        el("div", { className: "wf" }, "workflow"));
    const row = el("tr", { className: "link", "data-call": c.id },
      name,
      el("td", { className: "mono wrap", title: c.summary }, c.summary),
      el("td", null, statusBadge(c.status)),
      el("td", { className: "n" }, `${c.attempts} / ${c.max_attempts}`),
      el("td", { className: "n" }, between(c.created_at, c.started_at)),
      el("td", { className: "n" }, c.status === "RUNNING" ? seconds(serverNow() - lastAttempt(c)) + "…"
        : between(lastAttempt(c), c.completed_at)),
      el("td", { className: "n" }, beforeLastAttempt(c)),
      el("td", { className: "mono" }, c.worker_id || ""),
      el("td", { className: "n" }, c.hits),
      el("td", { className: "err" }, c.error || ""));
    row.addEventListener("click", (event) => {
      if (!(event.target instanceof HTMLAnchorElement)) location.hash = callHref(sessionId, c.id);
    });
    return row;
  });
  $("calls").tBodies[0].replaceChildren(...rows);
  $("calls-empty").textContent = summary ? "No calls stored for this session."
    : "No session with this id: nothing is stored under it (never run, or forgotten).";
  show("calls-empty", rows.length === 0);
  await renderSessionWaits(sessionId);
  show("more-calls", Boolean(page.next_cursor) && limit < 1000);
}

async function renderCall(sessionId, callId) {
  const link = $("call-session");
  link.textContent = sessionId;
  link.setAttribute("href", sessionHref(sessionId));
  $("call-title").textContent = callId;
  const e = await api(`/v1/executions/${encodeURIComponent(callId)}`);
  const input = e.input || {};
  const tool = typeof input.tool === "string" ? input.tool : typeof input.tool_name === "string" ? input.tool_name : null;
  // What the call is, once: a tool, an agent's model request, or else only its workflow (below).
  const what = tool !== null ? fact("Tool", tool)
    : input.unit === "model_request" ? fact("Call", `model request (${input.model})`) : null;
  $("call-facts").replaceChildren(
    ...(what ? [what] : []),
    fact("Status", statusBadge(e.status)),
    fact("Attempts", `${e.attempts} of ${e.max_attempts}`),
    fact("Queued", between(e.created_at, e.started_at)),
    fact("Ran", between(lastAttempt(e), e.completed_at)),
    ...(beforeLastAttempt(e) ? [fact("Before the last attempt", beforeLastAttempt(e))] : []),
    fact("Worker", e.worker_id || "—"),
    fact("Created", when(e.created_at)),
    fact("Ended", when(e.completed_at) || "—"),
    fact("Workflow", `${e.workflow_id} ${e.version_hash.slice(0, 19)}…`),
    fact("Key", e.key));
  await renderRequest(e);
  $("call-input").textContent = json(e.input);
  $("call-error").textContent = e.error || "";
  show("call-error", Boolean(e.error));
  show("call-error-title", Boolean(e.error));
  const result = e.result;
  $("call-result").textContent = result === null || result === undefined
    ? (e.status === "COMPLETED" ? "null" : `No result: the call is ${e.status}.`)
    : (result && typeof result.result === "string" ? result.result : json(result));
  const history = await api(`/v1/executions?${query({ session_id: sessionId, key: e.key, limit: 100 })}`);
  const rows = history.executions.filter((h) => h.workflow_id === e.workflow_id).map((h) =>
    el("tr", { className: h.id === e.id ? "" : "link" },
      el("td", { className: "mono" }, h.id === e.id ? `${h.id} (this one)` : el("a", { href: callHref(sessionId, h.id) }, h.id)),
      el("td", null, statusBadge(h.status)),
      el("td", { className: "n" }, `${h.attempts} / ${h.max_attempts}`),
      el("td", null, when(h.started_at)),
      el("td", null, when(h.completed_at)),
      el("td", { className: "mono" }, h.worker_id || ""),
      el("td", { className: "err" }, h.error || "")));
  $("history").tBodies[0].replaceChildren(...rows);
}

// A model request: what it was sent, part by part (new since the session's previous request
// marked), and its response. Long parts fold; every text goes in through textContent.
const FOLD_CHARS = 600;
const PART_LABELS = { "system-prompt": "system", "user-prompt": "user", "tool-return": "tool result",
  "retry-prompt": "retry", text: "text", thinking: "thinking", "tool-call": "tool call" };

function partsOf(message) {
  if (!message || typeof message !== "object") return [["message", json(message)]];
  const found = message.instructions ? [["instructions", String(message.instructions)]] : [];
  for (const part of message.parts || []) {
    const kind = part && part.part_kind;
    let label = PART_LABELS[kind] || kind || "part";
    let text;
    if (kind === "tool-call") text = `${part.tool_name}(${typeof part.args === "string" ? part.args : json(part.args)})`;
    else if (part && "content" in part) text = typeof part.content === "string" ? part.content : json(part.content);
    else text = json(part);
    if ((kind === "tool-return" || kind === "retry-prompt") && part.tool_name) label = `${label} ${part.tool_name}`;
    found.push([label, text]);
  }
  return found;
}

function partView(label, text, isNew) {
  const body = text.length <= FOLD_CHARS ? el("pre", null, text)
    : el("details", null, el("summary", null, `${text.slice(0, 160)}… (${text.length} characters)`), el("pre", null, text));
  return el("div", { className: isNew ? "part new" : "part" },
    el("div", { className: "label" }, isNew ? `${label} · new` : label), body);
}

async function renderRequest(e) {
  const isResponse = e.result && typeof e.result === "object" && e.result.kind === "response";
  const sent = await api(`/v1/executions/${encodeURIComponent(e.id)}/sent`);
  show("call-request", sent.messages.length > 0 || isResponse);
  const views = [];
  for (const m of sent.messages) {
    for (const [label, text] of partsOf(m.body === null ? { parts: [{ content: "(no longer stored)" }] } : m.body)) {
      views.push(partView(label, text, m.new));
    }
  }
  $("call-sent").replaceChildren(...views);
  const fresh = sent.messages.filter((m) => m.new).length;
  $("call-sent-summary").textContent = `${sent.messages.length} message(s), ${fresh} new since the previous model request` +
    (sent.complete ? "" : "; older ones were deleted by retention");
  const response = isResponse ? partsOf(e.result).map(([label, text]) => partView(label, text, false)) : [];
  if (isResponse && e.result.usage) {
    const usage = Object.entries(e.result.usage).filter(([, v]) => typeof v === "number" && v)
      .map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(", ");
    response.push(partView("usage", usage || "none reported", false));
  }
  $("call-response").replaceChildren(...response);
}

// --- refresh loop: every REFRESH_MS while the tab is visible ---------------------------------------

function showView(name) {
  for (const view of ["sessions", "session", "call"]) show(`${view}-view`, view === name);
}

async function refresh() {
  clearTimeout(state.timer);
  state.timer = null;
  if (state.busy) {
    state.again = true;  // the view changed while a refresh was in flight: render it right after
    return;
  }
  state.busy = true;
  const current = route();
  try {
    await renderWaits();
    if (current.name === "sessions") await renderSessions();
    else if (current.name === "session") await renderSession(current.session);
    else await renderCall(current.session, current.call);
    show("token-view", false);
    document.querySelector("main").hidden = false;
    showView(current.name);
    setLive(`live · updated ${new Date().toLocaleTimeString()}`, false);
  } catch (error) {
    if (error instanceof Unauthorized) {
      askToken(error.message);
      return;
    }
    if (error.status === 404 && current.name === "call") {
      showView("call");
      $("call-result").textContent = "";
      setLive(`this call is not stored (forgotten, or retained away)`, true);
    } else {
      setLive(error.status ? error.message : "server unreachable; trying again", true);
    }
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    refresh();
  } else {
    schedule();
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (document.hidden || !$("token-view").hidden) {
    if (document.hidden) setLive("paused while the tab is hidden", false);
    return;
  }
  state.timer = setTimeout(refresh, REFRESH_MS);
}

function setLive(text, down) {
  $("live").textContent = text;
  $("live").classList.toggle("down", down);
}

function askToken(message) {
  clearTimeout(state.timer);
  document.querySelector("main").hidden = true;
  show("token-view", true);
  $("token-error").textContent = message;
  setLive("token needed", true);
  $("token-input").focus();
}

function notice(text) {
  $("notice").textContent = text;
  show("notice", Boolean(text));
}

async function forget() {
  const sessionId = route().session;
  if (!confirm(`Forget session "${sessionId}"?\n\nIts stored calls and results are deleted; ` +
      "the next run of this session executes every call again.")) return;
  try {
    const done = await api(`/v1/sessions/${encodeURIComponent(sessionId)}`, { method: "DELETE" });
    notice(`Session ${done.session_id} forgotten: ${done.deleted} execution(s) deleted.`);
    location.hash = "#/";
  } catch (error) {
    if (error instanceof Unauthorized) askToken(error.message);
    else notice(`Not forgotten: ${error.message}`);
  }
}

async function fork() {
  const sessionId = route().session;
  const name = prompt(`Fork session "${sessionId}" as a new session named:`, `${sessionId}-fork`);
  if (!name) return;
  const until = prompt("Copy only the completed calls of the first K steps (leave empty for all):", "");
  const body = { new_session_id: name.trim() };
  if (until && until.trim()) body.until = Number(until.trim());
  try {
    const done = await api(`/v1/sessions/${encodeURIComponent(sessionId)}/fork`, {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    // Shown once the new session's view opens (a change of view clears the notice otherwise).
    state.nextNotice = `Session ${done.session_id} forked from ${done.forked_from}: ${done.copied} call(s) copied.`;
    location.hash = sessionHref(done.session_id);
  } catch (error) {
    if (error instanceof Unauthorized) askToken(error.message);
    else notice(`Not forked: ${error.message}`);
  }
}

function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
    $("token-input").value = "";
    show("change-token", true);
    refresh();
  });
  $("change-token").addEventListener("click", () => askToken(""));
  show("change-token", Boolean(sessionStorage.getItem(TOKEN_KEY)));
  let typing = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.filter = $("filter").value.trim(); refresh(); }, 250);
  });
  $("more-sessions").addEventListener("click", () => { state.sessionPages += 1; refresh(); });
  $("more-calls").addEventListener("click", () => { state.callPages += 1; refresh(); });
  $("forget").addEventListener("click", forget);
  $("fork").addEventListener("click", fork);
  window.addEventListener("hashchange", () => {
    const current = route();
    if (current.name !== "sessions") notice(state.nextNotice || "");
    state.nextNotice = null;
    if (current.name === "session") state.callPages = 1;
    refresh();
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); else schedule(); });
  refresh();
}

start();
