// fuseline_nb run view: the front end of fuseline_nb.views.front.RunWidget.
//
// The graph's SVG arrives once (trait `svg`); afterwards the kernel sends only
// `codes` (one character per node: its state), counts, progress and the rows of
// the steps table, and this module recolours nodes by id. Clicking a node or a
// row sets `selected`; the kernel answers with `detail`. Elapsed times of running
// steps tick here, from `clock` (the kernel's time when it sent the update).

const NAMES = { P: "pending", Q: "queued", R: "running", S: "succeeded", F: "failed", C: "cancelled", K: "skipped" };
const ORDER = "PQRSFCK";

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(2)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function badge(code, palette) {
  const b = h("span", "fl-badge", NAMES[code] || code);
  b.style.background = palette[code] || "#fff";
  return b;
}

function render({ model, el }) {
  const root = h("div", "fl-view");
  el.appendChild(root);
  const header = h("div", "fl-header");
  const bar = h("div", "fl-bar");
  const fill = h("div", "fl-bar-fill");
  const pct = h("span", "fl-pct");
  bar.appendChild(fill);
  const cancel = h("button", "fl-cancel", "Cancel run");
  cancel.title = "Stop this run: queued and waiting steps are cancelled";
  const counts = h("div", "fl-counts");
  const notice = h("div", "fl-notice");
  const top = h("div", "fl-top");
  top.append(bar, pct, cancel);
  const replay = h("div", "fl-replay");
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = "0";
  const moment = h("span", "fl-moment");
  replay.append(slider, moment);
  const tabs = h("div", "fl-tabs");
  const panes = {};
  const buttons = {};
  for (const [key, label] of [["graph", "Graph"], ["steps", "Steps"], ["timeline", "Timeline"]]) {
    const b = h("button", "fl-tab", label);
    b.dataset.tab = key;
    b.addEventListener("click", () => { model.set("tab", key); model.save_changes(); });
    tabs.appendChild(b);
    buttons[key] = b;
    panes[key] = h("div", `fl-pane fl-pane-${key}`);
  }
  const legend = h("div", "fl-legend");
  const graph = h("div", "fl-graph");
  panes.graph.append(graph, legend);
  const table = h("table", "fl-table");
  const more = h("div", "fl-more");
  panes.steps.append(table, more);
  const timeline = h("div", "fl-timeline");
  panes.timeline.appendChild(timeline);
  const detail = h("div", "fl-detail");
  root.append(header, top, counts, notice, replay, tabs, panes.graph, panes.steps, panes.timeline, detail);

  let offset = 0; // kernel clock minus browser clock, in seconds
  let shapes = []; // node index -> the filled shape to recolour
  let byId = {};

  function now() { return Date.now() / 1000 + offset; }

  function select(name) {
    if (!name) return;
    model.set("selected", name);
    model.save_changes();
  }

  function drawSvg() {
    graph.innerHTML = model.get("svg");
    const svg = graph.querySelector("svg");
    if (svg) {
      const w = svg.getAttribute("width");
      svg.removeAttribute("height");
      svg.setAttribute("width", "100%");
      if (w) svg.style.maxWidth = w;
    }
    const ids = model.get("node_ids");
    const steps = model.get("node_steps");
    shapes = [];
    byId = {};
    ids.forEach((id, k) => {
      const g = graph.querySelector(`[id="${id}"]`);
      shapes.push(g ? g.querySelector("path, polygon, ellipse, rect") : null);
      if (g && steps[k]) {
        byId[id] = steps[k];
        g.classList.add("fl-clickable");
      }
    });
    paint();
  }

  function paint() {
    const codes = model.get("codes");
    const palette = model.get("palette");
    shapes.forEach((shape, k) => {
      if (shape && codes[k]) shape.setAttribute("fill", palette[codes[k]] || "#fff");
    });
    const selected = model.get("selected");
    graph.querySelectorAll(".fl-selected").forEach((e) => e.classList.remove("fl-selected"));
    if (selected) {
      const k = model.get("node_steps").indexOf(selected);
      if (k >= 0) {
        const g = graph.querySelector(`[id="${model.get("node_ids")[k]}"]`);
        if (g) g.classList.add("fl-selected");
      }
    }
  }

  function drawLegend() {
    const palette = model.get("palette");
    legend.replaceChildren(...[...ORDER].map((c) => badge(c, palette)));
  }

  function drawHeader() {
    const state = model.get("run_state");
    header.replaceChildren();
    header.append(h("b", "", "run "), h("code", "", model.get("run_id")), " of ",
      h("b", "", model.get("title")), " ");
    const code = { RUNNING: "R", SUCCEEDED: "S", FAILED: "F", CANCELLED: "C" }[state] || "R";
    header.append(badge(code, model.get("palette")));
    header.append(h("span", "fl-done", ` ${model.get("done")}/${model.get("total")} steps done`));
    const total = Math.max(model.get("total"), 1);
    const share = model.get("done") / total;
    fill.style.width = `${(100 * share).toFixed(1)}%`;
    fill.style.background = state === "FAILED" || model.get("counts").F ? "#e03131"
      : state === "CANCELLED" ? "#f08c00" : state === "SUCCEEDED" ? "#2f9e44" : "#1c7ed6";
    pct.textContent = `${Math.floor(100 * share)}%`;
    const live = state === "RUNNING" && model.get("can_cancel");
    cancel.style.display = live ? "" : "none";
    cancel.disabled = model.get("cancelling");
    if (model.get("cancelling")) cancel.textContent = "Cancelling…";
  }

  function drawCounts() {
    const c = model.get("counts");
    const palette = model.get("palette");
    counts.replaceChildren(...[...ORDER].filter((k) => c[k]).map((k) => {
      const b = badge(k, palette);
      b.textContent = `${NAMES[k]} ${c[k]}`;
      return b;
    }));
  }

  function drawRows() {
    const palette = model.get("palette");
    const head = h("tr");
    for (const t of ["step", "state", "attempts", "worker", "duration"]) head.appendChild(h("th", "", t));
    const rows = [head];
    const selected = model.get("selected");
    for (const [name, code, attempts, worker, duration, since] of model.get("rows")) {
      const tr = h("tr", name === selected ? "fl-row fl-selected" : "fl-row");
      tr.dataset.step = name;
      const state = h("td");
      state.appendChild(badge(code, palette));
      const dur = h("td", "", since ? "" : fmt(duration));
      if (since) dur.dataset.since = since;
      tr.append(h("td", "", name), state, h("td", "", attempts ? String(attempts) : ""),
        h("td", "", worker || ""), dur);
      rows.push(tr);
    }
    table.replaceChildren(...rows);
    const n = model.get("more_rows");
    more.textContent = n ? `${n.toLocaleString()} more steps not listed (failed and running steps come first)` : "";
    tick();
  }

  function drawTabs() {
    const tab = model.get("tab");
    for (const [key, pane] of Object.entries(panes)) {
      pane.style.display = key === tab ? "" : "none";
      buttons[key].classList.toggle("fl-active", key === tab);
    }
  }

  function drawReplay() {
    const n = model.get("positions");
    replay.style.display = n ? "" : "none";
    slider.max = String(n);
    slider.value = String(model.get("position"));
    moment.innerHTML = model.get("moment");
  }

  function tick() {
    const t = now();
    root.querySelectorAll("[data-since]").forEach((e) => {
      e.textContent = `${fmt(t - Number(e.dataset.since))} so far`;
    });
  }

  graph.addEventListener("click", (ev) => {
    const g = ev.target.closest("g.node");
    if (g && byId[g.id]) select(byId[g.id]);
  });
  table.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr.fl-row");
    if (tr) select(tr.dataset.step);
  });
  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    model.send({ kind: "cancel" });
  });
  slider.addEventListener("input", () => {
    model.set("position", Number(slider.value));
    model.save_changes();
  });

  const on = (names, fn) => names.forEach((n) => model.on(`change:${n}`, fn));
  on(["svg", "node_ids"], drawSvg);
  on(["codes", "selected"], paint);
  on(["run_state", "done", "total", "counts", "can_cancel", "cancelling", "title"], drawHeader);
  on(["counts"], drawCounts);
  on(["rows", "more_rows", "selected"], drawRows);
  on(["tab"], drawTabs);
  on(["palette"], () => { drawLegend(); paint(); drawCounts(); drawRows(); });
  on(["position", "positions", "moment"], drawReplay);
  model.on("change:clock", () => { offset = model.get("clock") - Date.now() / 1000; tick(); });
  model.on("change:timeline", () => { timeline.innerHTML = model.get("timeline"); });
  model.on("change:notice", () => { notice.textContent = model.get("notice"); });
  model.on("change:detail", () => { detail.innerHTML = model.get("detail"); tick(); });

  offset = model.get("clock") ? model.get("clock") - Date.now() / 1000 : 0;
  drawSvg();
  drawLegend();
  drawHeader();
  drawCounts();
  drawRows();
  drawTabs();
  drawReplay();
  timeline.innerHTML = model.get("timeline");
  notice.textContent = model.get("notice");
  detail.innerHTML = model.get("detail");
  const timer = setInterval(tick, 250);
  return () => clearInterval(timer);
}

export default { render };
