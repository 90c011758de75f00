// The status page: polls /ui/api/ every POLL_MS and draws what it gets. Every value from the daemon is put in
// the page as text (textContent, setAttribute): events and logs may carry markup, and none of it may run.
"use strict";

const POLL_MS = 2000;
const DEAD_MS = 15000;
const SVG = "http://www.w3.org/2000/svg";
const SERIES = [
  { key: "events_per_s", label: "invocations/s", cls: "s-events" },
  { key: "errors_per_s", label: "errors/s", cls: "s-errors" },
  { key: "depth", label: "queue depth", cls: "s-depth" },
];
const state = { csrf: "", write: false, filter: "", openId: null, timer: null, functions: [], deadCount: null,
  deadAt: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function link(text, href) {
  const a = el("a", text);
  a.setAttribute("href", href);
  return a;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401) { showSignin(); throw new Error("sign in"); }
  if (!response.ok) throw new Error((body && body.message) || ("HTTP " + response.status));
  return body;
}

function fmtTime(t) {
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return d.toLocaleTimeString([], { hour12: false });
}

function fmtAge(seconds) {
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function fmtNum(value) {
  if (value === null || value === undefined) return "–";
  return String(value);
}

function fill(tableId, rows, build) {
  const body = $(tableId).tBodies[0];
  const fresh = document.createElement("tbody");
  for (const row of rows) fresh.appendChild(build(row));
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "none", "muted");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell);
    else if (cell && typeof cell === "object") { td.textContent = fmtNum(cell.text); td.className = cell.cls || ""; }
    else td.textContent = fmtNum(cell);
    tr.appendChild(td);
  }
  return tr;
}

const num = (value) => ({ text: value, cls: "num" });

function drawSources(sources) {
  fill("sources", sources, (s) => {
    const tr = row([s.name, s.type, s.function, { text: s.state, cls: "state-" + s.state }, num(s.events),
      { text: s.last_error || "", cls: "error" }]);
    tr.dataset.name = s.name;
    return tr;
  });
}

function drawFunctions(functions) {
  fill("functions", functions, (f) => {
    const workers = f.workers === null ? "remote" : f.workers + " / " + f.limit;
    const tr = row([f.name, num(workers), num(f.in_flight), num(f.invocations),
      { text: f.errors, cls: f.errors ? "num error" : "num" }, num(f.p50_ms), num(f.p99_ms)]);
    tr.dataset.name = f.name;
    return tr;
  });
}

function drawFailures(failures) {
  fill("failures", failures, (f) => {
    const href = "#logs/" + encodeURIComponent(f.function) + "/" + encodeURIComponent(f.request_id);
    const tr = row([{ text: fmtTime(f.time), cls: "time" }, f.function, link(f.request_id, href),
      { text: f.error_type + ": " + f.error_message, cls: "error" }]);
    tr.dataset.requestId = f.request_id;
    return tr;
  });
}

function drawChart(points) {
  const box = $("chart");
  const width = 600, height = 180, pad = 4;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const now = Date.now() / 1000, span = 15 * 60;
  const rateMax = Math.max(1, ...points.map((p) => Math.max(p.events_per_s, p.errors_per_s)));
  const depthMax = Math.max(1, ...points.map((p) => p.depth));
  for (let i = 1; i < 4; i++) {
    const grid = document.createElementNS(SVG, "line");
    const y = String((height * i) / 4);
    for (const [k, v] of [["x1", "0"], ["x2", String(width)], ["y1", y], ["y2", y]]) grid.setAttribute(k, v);
    grid.setAttribute("class", "grid");
    svg.appendChild(grid);
  }
  for (const series of SERIES) {
    const max = series.key === "depth" ? depthMax : rateMax;
    const coords = points.map((p) => {
      const x = Math.max(0, width - ((now - p.t) / span) * width);
      const y = height - pad - (p[series.key] / max) * (height - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("class", "series " + series.cls);
    line.setAttribute("data-series", series.key);
    line.setAttribute("data-points", String(points.length));
    svg.appendChild(line);
  }
  box.replaceChildren(svg);
  const last = points.length ? points[points.length - 1] : null;
  const legend = $("legend");
  legend.replaceChildren();
  for (const series of SERIES) {
    const item = el("span", null, "key " + series.cls);
    item.appendChild(el("i"));
    item.appendChild(el("span", series.label + " "));
    const value = el("b", last ? last[series.key] : "–");
    value.dataset.series = series.key;
    item.appendChild(value);
    legend.appendChild(item);
  }
  legend.appendChild(el("span", "scale: rates 0–" + rateMax.toFixed(1) + "/s, depth 0–" + depthMax, "muted"));
}

function drawOverview(data) {
  $("queue-depth").textContent = data.queue.depth;
  $("queue-oldest").textContent = fmtAge(data.queue.oldest_age_s);
  $("dead-count").textContent = data.dead_letters;
  $("uptime").textContent = fmtAge(data.uptime_s);
  const down = data.sources.filter((s) => s.state !== "running").length;
  const health = $("health");
  health.textContent = down ? down + " source(s) not running" : "running";
  health.className = "pill " + (down ? "bad" : "good");
  drawSources(data.sources);
  drawFunctions(data.functions);
  drawFailures(data.failures);
  drawChart(data.chart);
  state.write = data.write;
  updateFilter(data.functions.map((f) => f.name));
  $("updated").textContent = "updated " + fmtTime(Date.now() / 1000);
}

function updateFilter(names) {
  if (names.join("\n") === state.functions.join("\n")) return;
  state.functions = names;
  const select = $("dead-filter");
  const options = [el("option", "all")];
  options[0].value = "";
  for (const name of names) {
    const option = el("option", name);
    option.value = name;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = state.filter;
}

async function refreshDeadLetters() {
  state.deadAt = Date.now();
  const query = state.filter ? "?function=" + encodeURIComponent(state.filter) : "";
  const data = await api("/ui/api/dead-letters" + query);
  $("dead-shown").textContent = data.entries.length < data.total
    ? "(newest " + data.entries.length + " of " + data.total + ")" : "(" + data.total + ")";
  fill("dead-letters", data.entries, (d) => {
    const when = el("span", null, "time");
    when.appendChild(link(fmtTime(d.time), "#dead/" + encodeURIComponent(d.id)));
    const tr = row([when, d.function, { text: d.condition, cls: "nowrap" },
      num(d.attempts), { text: d.error, cls: "error" }]);
    tr.dataset.id = d.id;
    return tr;
  });
}

async function showDeadLetter(id) {
  const section = $("dead-letter");
  state.openId = id;
  const entry = await api("/ui/api/dead-letters/" + encodeURIComponent(id));
  $("dead-id").textContent = entry.id + " · " + entry.function;
  $("dead-record").textContent = JSON.stringify(entry, null, 2);
  for (const button of [$("redrive"), $("purge")]) {
    button.disabled = !state.write;
    button.title = state.write ? "" : "off: set api.ui.write: true in the config";
  }
  $("action-note").textContent = state.write ? "" : "actions are off (api.ui.write)";
  section.hidden = false;
  section.scrollIntoView({ block: "nearest" });
}

async function act(action) {
  const id = state.openId;
  if (!id || (action === "purge" && !window.confirm("Purge this dead letter for good?"))) return;
  try {
    await api("/ui/api/dead-letters/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf },
      body: JSON.stringify({ ids: [id] }),
    });
    $("action-note").textContent = action === "redrive" ? "redriven: queued again" : "purged";
    $("dead-letter").hidden = true;
    window.location.hash = "";
    await refreshDeadLetters();
  } catch (err) {
    $("action-note").textContent = String(err.message);
  }
}

async function showLogs(fn, requestId) {
  const section = $("logs");
  $("logs-title").textContent = fn + " · " + requestId;
  const data = await api("/ui/api/logs?function=" + encodeURIComponent(fn) + "&request_id=" +
    encodeURIComponent(requestId));
  $("logs-text").textContent = data.lines.length
    ? data.lines.map((l) => l.time + "  " + l.text.replace(/\r/g, "\n")).join("\n")
    : "no lines for this request id (yet): the log is written within 50 ms, or it was rotated away";
  section.hidden = false;
  section.scrollIntoView({ block: "nearest" });
}

async function route() {
  const parts = window.location.hash.slice(1).split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "logs" && parts.length === 3) await showLogs(parts[1], parts[2]);
    else if (parts[0] === "dead" && parts.length === 2) await showDeadLetter(parts[1]);
  } catch (err) {
    $("updated").textContent = String(err.message);
  }
}

async function poll() {
  try {
    const data = await api("/ui/api/overview");
    drawOverview(data);
    // The list costs the daemon a store read: fetched again when the count moves, else every DEAD_MS.
    if (data.dead_letters !== state.deadCount || Date.now() - state.deadAt > DEAD_MS) {
      state.deadCount = data.dead_letters;
      await refreshDeadLetters();
    }
  } catch (err) {
    $("health").textContent = "unreachable: " + err.message;
    $("health").className = "pill bad";
  }
  state.timer = window.setTimeout(poll, POLL_MS);
}

function showSignin() {
  if (state.timer) window.clearTimeout(state.timer);
  state.timer = null;
  $("main").hidden = true;
  $("signin").hidden = false;
}

async function signin(event) {
  event.preventDefault();
  const response = await fetch("/ui/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  if (!response.ok) {
    $("signin-error").textContent = "wrong token";
    return;
  }
  $("signin").hidden = true;
  start();
}

async function start() {
  try {
    const session = await api("/ui/api/session");
    state.csrf = session.csrf;
    state.write = session.write;
  } catch (err) {
    if (!$("signin").hidden) return;
    $("health").textContent = String(err.message);
    $("health").className = "pill bad";
    return;
  }
  $("main").hidden = false;
  await poll();
  await route();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signin);
  $("dead-filter").addEventListener("change", (e) => { state.filter = e.target.value; refreshDeadLetters(); });
  $("redrive").addEventListener("click", () => act("redrive"));
  $("purge").addEventListener("click", () => act("purge"));
  for (const close of document.querySelectorAll("a.close")) {
    close.addEventListener("click", (e) => {
      e.preventDefault();
      close.closest("section").hidden = true;
      history.replaceState(null, "", window.location.pathname);
    });
  }
  window.addEventListener("hashchange", route);
  start();
});
