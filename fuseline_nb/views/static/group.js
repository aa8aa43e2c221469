// fuseline_nb run group view: one row per run; a click on a row sets `selected`
// (the run's index) and the kernel shows that run's live view below the table.
const NAMES = { RUNNING: "running", SUCCEEDED: "succeeded", FAILED: "failed", CANCELLED: "cancelled" };

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el }) {
  const root = h("div", "fl-view");
  const summary = h("div", "fl-header");
  const table = h("table", "fl-table");
  root.append(summary, table);
  el.appendChild(root);

  function draw() {
    const palette = model.get("palette");
    const rows = model.get("rows");
    const head = h("tr");
    for (const t of ["#", "run", "state", "progress", "duration", "inputs"]) head.appendChild(h("th", "", t));
    const out = [head];
    rows.forEach(([runId, state, done, total, duration, inputs], k) => {
      const tr = h("tr", k === model.get("selected") ? "fl-row fl-selected" : "fl-row");
      tr.dataset.index = String(k);
      const badge = h("span", "fl-badge", NAMES[state] || state.toLowerCase());
      badge.style.background = palette[state] || "#fff";
      const st = h("td");
      st.appendChild(badge);
      const prog = h("td");
      const bar = h("div", "fl-bar");
      bar.style.width = "120px";
      bar.style.display = "inline-block";
      const fill = h("div", "fl-bar-fill");
      fill.style.width = `${(100 * done / Math.max(total, 1)).toFixed(1)}%`;
      fill.style.background = palette[state] || "#1c7ed6";
      bar.appendChild(fill);
      prog.append(bar, ` ${done}/${total}`);
      tr.append(h("td", "", String(k)), h("td", "", runId.slice(0, 8)), st, prog,
        h("td", "", duration === null ? "" : `${duration.toFixed(2)} s`), h("td", "", inputs));
      out.push(tr);
    });
    table.replaceChildren(...out);
    summary.textContent = model.get("summary");
  }
  table.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr.fl-row");
    if (!tr) return;
    model.set("selected", Number(tr.dataset.index));
    model.save_changes();
  });
  for (const n of ["rows", "selected", "summary", "palette"]) model.on(`change:${n}`, draw);
  draw();
}

export default { render };
