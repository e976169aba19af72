/* maas web console: plain JavaScript over the coordinator's HTTP API (README, "The web
 * console"). Every text from the server goes into the page as text, never as markup. */
"use strict";

const S = { key: sessionStorage.getItem("maas.key") || "", tenant: sessionStorage.getItem("maas.tenant") || "" };
let gen = 0; /* the current view's number: a view's refreshes stop when it is left */

/* An element: h("td", {class: "num"}, "text", child...) */
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function status(text, error) {
  const s = document.getElementById("status");
  s.textContent = text || "";
  s.className = error ? "error" : "";
}

/* What a request of a view that was left meanwhile ends with: nothing of it is drawn. */
class Stale extends Error {}

async function api(path) {
  const g = gen;
  const headers = {};
  if (S.key) headers["Authorization"] = "Bearer " + S.key;
  if (S.tenant) headers["X-Maas-Tenant"] = S.tenant;
  /* a request never outlives 15 s: a view's refresh goes on after a lost connection */
  const r = await fetch(path, { headers, signal: AbortSignal.timeout(15000) });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (g !== gen) throw new Stale("the view was left");
  if (!r.ok) {
    const err = body && body.error ? body.error.code + ": " + body.error.message : "HTTP " + r.status;
    throw new Error(err);
  }
  return body;
}

const fmt = {
  num(v, d = 4) { return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toPrecision(d).replace(/\.?0+(e|$)/, "$1"); },
  time(ms) { return ms ? new Date(ms).toLocaleString() : "–"; },
  secs(a, b) { return a && b && b >= a ? ((b - a) / 1000).toFixed(3) : "–"; },
  bytes(n) { return n >= 1048576 ? (n / 1048576).toFixed(2) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B"; },
  ago(ms) { return ms ? Math.max(0, (Date.now() - ms) / 1000).toFixed(0) + " s ago" : "–"; },
};

function stateCell(st) { return h("td", { class: "state state-" + st }, st); }

function table(caption, heads, rows, id) {
  return h("table", { id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map(([t, cls]) => h("th", { scope: "col", class: cls }, t)))),
    h("tbody", {}, rows));
}

function show(...nodes) {
  const v = document.getElementById("view");
  v.replaceChildren(...nodes);
}

/* Calls fn every ms while the view that asked is shown, one call at a time (never two in
 * flight); fn returning false stops. */
function every(ms, fn) {
  const g = gen;
  const tick = async () => {
    if (g !== gen) return;
    try {
      if ((await fn()) === false) return;
    } catch (e) {
      if (!(e instanceof Stale)) status(e.message, true);
    }
    if (g === gen) setTimeout(tick, ms);
  };
  setTimeout(tick, ms);
}

/* ------------------------------------------------------------ jobs */

async function viewJobs(params) {
  const f = new URLSearchParams(params);
  const form = h("form", { class: "filters", "aria-label": "Filter jobs", onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const n of ["state", "type", "model"]) { const v = form.elements[n].value; if (v) q.set(n, v); }
      location.hash = "#/jobs?" + q.toString();
    } },
    h("label", {}, "State", h("select", { name: "state" },
      ["", "queued", "running", "succeeded", "failed", "expired", "cancelled"].map(s =>
        h("option", { value: s, selected: f.get("state") === s }, s || "any")))),
    h("label", {}, "Type", h("select", { name: "type" },
      ["", "train", "infer", "evaluate", "optimize"].map(s =>
        h("option", { value: s, selected: f.get("type") === s }, s || "any")))),
    h("label", {}, "Model", h("input", { name: "model", value: f.get("model") || "", size: 16 })),
    h("button", { type: "submit" }, "Filter"));
  const holder = h("div", {});
  show(h("h2", {}, "Jobs"), form, holder);
  async function refresh() {
    const q = new URLSearchParams(f); q.set("limit", "100");
    const d = await api("/v1/jobs?" + q.toString());
    const rows = d.jobs.map(j => h("tr", {},
      h("td", {}, h("a", { href: "#/job/" + encodeURIComponent(j.id) }, j.id)),
      h("td", {}, j.type), h("td", {}, j.model), stateCell(j.state),
      h("td", { class: "num" }, j.attempts), h("td", {}, j.worker || "–"),
      h("td", {}, fmt.time(j.created_ms)),
      h("td", { class: "num" }, j.cost ? fmt.num(j.cost.queue_s) : "–"),
      h("td", { class: "num" }, j.cost ? fmt.num(j.cost.cpu_s) : "–"),
      h("td", { class: "num" }, j.cost ? fmt.num(j.cost.energy_j) : "–"),
      h("td", { class: "err" }, j.error ? j.error.code : "")));
    holder.replaceChildren(table(`${d.jobs.length} most recent jobs (refreshed every 2 s)`,
      [["id"], ["type"], ["model"], ["state"], ["attempts", "num"], ["worker"], ["created"],
       ["queued s", "num"], ["CPU s", "num"], ["energy J", "num"], ["error"]], rows, "jobs"));
    status("");
  }
  await refresh();
  every(2000, refresh);
}

/* A line chart of series [{name, color, points: [[x, y]...]}] as SVG, accessible by its title
 * and a data table alternative (the epochs table below it). */
function chart(title, series, id) {
  const W = 460, H = 220, L = 48, R = 10, T = 10, B = 28;
  const all = series.flatMap(s => s.points);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title + ": " + (all.length ? `${series[0].points.length} epochs` : "no epochs yet"));
  svg.setAttribute("id", id);
  svg.dataset.points = String(all.length);
  const ns = (tag, attrs, text) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  ns("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fff", stroke: "#d0d7de" });
  if (all.length) {
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
    const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
    const Y = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    for (let k = 0; k <= 4; k++) {
      const v = y0 + (y1 - y0) * k / 4;
      ns("text", { x: 4, y: Y(v) + 4 }, fmt.num(v, 3));
      ns("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: "#eef1f4" });
    }
    ns("text", { x: L, y: H - 8 }, "epoch " + x0);
    ns("text", { x: W - R - 60, y: H - 8 }, "epoch " + x1);
    for (const s of series) {
      if (!s.points.length) continue;
      ns("polyline", { fill: "none", stroke: s.color, "stroke-width": 2,
                       points: s.points.map(p => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ") });
    }
  } else {
    ns("text", { x: L + 10, y: H / 2 }, "no epoch finished yet");
  }
  const legend = h("div", { class: "legend" }, series.map(s =>
    h("span", {}, h("span", { class: "swatch", style: "background:" + s.color }), s.name)));
  return h("figure", {}, h("figcaption", {}, title), svg, legend);
}

async function viewJob(id) {
  const epochs = [];
  let next = 0;
  const head = h("div", {}), charts = h("div", { class: "charts" }), rest = h("div", {});
  show(h("h2", {}, "Job ", id), head, h("h3", {}, "Training curves"), charts, rest);
  async function refresh() {
    const j = await api("/v1/jobs/" + encodeURIComponent(id));
    if (j.type === "train" || j.type === "optimize") {
      for (let pages = 0; pages < 20; pages++) { /* every epoch since the last look */
        const e = await api(`/v1/jobs/${encodeURIComponent(id)}/epochs?from=${next}`);
        if (e.from !== next) break;
        if (e.from === 0 && next === 0) epochs.length = 0;
        for (const x of e.epochs) /* in order; a new attempt's list starts again at 1 */
          if (x && (!epochs.length || x.epoch > epochs[epochs.length - 1].epoch)) epochs.push(x);
        next = e.next;
        if (e.epochs.length < 1000) break;
      }
    }
    const c = j.cost;
    head.replaceChildren(h("dl", { class: "record" },
      h("dt", {}, "state"), h("dd", { class: "state state-" + j.state, id: "job-state" }, j.state),
      h("dt", {}, "type / model"), h("dd", {}, j.type + " · " + j.model),
      h("dt", {}, "attempts / worker"), h("dd", {}, j.attempts + " · " + (j.worker || "–")),
      h("dt", {}, "created"), h("dd", {}, fmt.time(j.created_ms)),
      h("dt", {}, "queued / ran (s)"), h("dd", {}, fmt.secs(j.created_ms, j.started_ms) + " · " + fmt.secs(j.started_ms, j.finished_ms)),
      j.progress ? [h("dt", {}, "progress"), h("dd", {}, `epoch ${j.progress.epoch} of ${j.progress.epochs}` +
        (j.progress.eta_s !== undefined ? `, ETA ${fmt.num(j.progress.eta_s, 3)} s` : ""))] : null,
      j.error ? [h("dt", {}, "error"), h("dd", { class: "err" }, j.error.code + ": " + j.error.message)] : null,
      c ? [h("dt", {}, "cost"), h("dd", { id: "job-cost" },
        `CPU ${fmt.num(c.cpu_s)} s, compute ${fmt.num(c.compute_s)} s, ${fmt.num(c.flops, 3)} FLOPs, ` +
        `peak ${fmt.bytes(c.peak_bytes)}, ${fmt.num(c.energy_j)} J` +
        (c.energy_method ? ` (${c.energy_method}, ${fmt.num(c.watts_per_core, 3)} W per busy core)` : ""))] : null,
      j.result && j.result.version ? [h("dt", {}, "version made"), h("dd", {},
        h("a", { href: "#/model/" + encodeURIComponent(j.model.split(/[:@]/)[0]) }, "version " + j.result.version))] : null));
    const pts = (k) => epochs.filter(e => typeof e[k] === "number").map(e => [e.epoch, e[k]]);
    charts.replaceChildren(
      chart("Loss", [{ name: "loss", color: "#0b57d0", points: pts("loss") },
                     { name: "val_loss", color: "#d0640b", points: pts("val_loss") }], "chart-loss"),
      chart("Accuracy", [{ name: "accuracy", color: "#116329", points: pts("accuracy") },
                         { name: "val_accuracy", color: "#a40e26", points: pts("val_accuracy") }], "chart-accuracy"));
    rest.replaceChildren(epochs.length ? table(`${epochs.length} epochs`, [["epoch", "num"], ["loss", "num"],
      ["accuracy", "num"], ["val_loss", "num"], ["val_accuracy", "num"], ["seconds", "num"]],
      epochs.slice(-50).map(e => h("tr", {}, [e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy, e.seconds]
        .map(v => h("td", { class: "num" }, typeof v === "number" ? fmt.num(v) : "–")))), "epochs") : "");
    status(j.state === "running" || j.state === "queued" ? "live: refreshed every second" : "");
    return j.state;
  }
  const st = await refresh();
  if (st === "running" || st === "queued") every(1000, async () => {
    const s = await refresh();
    return s === "running" || s === "queued";
  });
}

/* ------------------------------------------------------------ models */

async function viewModels() {
  const d = await api("/v1/models");
  show(h("h2", {}, "Models"), table(`${d.models.length} models`, [["name"], ["versions", "num"], ["aliases"]],
    d.models.map(m => h("tr", {},
      h("td", {}, h("a", { href: "#/model/" + encodeURIComponent(m.name) }, m.name)),
      h("td", { class: "num" }, m.versions),
      h("td", {}, Object.entries(m.aliases).map(([a, v]) => `${a} → ${v}`).join(", ") || "–"))), "models"));
  status("");
}

function lineage(v, byVersion) {
  const m = v.metrics || {};
  if (!v.parent) return "trained";
  const p = byVersion[v.parent];
  const parts = [];
  if (m.size_ratio) parts.push(`size ÷${fmt.num(m.size_ratio, 3)}`);
  if (m.accuracy !== undefined && m.accuracy_before !== undefined)
    parts.push(`accuracy ${fmt.num(m.accuracy_before, 4)} → ${fmt.num(m.accuracy, 4)}`);
  if (m.predict_us_before) parts.push(`predict ${fmt.num(m.predict_us_before, 3)} → ${fmt.num(m.predict_us_after, 3)} µs`);
  if (m.energy_per_1000_j_before !== undefined)
    parts.push(`energy per 1000 ${fmt.num(m.energy_per_1000_j_before, 3)} → ${fmt.num(m.energy_per_1000_j_after, 3)} J`);
  const how = v.config ? [v.config.quantize, v.config.prune ? "pruned " + v.config.prune : null].filter(x => x).join(", ") : "";
  return `from v${v.parent}${p ? "" : " (deleted)"}${how ? " (" + how + ")" : ""}: ` + parts.join("; ");
}

async function viewModel(name) {
  const [d, ms] = await Promise.all([api("/v1/models/" + encodeURIComponent(name) + "/versions"), api("/v1/models")]);
  const aliases = (ms.models.find(m => m.name === name) || { aliases: {} }).aliases;
  const byVersion = Object.fromEntries(d.versions.map(v => [v.version, v]));
  show(h("h2", {}, "Model ", name),
    h("p", {}, "Aliases: ", Object.entries(aliases).map(([a, v]) => `${a} → version ${v}`).join(", ") || "none"),
    table(`${d.versions.length} versions`, [["version", "num"], ["lineage"], ["rows", "num"], ["loss", "num"],
      ["accuracy", "num"], ["val_accuracy", "num"], ["size", "num"], ["created"], ["job"]],
      d.versions.map(v => { const m = v.metrics || {}; return h("tr", {},
        h("td", { class: "num" }, v.version), h("td", {}, lineage(v, byVersion)),
        h("td", { class: "num" }, m.rows ?? "–"), h("td", { class: "num" }, fmt.num(m.loss)),
        h("td", { class: "num" }, fmt.num(m.accuracy)), h("td", { class: "num" }, fmt.num(m.val_accuracy)),
        h("td", { class: "num" }, fmt.bytes(v.size)), h("td", {}, fmt.time(v.created_ms)),
        h("td", {}, v.job ? h("a", { href: "#/job/" + encodeURIComponent(v.job) }, v.job) : "–")); }), "versions"));
  status("");
}

/* ------------------------------------------------------------ workers and sweeps */

async function viewWorkers() {
  async function refresh() {
    const d = await api("/v1/workers");
    const lag = (k) => d.workers.reduce((a, w) => a + Math.max(0, Number(w[k] || 0)), 0);
    show(h("h2", {}, "Workers"),
      h("p", { id: "lag" }, `Topic lag: ${lag("lag_infer")} inference and ${lag("lag_work")} work messages behind, summed over the workers' partitions.`),
      table(`${d.workers.length} live workers (refreshed every 2 s)`, [["id"], ["host"], ["busy with"], ["versions loaded"],
        ["jobs done", "num"], ["failed", "num"], ["lag (infer / work)", "num"], ["last seen"]],
        d.workers.map(w => h("tr", {}, h("td", {}, w.id), h("td", {}, w.host || "–"),
          h("td", {}, w.busy ? h("a", { href: "#/job/" + encodeURIComponent(w.busy) }, w.busy) : (w.busy === undefined ? "(hidden)" : "idle")),
          h("td", {}, w.loaded === undefined ? "(hidden)" : (w.loaded || "none")),
          h("td", { class: "num" }, w.jobs_done), h("td", { class: "num" }, w.jobs_failed),
          h("td", { class: "num" }, `${w.lag_infer ?? "–"} / ${w.lag_work ?? "–"}`),
          h("td", {}, fmt.ago(Number(w.last_seen_ms))))), "workers"));
    status("");
  }
  await refresh();
  every(2000, refresh);
}

async function viewSweeps() {
  const d = await api("/v1/sweeps");
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault();
      location.hash = "#/sweep/" + encodeURIComponent(form.elements.sweep.value); } },
    h("label", {}, "Sweep id", h("input", { name: "sweep", required: true, size: 34 })),
    h("button", { type: "submit" }, "Open"));
  show(h("h2", {}, "Sweeps"), form, h("h3", {}, "Running"),
    d.active.length ? h("ul", {}, d.active.map(id => h("li", {}, h("a", { href: "#/sweep/" + encodeURIComponent(id) }, id)))) : h("p", {}, "none"));
  status("");
}

async function viewSweep(id) {
  const s = await api("/v1/sweeps/" + encodeURIComponent(id));
  show(h("h2", {}, "Sweep ", id),
    h("p", {}, `Model ${s.model}, ranked by ${s.metric}; ${s.finished} of ${s.points} points finished` +
      (s.done ? `; best: version ${s.best_version}` : "")),
    table("Points, best first", [["rank", "num"], ["job"], ["state"], ["val_loss", "num"], ["val_accuracy", "num"],
      ["learning rate", "num"], ["batch", "num"], ["epochs", "num"], ["layers"]],
      s.ranking.map(r => h("tr", {}, h("td", { class: "num" }, r.rank ?? "–"),
        h("td", {}, h("a", { href: "#/job/" + encodeURIComponent(r.job) }, r.job)), stateCell(r.state),
        h("td", { class: "num" }, fmt.num(r.val_loss)), h("td", { class: "num" }, fmt.num(r.val_accuracy)),
        h("td", { class: "num" }, fmt.num(r.learning_rate, 3)), h("td", { class: "num" }, r.batch_size),
        h("td", { class: "num" }, r.epochs), h("td", {}, r.layers))), "ranking"));
  status("");
}

/* ------------------------------------------------------------ routing */

async function route() {
  gen++;
  const [path, query] = (location.hash.slice(1) || "/jobs").split("?");
  const parts = path.split("/").filter(x => x).map(decodeURIComponent);
  document.querySelectorAll("nav a").forEach(a => a.removeAttribute("aria-current"));
  const nav = { job: "jobs", model: "models", sweep: "sweeps" }[parts[0]] || parts[0];
  const cur = document.querySelector(`nav a[data-nav="${nav}"]`);
  if (cur) cur.setAttribute("aria-current", "page");
  if (!S.key) status("Enter an API key (maas tenant create prints one; an operator's admin key sees every tenant).");
  try {
    if (parts[0] === "jobs") await viewJobs(query || "");
    else if (parts[0] === "job" && parts[1]) await viewJob(parts[1]);
    else if (parts[0] === "models") await viewModels();
    else if (parts[0] === "model" && parts[1]) await viewModel(parts[1]);
    else if (parts[0] === "workers") await viewWorkers();
    else if (parts[0] === "sweeps") await viewSweeps();
    else if (parts[0] === "sweep" && parts[1]) await viewSweep(parts[1]);
    else show(h("p", {}, "No such page."));
    document.title = "maas · " + (parts.join(" ") || "jobs");
  } catch (e) {
    if (e instanceof Stale) return;
    show(h("p", { class: "err" }, e.message));
    status(e.message, true);
  }
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  S.key = document.getElementById("key").value.trim();
  S.tenant = document.getElementById("tenant").value.trim();
  sessionStorage.setItem("maas.key", S.key);
  sessionStorage.setItem("maas.tenant", S.tenant);
  route();
});
document.getElementById("key").value = S.key;
document.getElementById("tenant").value = S.tenant;
window.addEventListener("hashchange", route);
route();
