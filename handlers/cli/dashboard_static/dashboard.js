// esdb-relay dashboard: polls /api/progress and /api/history and draws them.
// Every value from the store is written with textContent or as a number: never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 220, PAD = { left: 70, right: 10, top: 12, bottom: 26 };
const COLOURS = {
  position: "#1f77b4", lag: "#ff7f0e", rate: "#2ca02c", failure: "#d62728", head: "#888888",
};
const $ = (id) => document.getElementById(id);

function text(id, value) { $(id).textContent = value; }
function num(n, digits = 0) {
  return n === null || n === undefined ? "unknown"
    : Number(n).toLocaleString("en-US", { maximumFractionDigits: digits });
}
function duration(s) {
  if (s === null || s === undefined) return "unknown";
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${sec} s`;
  return `${sec} s`;
}
function when(iso) { return iso ? new Date(iso).toLocaleString() : "never"; }

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body && body.error ? body.error : `${url}: ${response.status}`);
  return body;
}

function showProgress(p) {
  text("job", p.job_id);
  document.title = `${p.state} · ${p.job_id} · esdb-relay`;
  $("state").dataset.state = p.state;
  text("state", p.state);
  text("updated", `as of ${when(p.checked_at)}`);
  const known = p.head_position !== null && p.position !== null;
  const pct = p.caught_up ? 100 : known && p.head_position > 0
    ? Math.min(100, 100 * p.position / p.head_position) : p.position === null ? 0 : null;
  $("bar-fill").style.width = `${pct === null ? 0 : pct}%`;
  $("bar").setAttribute("aria-valuenow", pct === null ? "0" : pct.toFixed(1));
  text("percent", pct === null ? "progress unknown" : `${pct.toFixed(1)} % of $all's bytes copied`);
  text("positions", `position ${p.position === null ? "start of $all" : num(p.position)}`
    + ` of source head ${num(p.head_position)}`);
  text("lag-events", p.lag_events === null ? "unknown"
    : (p.lag_events_exact ? "" : "~") + num(p.lag_events));
  text("lag-bytes", num(p.lag_bytes));
  text("lag-seconds", p.caught_up ? "none" : p.lag_seconds === null ? "unknown"
    : duration(p.lag_seconds));
  text("copy-rate", p.copy_rate === null ? "unknown" : `${num(p.copy_rate)} events/s`);
  text("source-rate", p.source_write_rate === null ? "unknown"
    : `${num(p.source_write_rate)} events/s`);
  text("eta", p.caught_up ? "caught up" : p.eta_seconds === null
    ? (p.relay_running ? "unknown" : "no relay running") : duration(p.eta_seconds));
  text("last-success", p.last_success_at === null ? "never"
    : `${duration(p.last_success_age_seconds)} ago`);
  text("last-slice", p.last_slice_seconds === null ? "unknown" : duration(p.last_slice_seconds));
  text("failures-count", num(p.consecutive_failures));
  text("relay", p.relay_running ? "running" : p.relay_stopped_at
    ? `stopped at ${when(p.relay_stopped_at)}` : "not running");
  text("lease", p.lease ? `held by ${p.lease.owner} until ${when(p.lease.expires_at)}`
    : "free (no relay holds it)");
  text("events-read", num(p.events_read));
  text("events-written", num(p.events_written));
  text("events-skipped", num(p.events_skipped));
  text("events-filtered", num(p.events_filtered));
  // the stream core/rules.py dead_letter_stream names (tests/cli/test_dashboard_browser.py)
  text("dead-lettered", p.dead_lettered ? `${num(p.dead_lettered)} (listed in the target's `
    + `$esdb-relay-dead-letters-${p.job_id} stream)` : "0");
  const warnings = $("warnings");
  warnings.replaceChildren(...p.warnings.map((w) => {
    const li = document.createElement("li");
    li.textContent = w;
    return li;
  }));
  $("last-error").hidden = !p.last_error;
  text("last-error", p.last_error ? `last error: ${p.last_error}` : "");
  showShards(p);
}

// a sharded job: one row per shard (core/progress.py's ShardProgress)
function showShards(p) {
  const shards = p.shards || [];
  $("shards-section").hidden = shards.length === 0;
  $("shards").replaceChildren(...shards.map((s) => {
    const row = document.createElement("tr");
    row.dataset.shard = String(s.index);
    const cells = [
      String(s.index),
      s.state,
      s.position === null ? "start of $all" : num(s.position),
      s.lag_events === null ? "unknown" : (p.lag_events_exact ? "" : "~") + num(s.lag_events),
      s.copy_rate === null ? "unknown" : `${num(s.copy_rate)} events/s`,
      s.caught_up ? "caught up" : s.eta_seconds === null ? "unknown" : duration(s.eta_seconds),
      s.lease ? `held by ${s.lease.owner} until ${when(s.lease.expires_at)}` : "free",
      s.last_slice_at === null ? "never" : when(s.last_slice_at)
        + (s.last_error ? ` (failed: ${s.last_error})` : ""),
      num(s.events_written),
    ];
    for (const [i, value] of cells.entries()) {
      const cell = document.createElement("td");
      cell.textContent = value;
      if (i === 1) cell.className = "state-cell";
      row.appendChild(cell);
    }
    return row;
  }));
}

function el(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  return node;
}
function label(svg, x, y, value, anchor = "end") {
  const t = el("text", { x, y, "text-anchor": anchor });
  t.textContent = value;
  svg.appendChild(t);
}

// points: [{t: ms, v: number, failed: bool}], oldest first
function chart(svg, points, colour, { line = null, unit = "" } = {}) {
  svg.replaceChildren();
  const good = points.filter((p) => p.v !== null);
  if (!points.length) {
    label(svg, W / 2, H / 2, "no slices in the history yet", "middle");
    return;
  }
  const t0 = Math.min(...points.map((p) => p.t)), t1 = Math.max(...points.map((p) => p.t));
  const values = good.map((p) => p.v).concat(line === null ? [] : [line]);
  const vmax = Math.max(1, ...values), vmin = Math.min(0, ...values);
  const x = (t) => PAD.left + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v - vmin) / (vmax - vmin) * (H - PAD.top - PAD.bottom);
  svg.appendChild(el("line", { x1: PAD.left, y1: y(vmin), x2: W - PAD.right, y2: y(vmin),
    stroke: "#bbb" }));
  label(svg, PAD.left - 4, y(vmax) + 4, `${num(vmax)}${unit}`);
  label(svg, PAD.left - 4, y(vmin), `${num(vmin)}${unit}`);
  label(svg, PAD.left, H - 8, new Date(t0).toLocaleTimeString(), "start");
  label(svg, W - PAD.right, H - 8, new Date(t1).toLocaleTimeString());
  if (line !== null) {
    svg.appendChild(el("line", { x1: PAD.left, y1: y(line), x2: W - PAD.right, y2: y(line),
      stroke: COLOURS.head, "stroke-dasharray": "6 4", class: "head" }));
  }
  // one line per series: a sharded job's shards each have their own (p.s, the shard's key)
  const series = new Map();
  for (const p of good) series.set(p.s ?? "", [...(series.get(p.s ?? "") || []), p]);
  for (const line of series.values()) {
    svg.appendChild(el("polyline", {
      points: line.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "),
      fill: "none", stroke: colour, "stroke-width": 3, "stroke-linejoin": "round",
      class: "series",
    }));
  }
  if (good.length) {
    for (const p of good) {
      svg.appendChild(el("circle", { cx: x(p.t), cy: y(p.v), r: 3, fill: colour, class: "point" }));
    }
  }
  for (const p of points.filter((q) => q.failed)) {
    svg.appendChild(el("line", { x1: x(p.t), y1: PAD.top, x2: x(p.t), y2: H - PAD.bottom,
      stroke: COLOURS.failure, "stroke-width": 2, class: "failure" }));
  }
}

function showHistory(history, progress) {
  const oldestFirst = history.slice().reverse();
  const t = (h) => Date.parse(h.finished_at);
  chart($("chart-position"), oldestFirst.map((h) => ({
    t: t(h), v: h.to_position ? h.to_position.commit : null, failed: Boolean(h.error),
    s: h.job_id,
  })), COLOURS.position, { line: progress ? progress.head_position : null });
  // the lag the slice measured when it ended (none for failed slices and older records)
  chart($("chart-lag"), oldestFirst.map((h) => ({
    t: t(h), v: h.lag_bytes ?? null, failed: Boolean(h.error), s: h.job_id,
  })), COLOURS.lag);
  chart($("chart-rate"), oldestFirst.map((h) => {
    const seconds = (Date.parse(h.finished_at) - Date.parse(h.started_at)) / 1000;
    return { t: t(h), v: h.error || seconds <= 0 ? null : h.events_read / seconds,
             failed: Boolean(h.error), s: h.job_id };
  }), COLOURS.rate, { unit: "/s" });
  const failed = history.filter((h) => h.error).slice(0, 10);
  $("failures").replaceChildren(...failed.map((h) => {
    const row = document.createElement("tr");
    const relay = h.job_id === (progress && progress.job_id) ? h.owner : `${h.owner} (${h.job_id})`;
    for (const [value, cls] of [[when(h.finished_at), ""], [relay, ""], [h.error, "error-text"]]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      if (cls) cell.className = cls;
      row.appendChild(cell);
    }
    return row;
  }));
  $("no-failures").hidden = failed.length > 0;
}

async function refresh() {
  const errors = [];
  let progress = null;
  try {
    progress = await getJson("/api/progress");
    showProgress(progress);
  } catch (e) { errors.push(`progress: ${e.message}`); }
  try {
    showHistory(await getJson("/api/history"), progress);
  } catch (e) { errors.push(`history: ${e.message}`); }
  $("error").hidden = errors.length === 0;
  text("error", errors.join("\n"));
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

const seconds = Number(document.body.dataset.refreshSeconds) || 5;
refresh();
setInterval(refresh, seconds * 1000);
