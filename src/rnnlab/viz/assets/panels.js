// The page's search panels: a selected span's cells (LSTMVis's hypothesis search), a regular
// expression's cells, and, for two runs, the characters where their predictions differ most.
// Each takes P, the page's shared state (page.js).
"use strict";
const TOP = 5, WINDOW = 300;  // rows shown per run; characters each row plots

function searchPanels(P) {
  spanSearch(P);
  regexSearch(P);
  if (P.D.gap) gapList(P);
}

// select the best of `found` ({run, k}) in the viewer
function selectRow(P, f) {
  const s = P.unrow(f.run, f.k);
  P.select(f.run, s.layer, P.runs[f.run].quantities[s.quantity].key, s.cell);
}

// one row under the text: the cell's label and its activation over WINDOW characters
function cellRow(P, run, k, score, from, note, feature = null, a = 0, b = 0) {
  const s = P.unrow(run, k), R = P.runs[run];
  const div = document.createElement("div");
  div.className = "cell-row";
  Object.assign(div.dataset, { run, layer: s.layer, quantity: R.quantities[s.quantity].key, cell: s.cell, score, id: P.cellId(s) });
  const name = document.createElement("span");
  name.className = "row-label";
  name.textContent = `${P.label(s)}  ${note}`;
  div.append(name);
  div.insertAdjacentHTML("beforeend", rowPlot(P, R, k, Math.max(0, Math.min(from, P.N - WINDOW)), feature, a, b));
  return div;
}

// SVG markup (numbers only): the row's values as a line in [0, 1], with the selection [a, b)
// shaded, or the feature drawn as bars under the line
function rowPlot(P, R, k, from, feature, a, b) {
  const { D, N } = P, to = Math.min(N, from + WINDOW), W = 900, H = 48, dx = W / WINDOW;
  const rect = (x, w, cls) => `<rect x="${x.toFixed(1)}" y="0" width="${w.toFixed(1)}" height="${H}" class="${cls}"/>`;
  let out = `<svg width="${W}" height="${H}" class="row-plot" data-from="${from}">`;
  if (feature) { for (let t = from; t < to; t++) if (feature[t]) out += rect((t - from) * dx, dx, "feature"); }
  else if (b > from && a < to) out += rect((Math.max(a, from) - from) * dx, (Math.min(b, to) - Math.max(a, from)) * dx, "picked");
  const pts = [];
  for (let t = from; t < to; t++) pts.push(`${((t - from + 0.5) * dx).toFixed(1)},${(H - 2 - (R.levels[k * N + t] / D.levels_max) * (H - 4)).toFixed(1)}`);
  return out + `<polyline points="${pts.join(" ")}"/></svg>`;
}

// a selected span: mouse (drag over the text) or keyboard (click, then Shift + arrows)
function spanSearch(P) {
  const { D, N, runs, spans, textEl } = P;
  const info = document.getElementById("span-info"), rows = document.getElementById("span-rows");
  const span = { anchor: null, head: null };
  let marked = [];
  const indexOf = (node) => {
    const el = node && (node.nodeType === 1 ? node : node.parentElement);
    const s = el && el.closest("#text span[data-i]");
    return s ? +s.dataset.i : null;
  };
  textEl.addEventListener("mouseup", (e) => {
    const g = window.getSelection();
    if (!g || g.isCollapsed) {  // a click: where Shift + arrows start from
      const t = indexOf(e.target);
      if (t !== null) span.anchor = span.head = t;
      return;
    }
    const x = indexOf(g.anchorNode), y = indexOf(g.focusNode);
    if (x === null || y === null) return;
    span.anchor = x; span.head = y;
    search(Math.min(x, y), Math.max(x, y) + 1);
  });
  textEl.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { clear(); return; }
    if (!e.shiftKey || (e.key !== "ArrowRight" && e.key !== "ArrowLeft")) return;
    e.preventDefault();
    if (span.anchor === null) span.anchor = span.head = 0;
    else span.head = Math.max(0, Math.min(N - 1, span.head + (e.key === "ArrowRight" ? 1 : -1)));
    search(Math.min(span.anchor, span.head), Math.max(span.anchor, span.head) + 1);
  });
  function clear() {
    for (const t of marked) spans[t].classList.remove("picked", "fire");
    marked = [];
    rows.textContent = "";
    info.textContent = "";
    delete info.dataset.matches;
  }
  // rank every run's cells for [a, b); rows for the best; mark where the first run's fire
  function search(a, b) {
    clear();
    const t0 = performance.now();
    const found = [];
    runs.forEach((R, run) => {
      const scores = spanScores(R.levels, R.K, N, D.levels_max, a, b, D.flank);
      const best = topRows(scores, TOP, 2);
      found.push(...best.map((k) => ({ run, k, score: scores[2 * k], sign: scores[2 * k + 1] })));
      if (run > 0) return;
      const f = fires(R.levels, R.K, N, D.levels_max, a, b, D.flank, best.slice(0, D.fire_cells));
      for (let t = 0; t < N; t++) if (f[t] && (t < a || t >= b)) { spans[t].classList.add("fire"); marked.push(t); }
    });
    const fired = marked.length;
    for (let t = a; t < b; t++) { spans[t].classList.add("picked"); marked.push(t); }
    const ms = performance.now() - t0;
    Object.assign(info.dataset, { start: a, end: b, matches: fired, ms: ms.toFixed(1) });
    info.textContent = `selected ${a}\u2013${b} "${[...D.text.slice(a, b)].map(P.shown).join("")}": ` +
      `${fired} other characters where ${runs[0].name}'s best ${D.fire_cells} cells fire together ` +
      `(underlined); ${ms.toFixed(0)} ms`;
    for (const f of found) {
      const note = `margin ${f.score.toFixed(3)}, ${f.sign > 0 ? "on" : "off"} over the selection`;
      rows.appendChild(cellRow(P, f.run, f.k, f.score, a - 40, note, null, a, b));
    }
    if (found.length) selectRow(P, found[0]);
  }
}

// a regular expression: a feature, the cells that correlate with it, the best one's plot
function regexSearch(P) {
  const { D, N, runs } = P;
  const input = document.getElementById("regex");
  const info = document.getElementById("regex-info"), rows = document.getElementById("regex-rows");
  input.addEventListener("input", () => {
    const t0 = performance.now();
    rows.textContent = "";
    if (!input.value) { info.textContent = ""; return; }
    let at;
    try { at = regexMatches(D.text, input.value); }
    catch (err) { info.textContent = `not a regular expression: ${err.message}`; info.dataset.error = "1"; return; }
    delete info.dataset.error;
    const feature = new Uint8Array(N);
    for (const t of at) feature[t] = 1;
    const found = [];
    runs.forEach((R, run) => {
      const r = correlations(R.levels, R.K, N, R.stats, at);
      for (const k of topRows(r.map(Math.abs), TOP)) found.push({ run, k, r: r[k] });
    });
    const t1 = performance.now();
    const from = (at.length ? at[0] : 0) - 40;
    for (const f of found) {
      rows.appendChild(cellRow(P, f.run, f.k, f.r, from, `r=${f.r >= 0 ? "+" : ""}${f.r.toFixed(3)}`, feature));
    }
    const t2 = performance.now();
    if (found.length && at.length && at.length < N) selectRow(P, found[0]);
    const ms = performance.now() - t0;
    Object.assign(info.dataset, { matches: at.length, ms: ms.toFixed(1), rankMs: (t1 - t0).toFixed(1), rowsMs: (t2 - t1).toFixed(1) });
    info.textContent = `${at.length} of ${N} characters match; the best cells by |r| ` +
      `(bars: the pattern, line: the cell, from 40 characters before the first match); ${ms.toFixed(0)} ms`;
  });
}

// two runs: the characters where their next-character predictions differ most
function gapList(P) {
  const { D, N, runs, spans } = P;
  document.getElementById("gap").hidden = false;
  const order = Array.from({ length: N }, (_, t) => t).sort((i, j) => D.gap[j] - D.gap[i] || i - j);
  const list = document.getElementById("gap-list");
  for (const t of order.slice(0, 20)) {
    const li = document.createElement("li");
    li.dataset.i = t; li.dataset.gap = D.gap[t];
    const guess = (R) => P.shown(R.symbols[R.top_ids[t * R.top_k]]);
    li.innerHTML = `<code></code> gap ${D.gap[t].toFixed(3)}: ` +
      runs.map((R) => `${P.esc(R.name)} guesses <b>${P.esc(guess(R))}</b>`).join(", ");
    li.querySelector("code").textContent = [...D.text.slice(Math.max(0, t - 12), t + 1)].map(P.shown).join("");
    li.addEventListener("click", () => spans[t].scrollIntoView({ block: "center" }));
    list.appendChild(li);
  }
  document.getElementById("color-gap").addEventListener("change", (e) => {
    P.setPaint(e.target.checked ? (t) => `rgb(255,${Math.round(255 - 150 * D.gap[t])},255)` : null);
  });
}
