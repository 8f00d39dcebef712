// Croupier's operations dashboard: polls the control plane's API (the session cookie
// authenticates it; every change also carries the session's CSRF token from the page) and
// draws the live charts with the vendored uPlot.
"use strict";

const WINDOW_S = 300;
const COLORS = ["#2364aa", "#d64545", "#1f9d55", "#e3b505", "#8e44ad", "#f0862a", "#16a085"];
const state = { since: 0, points: new Map(), charts: new Map() };

const CSRF = document.querySelector('meta[name="csrf-token"]').content;

async function api(path, options) {
  const request = Object.assign({ credentials: "same-origin" }, options);
  if (request.method && request.method !== "GET") {
    request.headers = Object.assign({ "x-csrf-token": CSRF }, request.headers || {});
  }
  const response = await fetch(path, request);
  if (response.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

// Each chart: which targets it reads and how to turn a point into a value.
const CHARTS = {
  cpu: { kinds: ["node"], value: p => p.cpu == null ? null : p.cpu * 100 },
  memory: { kinds: ["node"], value: p => p.memory == null ? null : p.memory * 100 },
  network: { kinds: ["node"], value: p => p.net_rx_bps == null ? null : (p.net_rx_bps + (p.net_tx_bps || 0)) / 1024 },
  requests: { kinds: ["gateway"], value: p => p.requests_ps },
  latency: { kinds: ["gateway"], series: [["p50", p => p.p50_ms], ["p99", p => p.p99_ms]] },
  errors: { kinds: ["gateway"], value: p => p.error_ratio == null ? null : p.error_ratio * 100 },
  bets: { kinds: ["node"], sum: true, value: p => p.bets_ps },
  rounds: { kinds: ["node"], sum: true, value: p => p.rounds_in_flight },
  store: { kinds: ["node"], series: [["queue", p => p.store_queue_p99_ms], ["turn", p => p.store_turn_p99_ms], ["commit", p => p.store_commit_p99_ms], ["checkpoint", p => p.store_checkpoint_p99_ms]] },
  connections: { kinds: ["store"], series: [["connections", p => p.store_connections], ["max_connections", p => p.store_connections_max]] },
};

function chartData(name, targets) {
  const spec = CHARTS[name];
  const chosen = targets.filter(t => spec.kinds.includes(t.kind));
  const times = new Set();
  for (const t of chosen) for (const p of state.points.get(t.target) || []) times.add(p.ts_s);
  const xs = [...times].sort((a, b) => a - b);
  const lookup = t => new Map((state.points.get(t.target) || []).map(p => [p.ts_s, p]));
  let series;
  if (spec.series) {
    const maps = chosen.map(lookup);
    series = spec.series.map(([label, f]) => [label, xs.map(x => {
      const values = maps.map(m => m.get(x)).filter(Boolean).map(f).filter(v => v != null);
      return values.length ? Math.max(...values) : null;
    })]);
  } else if (spec.sum) {
    const maps = chosen.map(lookup);
    series = [["all nodes", xs.map(x => {
      const values = maps.map(m => m.get(x)).filter(Boolean).map(spec.value).filter(v => v != null);
      return values.length ? values.reduce((a, b) => a + b, 0) : null;
    })]];
  } else {
    series = chosen.map(t => { const m = lookup(t); return [t.target, xs.map(x => { const p = m.get(x); return p ? spec.value(p) : null; })]; });
  }
  return { xs, series };
}

function draw(targets) {
  for (const name of Object.keys(CHARTS)) {
    const holder = document.getElementById("chart-" + name);
    const { xs, series } = chartData(name, targets);
    const data = [xs, ...series.map(s => s[1])];
    const labels = series.map(s => s[0]).join("|");
    let chart = state.charts.get(name);
    if (!chart || chart.labels !== labels) {
      if (chart) chart.plot.destroy();
      const opts = {
        width: holder.clientWidth || 320, height: 160, legend: { show: true },
        scales: { x: { time: true } },
        series: [{}].concat(series.map((s, i) => ({ label: s[0], stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }))),
      };
      chart = { plot: new uPlot(opts, data, holder), labels };
      state.charts.set(name, chart);
    } else {
      chart.plot.setData(data);
    }
    holder.dataset.points = String(xs.length);
  }
}

async function pollSeries() {
  const body = await api("/api/v1/series?since_s=" + state.since);
  const horizon = Date.now() / 1000 - WINDOW_S;
  for (const t of body.targets) {
    const list = (state.points.get(t.target) || []).concat(t.points).filter(p => p.ts_s >= horizon);
    state.points.set(t.target, list);
    for (const p of t.points) state.since = Math.max(state.since, p.ts_s);
  }
  draw(body.targets);
}

async function setNode(name, wanted) {
  const message = document.getElementById("node-message");
  try {
    await api("/api/v1/nodes/" + encodeURIComponent(name), {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ state: wanted }),
    });
    message.textContent = name + " is now " + wanted + ".";
  } catch (e) {
    message.textContent = "Could not set " + name + " to " + wanted + ": " + e.message;
  }
  pollNodes();
}

async function pollNodes() {
  const tbody = document.querySelector("#nodes tbody");
  let body;
  try { body = await api("/api/v1/nodes"); } catch (e) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: "6" }, "Nodes unavailable: " + e.message)));
    return;
  }
  const view = body.gateways.find(g => g.nodes) || { nodes: [] };
  tbody.replaceChildren(...view.nodes.map(n => {
    const draining = n.state !== "active";
    const button = draining
      ? el("button", { class: "undrain", "data-node": n.name, onclick: () => setNode(n.name, "active") }, "Undrain")
      : el("button", { class: "drain", "data-node": n.name, onclick: () => setNode(n.name, "draining") }, "Drain");
    return el("tr", { "data-node": n.name },
      el("td", {}, n.name), el("td", {}, el("span", { class: "pill " + n.state }, n.state)),
      el("td", {}, n.healthy ? "yes" : "no"), el("td", {}, String(n.outstanding_requests)),
      el("td", {}, String(n.websockets)), el("td", {}, button));
  }));
}

async function pollLists() {
  const [alerts, slos, incidents] = await Promise.all([api("/api/v1/alerts"), api("/api/v1/slos"), api("/api/v1/incidents")]);
  const alertRows = alerts.alerts.map(a => el("tr", {},
    el("td", {}, a.key), el("td", {}, el("span", { class: "pill " + a.state.state }, a.state.state)),
    el("td", {}, a.severity), el("td", {}, a.silenced_by ? "silenced #" + a.silenced_by : "")));
  document.querySelector("#alerts tbody").replaceChildren(...(alertRows.length ? alertRows : [el("tr", {}, el("td", {}, "No alerts."))]));
  document.querySelector("#slos tbody").replaceChildren(...slos.slos.map(s => el("tr", {},
    el("td", {}, s.name), el("td", {}, (s.objective * 100).toFixed(2) + "%"),
    el("td", {}, (s.status.budget_remaining * 100).toFixed(1) + "%"),
    el("td", {}, el("span", { class: "pill " + (s.status.urgency === "ok" ? "ok" : "firing") }, s.status.urgency)))));
  document.getElementById("incidents").replaceChildren(...incidents.incidents.slice(0, 10).map(i => el("article", { class: "incident" },
    el("h3", {}, "#" + i.id + " " + i.title),
    el("p", { class: "meta" }, i.component + " · " + i.severity + " · " + i.status + " · opened " + new Date(i.opened_ms).toISOString()),
    el("a", { href: "/api/v1/incidents/" + i.id + "/postmortem" }, "postmortem skeleton"))));
}

// A PostgreSQL ledger's repository as pgbackrest info showed it: the newest backup and WAL.
function pgBackRestLine(info) {
  if (!info || !info.backup.length) return " pgBackRest: no backup yet";
  const newest = info.backup[info.backup.length - 1];
  const wal = info.archive.length ? info.archive[info.archive.length - 1].max : "none";
  return " pgBackRest: newest " + newest.type + " " + newest.label + " (" +
    new Date(newest.timestamp.stop * 1000).toISOString().slice(0, 19) + "), " + info.backup.length +
    " backups kept, WAL archived up to " + wal;
}

async function pollReplication() {
  const body = await api("/api/v1/replication");
  const secs = v => v == null ? "" : v.toFixed(2) + " s";
  const rows = Object.entries(body.stores).flatMap(([name, r]) => (r.standbys.length ? r.standbys : [null]).map(s =>
    el("tr", {}, el("td", {}, name), el("td", {}, r.primary), el("td", {}, s ? s.name + (s.client_addr ? " @ " + s.client_addr : "") : "none"),
      el("td", {}, s ? s.state + " · " + s.sync_state : ""), el("td", {}, s ? secs(s.write_lag_s) : ""),
      el("td", {}, s ? secs(s.flush_lag_s) : ""), el("td", {}, s ? secs(s.replay_lag_s) : ""),
      el("td", {}, s && s.replay_lag_bytes != null ? Math.round(s.replay_lag_bytes) + " B" : ""))));
  document.querySelector("#replication tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: "8" }, "No postgres:// store is watched."))]));
}

async function pollBackups() {
  const body = await api("/api/v1/backups");
  const health = document.getElementById("backup-health");
  if (!body.enabled) { health.textContent = "Backups are not run by this control plane."; return; }
  const status = body.status.health ? body.status.health.status : "starting";
  health.replaceChildren(el("span", { class: "pill " + (status === "ok" ? "ok" : "firing") }, status),
    (body.status.backend === "postgres" ? pgBackRestLine(body.status.pgbackrest)
      : " newest shipped cut " + (body.rpo_seconds_now == null ? "none yet" : body.rpo_seconds_now.toFixed(1) + " s ago")) +
    (body.status.error ? " · " + body.status.error : ""));
  document.querySelector("#backups tbody").replaceChildren(...body.verifies.slice(0, 5).map(v => el("tr", {},
    el("td", {}, new Date(v.verified_at_ms).toISOString().slice(0, 19)),
    el("td", {}, el("span", { class: "pill " + (v.ok ? "ok" : "firing") }, v.ok ? "restored, invariants hold" : v.reason)),
    el("td", {}, v.rto_ms + " ms"), el("td", {}, v.rpo_seconds == null ? "" : v.rpo_seconds.toFixed(1) + " s"),
    el("td", {}, v.backup_id || ""))));
}

async function pollMaintenance() {
  const [rollouts, windows] = await Promise.all([api("/api/v1/rollouts"), api("/api/v1/maintenance")]);
  document.getElementById("rollouts").replaceChildren(...rollouts.rollouts.slice(0, 3).map(r => el("article", { class: "incident", "data-rollout": String(r.id) },
    el("h3", {}, "Rolling update #" + r.id + " · " + r.status),
    el("p", { class: "meta" }, r.binary + " · batch " + r.batch_size + " · by " + r.created_by),
    el("ol", { class: "steps" }, ...r.steps.map(s => el("li", { class: s.ok ? "" : "failed" },
      new Date(s.ts_ms).toISOString().slice(11, 19) + " " + s.node + " " + s.step + ": " + s.message))))));
  const rows = windows.windows.map(w => el("tr", {},
    el("td", {}, w.title), el("td", {}, w.scope),
    el("td", {}, w.active_since_ms ? "in progress" : (w.next_start_ms ? "next " + new Date(w.next_start_ms).toISOString() : "over")),
    el("td", {}, Math.round(w.duration_s / 60) + " min")));
  document.querySelector("#windows tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {}, "No windows."))]));
}

document.getElementById("rollout-form").addEventListener("submit", async event => {
  event.preventDefault();
  const form = new FormData(event.target);
  const message = document.getElementById("rollout-message");
  try {
    const started = await api("/api/v1/rollouts", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ binary: form.get("binary"), batch_size: Number(form.get("batch")) }),
    });
    message.textContent = "Rolling update #" + started.id + " started.";
  } catch (e) {
    message.textContent = "Could not start: " + e.message;
  }
  pollMaintenance();
});

async function pageAction(id, action) {
  const message = document.getElementById("page-message");
  try {
    const page = await api("/api/v1/pages/" + id + "/" + action, { method: "POST" });
    message.textContent = "Page #" + id + " " + page.status + ".";
  } catch (e) {
    message.textContent = "Could not " + action + " page #" + id + ": " + e.message;
  }
  pollOnCall();
}

async function pollOnCall() {
  const body = await api("/api/v1/oncall");
  const tbody = document.querySelector("#oncall tbody");
  if (!body.configured) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: "4" }, "No [oncall] section in the deployment file.")));
    return;
  }
  tbody.replaceChildren(...body.schedules.map(s => el("tr", { "data-schedule": s.name },
    el("td", {}, s.name), el("td", { class: "now" }, s.now), el("td", { class: "next" }, s.next),
    el("td", {}, new Date(s.next_at_ms).toISOString().slice(0, 16).replace("T", " ") + " UTC"))));
  const rows = body.pages.map(p => el("tr", { "data-page": String(p.id) },
    el("td", {}, "#" + p.id), el("td", {}, "#" + p.incident_id), el("td", {}, String(p.level + 1)),
    el("td", {}, p.person), el("td", {}, el("span", { class: "pill " + (p.status === "open" ? "firing" : "ok") }, p.status)),
    el("td", {},
      p.status === "open" ? el("button", { class: "ack", onclick: () => pageAction(p.id, "ack") }, "Acknowledge") : "",
      el("button", { class: "resolve", onclick: () => pageAction(p.id, "resolve") }, "Resolve"))));
  document.querySelector("#pages tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6" }, "No open pages."))]));
}

function every(ms, f) {
  const run = () => f().catch(e => console.warn(e)).finally(() => setTimeout(run, ms));
  run();
}

every(1000, pollSeries);
every(2000, pollNodes);
every(2000, pollLists);
every(2000, pollMaintenance);
every(5000, pollBackups);
every(2000, pollReplication);
every(2000, pollOnCall);
