// The Octopus dashboard. Every device-provided string reaches the page through
// textContent or an attribute value, never parsed as markup: a status value that
// holds markup shows as text. Plots are SVG built element by element.
"use strict";

const state = {
  overview: null,          // {node, mode, devices: [...], adaptors: [...]}
  devices: new Map(),      // key -> summary
  detail: null,            // the open device: {summary, report, history}
  follow: null,            // key of the open device
  source: null,            // the EventSource
  filters: { q: "", phase: "", adaptor: "", node: "", namespace: "" },
};
const PHASES = ["Pending", "Starting", "Healthy", "Unhealthy", "Backoff", "Quarantined"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = String(v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function phaseBadge(phase) {
  return el("span", { class: "phase", "data-phase": phase, text: phase });
}

function ago(time) {
  if (!time) return "never";
  const s = Math.round((Date.now() - Date.parse(time)) / 1000);
  if (!isFinite(s)) return String(time);
  if (s < 2) return "just now";
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function deviceHref(key) {
  return "#/device/" + key.split("/").map(encodeURIComponent).join("/");
}

// ---- data -----------------------------------------------------------------------

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

async function loadOverview() {
  state.overview = await getJSON("/dashboard/api/overview");
  state.devices = new Map(state.overview.devices.map((d) => [d.key, d]));
  const where = [state.overview.mode];
  if (state.overview.node) where.push("node " + state.overview.node);
  document.getElementById("where").textContent = where.join(" · ");
}

function connect() {
  if (state.source) state.source.close();
  const q = state.follow ? "/" + state.follow.split("/").map(encodeURIComponent).join("/") : "";
  const source = new EventSource("/dashboard/api/events" + q);
  state.source = source;
  const live = document.getElementById("live");
  source.onopen = () => { live.dataset.state = "live"; live.textContent = "live"; };
  source.onerror = () => { live.dataset.state = "lost"; live.textContent = "reconnecting"; };
  source.addEventListener("batch", (m) => {
    let batch;
    try { batch = JSON.parse(m.data); } catch (_) { return; }
    let listChanged = false;
    for (const d of batch.devices || []) {
      listChanged = listChanged || !state.devices.has(d.key);
      state.devices.set(d.key, d);
    }
    if (batch.present) {
      const present = new Set(batch.present);
      for (const key of [...state.devices.keys()]) {
        if (!present.has(key)) { state.devices.delete(key); listChanged = true; }
      }
      if (state.overview && batch.adaptors) state.overview.adaptors = batch.adaptors;
    }
    if (batch.detail && batch.detail.summary.key === state.follow) state.detail = batch.detail;
    refresh(listChanged, batch);
  });
}

// ---- pages ----------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/";
  const parts = hash.slice(2).split("/").map(decodeURIComponent);
  if (parts[0] === "device" && parts.length >= 3) return { page: "device", key: parts[1] + "/" + parts[2] };
  if (parts[0] === "adaptors") return { page: "adaptors" };
  return { page: "devices" };
}

async function show() {
  const r = route();
  document.getElementById("nav-devices").classList.toggle("active", r.page === "devices");
  document.getElementById("nav-adaptors").classList.toggle("active", r.page === "adaptors");
  const follow = r.page === "device" ? r.key : null;
  state.detail = null;
  try {
    await loadOverview();
    if (follow) {
      const [ns, name] = follow.split("/");
      state.detail = await getJSON("/dashboard/api/devices/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name)).catch(() => null);
    }
  } catch (e) {
    render(el("p", { class: "banner", text: "Cannot reach the dashboard's server: " + e.message }));
  }
  if (follow !== state.follow || !state.source) {
    state.follow = follow;
    connect();
  }
  refresh(true, null);
}

function render(...nodes) {
  document.getElementById("main").replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

// Re-renders the open page after new data; the device list keeps its filter inputs.
function refresh(listChanged, batch) {
  const r = route();
  if (r.page === "devices") devicesPage(listChanged);
  else if (r.page === "adaptors") adaptorsPage();
  else devicePage(r.key);
  document.body.dataset.updated = String(Date.now());
}

function uniq(values) {
  return [...new Set(values.filter((v) => v !== null && v !== undefined && v !== ""))].sort();
}

function select(id, label, values, current) {
  const s = el("select", { id, "aria-label": label }, el("option", { value: "", text: "any " + label }));
  for (const v of values) {
    const o = el("option", { value: v, text: v });
    if (v === current) o.selected = true;
    s.append(o);
  }
  s.addEventListener("change", () => { state.filters[id.slice(7)] = s.value; devicesRows(); });
  return s;
}

function devicesPage(listChanged) {
  const main = document.getElementById("main");
  if (!main.querySelector("#devices") || listChanged) {
    const all = [...state.devices.values()];
    const f = state.filters;
    const search = el("input", { id: "search", type: "search", placeholder: "Search name, model, adaptor, error…", value: f.q });
    search.addEventListener("input", () => { f.q = search.value; devicesRows(); });
    const filters = el("div", { class: "filters" }, search,
      select("filter-phase", "phase", PHASES, f.phase),
      select("filter-adaptor", "adaptor", uniq(all.map((d) => d.adaptor)), f.adaptor),
      select("filter-node", "node", uniq(all.map((d) => d.node)), f.node),
      select("filter-namespace", "namespace", uniq(all.map((d) => d.namespace)), f.namespace));
    const table = el("table", { id: "devices" },
      el("thead", {}, el("tr", {}, ...["Device", "Namespace", "Phase", "Adaptor", "Version", "Node", "Last poll", "Polls", "Last error"].map((h) => el("th", { text: h })))),
      el("tbody"));
    render(el("h1", { text: "Devices" }), el("div", { class: "chips", id: "counts" }), filters, table,
      el("p", { class: "muted", id: "shown" }));
  }
  devicesRows();
}

function matches(d) {
  const f = state.filters;
  if (f.phase && d.phase !== f.phase) return false;
  if (f.adaptor && d.adaptor !== f.adaptor) return false;
  if (f.node && d.node !== f.node) return false;
  if (f.namespace && d.namespace !== f.namespace) return false;
  if (!f.q) return true;
  const q = f.q.toLowerCase();
  return [d.key, d.model, d.adaptor, d.lastError || ""].some((s) => String(s).toLowerCase().includes(q));
}

function devicesRows() {
  const tbody = document.querySelector("#devices tbody");
  if (!tbody) return;
  const all = [...state.devices.values()].sort((a, b) => a.key.localeCompare(b.key));
  const shown = all.filter(matches);
  tbody.replaceChildren(...shown.map((d) => el("tr", { "data-key": d.key, "data-phase": d.phase },
    el("td", {}, el("a", { href: deviceHref(d.key), text: d.name })),
    el("td", { text: d.namespace }),
    el("td", {}, phaseBadge(d.phase)),
    el("td", { text: d.adaptor }),
    el("td", { class: "mono", text: d.adaptorVersion || "" }),
    el("td", { text: d.node || "" }),
    el("td", { title: d.lastPoll || "", text: ago(d.lastPoll) }),
    el("td", { text: d.polls === undefined ? "" : d.polls + (d.failedPolls ? " (" + d.failedPolls + " failed)" : "") }),
    el("td", { class: "error", text: d.lastError || "" }))));
  const counts = document.getElementById("counts");
  const by = {};
  for (const d of all) by[d.phase] = (by[d.phase] || 0) + 1;
  counts.replaceChildren(el("span", { class: "chip" }, "All", el("b", { text: all.length })),
    ...PHASES.filter((p) => by[p]).map((p) => el("span", { class: "chip", "data-phase": p }, phaseBadge(p), el("b", { text: by[p] }))));
  document.getElementById("shown").textContent = shown.length + " of " + all.length + " devices shown";
}

function fact(label, value, cls) {
  return el("div", {}, el("span", { text: label }), el("div", { class: cls || "", text: value === null || value === undefined ? "—" : value }));
}

// Status as rows of path and value, so that any document shows, as text.
function flatten(value, path, out, depth) {
  if (out.length >= 500) return out;
  if (value !== null && typeof value === "object" && depth < 6) {
    const entries = Array.isArray(value)
      ? value.map((v, i) => [v && typeof v === "object" && typeof v.name === "string" ? v.name : String(i), v])
      : Object.entries(value);
    for (const [k, v] of entries) flatten(v, path ? path + "." + k : k, out, depth + 1);
    if (entries.length === 0) out.push([path, Array.isArray(value) ? "[]" : "{}"]);
  } else {
    out.push([path, typeof value === "string" ? value : JSON.stringify(value)]);
  }
  return out;
}

function plot(name, points, stepMs) {
  const w = 300, h = 90, pad = 4;
  const s = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img" });
  const last = points.length ? points[points.length - 1] : null;
  // From the first point kept (an hour at most) to now, so a young history fills the plot.
  const now = Date.now();
  const t0 = Math.min(points.length ? points[0][0] : now, now - 60 * 1000);
  const vs = points.map((p) => p[1]);
  let lo = Math.min(...vs), hi = Math.max(...vs);
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const x = (t) => pad + ((Math.max(t, t0) - t0) / (now - t0)) * (w - 2 * pad);
  const y = (v) => h - 14 - ((v - lo) / (hi - lo)) * (h - 24);
  s.append(svg("line", { class: "axis", x1: pad, x2: w - pad, y1: h - 13, y2: h - 13 }));
  if (points.length) {
    const coords = points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1));
    if (points.length === 1) coords.push((w - pad) + "," + y(points[0][1]).toFixed(1));
    s.append(svg("polygon", { class: "area", points: `${coords[0].split(",")[0]},${h - 13} ${coords.join(" ")} ${coords[coords.length - 1].split(",")[0]},${h - 13}` }));
    s.append(svg("polyline", { class: "line", points: coords.join(" ") }));
    s.append(svg("circle", { class: "dot", r: 3, cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1) }));
  }
  const lbl = (text, attrs) => { const t = svg("text", attrs); t.textContent = text; return t; };
  s.append(lbl(ago(new Date(t0).toISOString()), { x: pad, y: h - 2 }), lbl("now", { x: w - pad, y: h - 2, "text-anchor": "end" }),
    lbl(fmt(hi), { x: pad, y: 10 }), lbl(fmt(lo), { x: pad, y: h - 17 }));
  return el("div", { class: "plot card", "data-property": name, "data-points": points.length, "data-last": last ? last[1] : "" },
    el("h3", {}, el("span", { text: name }), el("span", { class: "value", text: last ? fmt(last[1]) : "—" })), s);
}

function fmt(v) {
  return Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : String(Math.round(v * 1000) / 1000);
}

function devicePage(key) {
  const d = state.detail;
  if (!d || d.summary.key !== key) {
    render(el("h1", { text: key }), el("p", { class: "muted", text: state.devices.has(key) ? "Loading…" : "No such device here." }));
    return;
  }
  const r = d.report;
  const plots = Object.entries(d.history.series).map(([name, pts]) => plot(name, pts, d.history.stepMs));
  const conditions = [...(r.conditions || [])].sort((a, b) => String(b.lastTransitionTime || "").localeCompare(String(a.lastTransitionTime || "")));
  const swaps = (r.events || []).filter((e) => /swap/i.test(e.reason));
  render(
    el("h1", {}, el("a", { href: "#/", text: "Devices" }), "/", el("span", { id: "device-name", text: r.namespace + "/" + r.name }), el("span", { id: "device-phase" }, phaseBadge(r.phase))),
    r.lastError ? el("div", { class: "banner", id: "last-error", text: r.lastError }) : null,
    el("div", { class: "card facts" },
      fact("Model", r.model), fact("Adaptor", r.adaptor), fact("Adaptor version", r.adaptorVersion, "mono"),
      fact("Adaptor digest", r.adaptorDigest, "mono"), fact("Node", d.summary.node), fact("Last poll", ago(r.lastPoll)),
      fact("Poll interval", r.pollIntervalMs ? r.pollIntervalMs + " ms" : null),
      // The brain knows what the links say, not the limb's counters: those show as "—".
      fact("Polls", r.polls === undefined ? null : r.polls + " (" + r.failedPolls + " failed)"),
      fact("Traps / restarts", r.traps === undefined ? null : r.traps + " / " + r.restarts),
      fact("Swaps", r.swaps), fact("Grants", r.grants === undefined ? null : r.grants.join(", ") || "none")),
    el("h2", { text: "Readings (last hour)" }),
    plots.length ? el("div", { class: "plots", id: "plots" }, ...plots) : el("p", { class: "muted", id: "plots", text: "No numeric properties yet." }),
    d.history.capped ? el("p", { class: "banner", text: d.history.capped + " numeric properties are not plotted: the plot cap is reached." }) : null,
    el("div", { class: "columns" },
      el("div", {},
        el("h2", { text: "Live status" }),
        el("table", { id: "status" }, el("tbody", {}, ...flatten(r.status, "", [], 0).map(([k, v]) =>
          el("tr", { "data-path": k }, el("td", { class: "mono", text: k }), el("td", { class: "mono value", text: v })))))),
      el("div", {},
        el("h2", { text: "Conditions" }),
        el("ul", { class: "timeline card", id: "conditions" }, ...conditions.map((c) =>
          el("li", { "data-type": c.type, "data-status": c.status },
            el("time", { title: c.lastTransitionTime || "", text: ago(c.lastTransitionTime) }),
            el("b", { text: c.type + " " + c.status }), " ", el("span", { class: "muted", text: [c.reason, c.message].filter(Boolean).join(": ") })))),
        el("h2", { text: "Swap history" }),
        swaps.length ? el("ul", { class: "timeline card", id: "swaps" }, ...swaps.map((e) =>
          el("li", {}, el("time", { title: e.time, text: ago(e.time) }), el("span", { text: e.message }))))
          : el("p", { class: "muted", text: r.swaps ? r.swaps + " swaps, none among the recent events" : "No swaps." }))),
    el("h2", { text: "Events" }),
    el("table", { id: "events" },
      el("thead", {}, el("tr", {}, ...["When", "Type", "Reason", "Message"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...[...(r.events || [])].reverse().map((e) =>
        el("tr", {}, el("td", { title: e.time, text: ago(e.time) }), el("td", { text: e.type }), el("td", { text: e.reason }), el("td", { text: e.message }))))));
}

function adaptorsPage() {
  const list = (state.overview && state.overview.adaptors) || [];
  render(el("h1", { text: "Adaptors" }),
    el("table", { id: "adaptors" },
      el("thead", {}, el("tr", {}, ...["Source", "Name", "Version", "Digest", "Models", "Devices", "Quarantined", "Execution", "Refused"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...list.map((a) => el("tr", { "data-source": a.source },
        el("td", { class: "mono", text: a.source }), el("td", { text: a.name || "" }), el("td", { class: "mono", text: a.version || "" }),
        el("td", { class: "mono", text: a.digest || "" }), el("td", { text: (a.models || []).join(", ") }),
        el("td", {}, ...a.devices.flatMap((k, i) => [i ? ", " : null, el("a", { href: deviceHref(k), text: k })])),
        el("td", { text: a.quarantined.join(", ") }), el("td", { text: a.execution || "" }),
        el("td", { class: "error", text: a.error || "" }))))));
}

window.addEventListener("hashchange", show);
show();
