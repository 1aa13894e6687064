// kubeclass cluster view: every figure comes from the API with the user's token; watches keep it current.
"use strict";
const state = { nodes: new Map(), pods: new Map(), classes: new Map(), verdicts: new Map(), token: "" };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { Authorization: "Bearer " + state.token, Accept: "application/json",
    "Content-Type": "application/json", ...(opts.headers || {}) } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.message || r.statusText), { status: r.status });
  return body;
}

// ---------------------------------------------------------------- watches: list, then watch from its resourceVersion
function keyOf(o) { return (o.metadata.namespace || "") + "/" + o.metadata.name; }

async function follow(path, map) {
  for (;;) {
    try {
      const list = await api(path);
      map.clear();
      for (const o of list.items) map.set(keyOf(o), o);
      render();
      const r = await fetch(path + (path.includes("?") ? "&" : "?") + "watch=1&allowWatchBookmarks=true&resourceVersion=" +
        list.metadata.resourceVersion, { headers: { Authorization: "Bearer " + state.token } });
      if (!r.ok) throw new Error("watch " + r.status);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line);
          if (ev.type === "BOOKMARK") continue;
          if (ev.type === "ERROR") throw new Error(ev.object.message);
          if (ev.type === "DELETED") map.delete(keyOf(ev.object)); else map.set(keyOf(ev.object), ev.object);
          scheduleRender();
        }
      }
    } catch (e) {
      if (e.status === 401) return logout("the token was refused");
      $("status").textContent = "reconnecting: " + e.message;
      await new Promise((res) => setTimeout(res, 1000));
    }
  }
}

let pending = null;
function scheduleRender() { if (!pending) pending = setTimeout(() => { pending = null; render(); }, 150); }

// ---------------------------------------------------------------- views
function ready(n) {
  const c = (n.status && n.status.conditions || []).find((x) => x.type === "Ready");
  return c && c.status === "True";
}

function handlersOf(n) {
  return new Set(((n.status && n.status.runtimeHandlers) || []).map((h) => h.name).filter((x) => x));
}

function unavailableOf(n) {
  try { return JSON.parse((n.metadata.annotations || {})["node.kubeclass.io/unavailable-runtime-handlers"] || "{}"); }
  catch (e) { return {}; }
}

function renderHandlers() {
  const nodes = [...state.nodes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const classesBy = new Map();
  for (const rc of state.classes.values()) {
    if (!classesBy.has(rc.handler)) classesBy.set(rc.handler, []);
    classesBy.get(rc.handler).push(rc.metadata.name);
  }
  const names = new Set(classesBy.keys());
  for (const n of nodes) { for (const h of handlersOf(n)) names.add(h); for (const h of Object.keys(unavailableOf(n))) names.add(h); }
  const cols = [...names].filter((x) => x).sort();
  const t = $("handlers");
  t.replaceChildren(el("tr", {}, el("th", {}, "node"), el("th", {}, "ready"),
    ...cols.map((h) => el("th", { "data-handler": h }, h, classesBy.has(h) ? el("div", { class: "muted" }, classesBy.get(h).join(", ")) : ""))));
  for (const n of nodes) {
    const have = handlersOf(n), why = unavailableOf(n);
    const published = n.status && n.status.runtimeHandlers;
    const row = el("tr", { "data-node": n.metadata.name }, el("td", {}, n.metadata.name), el("td", {}, ready(n) ? "Ready" : "NotReady"));
    for (const h of cols) {
      let cell;
      if (!published) cell = el("td", { class: "muted", "data-handler": h }, "? (the node publishes no handlers)");
      else if (have.has(h)) cell = el("td", { class: "yes", "data-handler": h }, "available");
      else cell = el("td", { class: "no", "data-handler": h }, "unavailable: " + (why[h] || "not configured on this node"));
      row.append(cell);
    }
    t.append(row);
  }
}

function fmtOverhead(o) {
  const pf = o && o.podFixed;
  return pf ? Object.entries(pf).map(([k, v]) => k + " " + v).join(", ") : "none";
}

function renderClasses() {
  const t = $("classes");
  t.replaceChildren(el("tr", {}, el("th", {}, "name"), el("th", {}, "handler"), el("th", {}, "declared overhead"),
    el("th", {}, "measured overhead (p95 by node)"), el("th", {}, "scheduling")));
  for (const rc of [...state.classes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    let measured = "not measured yet";
    try {
      const m = JSON.parse((rc.metadata.annotations || {})["runtimeclass.kubeclass.io/measured-overhead"] || "null");
      if (m) measured = Object.entries(m).map(([node, f]) => node + ": cpu " + f.cpu + ", memory " + f.memory + " (" + f.pods + " Pods)").join("; ");
    } catch (e) { /* a hand-edited annotation */ }
    const s = rc.scheduling || {};
    const sched = [s.nodeSelector ? "nodeSelector " + Object.entries(s.nodeSelector).map(([k, v]) => k + "=" + v).join(",") : "",
      s.tolerations ? "tolerates " + s.tolerations.map((x) => x.key + (x.value ? "=" + x.value : "")).join(",") : ""].filter((x) => x).join("; ");
    t.append(el("tr", { "data-class": rc.metadata.name }, el("td", {}, rc.metadata.name), el("td", {}, rc.handler),
      el("td", {}, fmtOverhead(rc.overhead)), el("td", {}, measured), el("td", {}, sched || "-")));
  }
}

function renderPods() {
  const groups = new Map();
  for (const p of state.pods.values()) {
    const rc = p.spec.runtimeClassName || "(none)";
    const node = p.spec.nodeName || "(not scheduled)";
    const k = rc + "\u0000" + node;
    if (!groups.has(k)) groups.set(k, { rc, node, pods: [] });
    groups.get(k).pods.push(p);
  }
  const box = $("pods");
  box.replaceChildren();
  for (const g of [...groups.values()].sort((a, b) => (a.rc + a.node).localeCompare(b.rc + b.node))) {
    box.append(el("h3", {}, "RuntimeClass " + g.rc + " on " + g.node));
    for (const p of g.pods.sort((a, b) => keyOf(a).localeCompare(keyOf(b)))) {
      const phase = (p.status && p.status.phase) || "Pending";
      box.append(el("div", { class: "pod", "data-pod": keyOf(p) }, keyOf(p) + " ", el("span", { class: "phase-" + phase }, phase)));
    }
  }
}

function renderPending() {
  const box = $("pending");
  box.replaceChildren();
  const pend = [...state.pods.values()].filter((p) => !p.spec.nodeName && (!p.status || !p.status.phase || p.status.phase === "Pending"));
  if (!pend.length) { box.append(el("p", { class: "muted" }, "none")); return; }
  for (const p of pend.sort((a, b) => keyOf(a).localeCompare(keyOf(b)))) {
    const k = keyOf(p);
    const cond = ((p.status && p.status.conditions) || []).find((c) => c.type === "PodScheduled");
    const div = el("div", { "data-pending": k }, el("h3", {}, k + " (RuntimeClass " + (p.spec.runtimeClassName || "none") + ")"),
      el("p", {}, cond && cond.message ? cond.message : "not tried by the scheduler yet"));
    const v = state.verdicts.get(k);
    if (v) {
      const t = el("table", {}, el("tr", {}, el("th", {}, "node"), el("th", {}, "verdict")));
      for (const [node, plugins] of Object.entries(v.verdicts).sort()) {
        const failed = Object.entries(plugins).filter(([, r]) => r !== "passed");
        t.append(el("tr", { "data-verdict": node }, el("td", {}, node),
          el("td", { class: failed.length ? "no" : "yes" }, failed.length ? failed[0][0] + ": " + failed[0][1] : "fits now")));
      }
      div.append(t);
    }
    box.append(div);
    explainSoon(p);
  }
}

const asked = new Map();
function explainSoon(p) {
  const k = keyOf(p), rv = p.metadata.resourceVersion;
  if (asked.get(k) === rv) return;
  asked.set(k, rv);
  api("/ui/explain?namespace=" + encodeURIComponent(p.metadata.namespace) + "&name=" + encodeURIComponent(p.metadata.name))
    .then((v) => { state.verdicts.set(k, v); scheduleRender(); })
    .catch(() => { /* not allowed, or gone */ });
}

function render() {
  renderHandlers(); renderClasses(); renderPending(); renderPods();
  $("status").textContent = state.nodes.size + " nodes, " + state.classes.size + " RuntimeClasses, " + state.pods.size + " Pods";
}

// ---------------------------------------------------------------- login
async function start() {
  try {
    const who = await api("/apis/authentication.k8s.io/v1/selfsubjectreviews", { method: "POST",
      body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }) });
    $("who").textContent = "logged in as " + who.status.userInfo.username;
  } catch (e) {
    sessionStorage.removeItem("kubeclass-token");
    $("login").hidden = false; $("view").hidden = true;
    $("login-error").textContent = e.status === 401 ? "This token is not valid for this cluster." : e.message;
    return;
  }
  $("login").hidden = true; $("view").hidden = false; $("logout").hidden = false;
  follow("/api/v1/nodes", state.nodes);
  follow("/apis/node.k8s.io/v1/runtimeclasses", state.classes);
  follow("/api/v1/pods", state.pods);
}

function logout(why) {
  sessionStorage.removeItem("kubeclass-token");
  location.reload();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("kubeclass-token", state.token);
    start();
  });
  $("logout").addEventListener("click", () => logout());
  state.token = sessionStorage.getItem("kubeclass-token") || "";
  if (state.token) start(); else $("login").hidden = false;
});
