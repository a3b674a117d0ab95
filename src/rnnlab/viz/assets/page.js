// rnnlab viz: one page, no network. The data block holds the text and, for each run (one, or
// two side by side), its top-k predictions and every cell's activations, 4-bit quantized,
// packed and deflated; search.js and panels.js add the span and regex searches.
// Each part below takes P, the page's shared state (data, runs, the chosen cell, helpers).
"use strict";
const $ = (id) => document.getElementById(id);

function shown(ch) {  // a visible stand-in for invisible characters
  return { "\n": "\u21b5", " ": "\u2423", "\t": "\u21e5", "\r": "\u240d" }[ch] ?? ch;
}
function esc(s) {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
function fmt(x) { return Number.isInteger(x) ? String(x) : x.toFixed(2); }
function color(v, q) {  // blue - white - red over the quantity's range
  const s = Math.max(-1, Math.min(1, (2 * (v - q.lo)) / (q.hi - q.lo) - 1));
  const a = Math.abs(s);
  const [r, g, b] = s >= 0 ? [235, 110, 90] : [95, 155, 225];  // light enough to read on
  return `rgb(${Math.round(255 + (r - 255) * a)},${Math.round(255 + (g - 255) * a)},${Math.round(255 + (b - 255) * a)})`;
}

// one run's activations as a Uint8Array of K rows (layer, quantity, cell) of N levels, with
// the per-row sums and norms a regex search needs, made once here
async function unpackRun(R, N) {
  const L = R.layers, Q = R.quantities.length, H = R.hidden, K = L * Q * H;
  const ROW = Math.ceil(N / 2);  // bytes per row: two 4-bit values each
  const raw = Uint8Array.from(atob(R.activations), (c) => c.charCodeAt(0));
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  const packed = new Uint8Array(await new Response(stream).arrayBuffer());
  if (packed.length !== K * ROW) throw new Error("activation block has the wrong size");
  const levels = new Uint8Array(K * N);
  for (let k = 0; k < K; k++) {
    for (let t = 0; t < N; t++) {
      const b = packed[k * ROW + (t >> 1)];
      levels[k * N + t] = t & 1 ? b & 15 : b >> 4;
    }
  }
  return Object.assign({}, R, { K, Q, levels, stats: rowStats(levels, K, N) });
}

// names of a cell s = {run, layer, quantity (index), cell} and of its row k
function cellNames(P) {
  const { runs } = P;
  P.row = (s) => (s.layer * runs[s.run].Q + s.quantity) * runs[s.run].hidden + s.cell;
  P.unrow = (run, k) => {
    const R = runs[run];
    return { run, layer: Math.floor(k / (R.Q * R.hidden)), quantity: Math.floor(k / R.hidden) % R.Q, cell: k % R.hidden };
  };
  P.label = (s) => `${runs.length > 1 ? runs[s.run].name + " " : ""}L${s.layer} ${runs[s.run].quantities[s.quantity].key}[${s.cell}]`;
  P.cellId = (s) => `${s.run ? "R" + s.run + "-" : ""}L${s.layer}-${runs[s.run].quantities[s.quantity].key}-${s.cell}`;
  P.values = (s = P.sel) => {  // a cell's values at every character, in its quantity's units
    const R = runs[s.run], q = R.quantities[s.quantity], off = P.row(s) * P.N;
    const out = new Float32Array(P.N);
    for (let t = 0; t < P.N; t++) out[t] = q.lo + (R.levels[off + t] / P.D.levels_max) * (q.hi - q.lo);
    return out;
  };
}

// the text, one span per character (the page caps N, so this stays responsive)
function textSpans(P) {
  const frag = document.createDocumentFragment();
  P.spans = new Array(P.N);
  for (let t = 0; t < P.N; t++) {
    const s = document.createElement("span");
    s.dataset.i = t;
    if (P.D.text[t] === "\n") { s.textContent = "\u21b5\n"; s.className = "nl"; }
    else s.textContent = P.D.text[t];
    P.spans[t] = s;
    frag.appendChild(s);
  }
  P.textEl.appendChild(frag);
}

// the chosen cell: the controls, the colors, the URL
function viewer(P) {
  const { runs, sel } = P;
  const runEl = $("run"), layerEl = $("layer"), quantityEl = $("quantity"), cellEl = $("cell");
  const unit = { lo: 0, hi: 1 }, palette = [];
  for (let l = 0; l <= P.D.levels_max; l++) palette.push(color(l / P.D.levels_max, unit));
  const shownLevel = new Uint8Array(P.N).fill(255);  // the level each span is colored by
  runs.forEach((R, i) => runEl.add(new Option(R.name, i)));
  $("run-label").hidden = runs.length < 2;
  function fillChoices() {
    const R = runs[sel.run];
    layerEl.length = 0; quantityEl.length = 0;
    for (let l = 0; l < R.layers; l++) layerEl.add(new Option(`L${l}`, l));
    R.quantities.forEach((q, i) => quantityEl.add(new Option(q.label, i)));
    cellEl.max = R.hidden - 1;
    runEl.value = sel.run;
  }
  P.render = () => {
    const R = runs[sel.run], q = R.quantities[sel.quantity];
    if (runEl.value !== String(sel.run)) fillChoices();
    P.current = P.values();
    // one color per level (the scale spans the quantity's range), set only where it changes:
    // restyling 20,000 spans was most of a regex search's time
    const levels = R.levels, off = P.row(sel) * P.N;
    for (let t = 0; t < P.N; t++) {
      const l = P.paint ? 255 : levels[off + t];
      if (l !== shownLevel[t] || P.paint) P.spans[t].style.backgroundColor = P.paint ? P.paint(t) : palette[l];
      shownLevel[t] = l;
    }
    layerEl.value = sel.layer; quantityEl.value = sel.quantity; cellEl.value = sel.cell;
    Object.assign($("viewer").dataset, { run: sel.run, layer: sel.layer, quantity: q.key, cell: sel.cell });
    const who = runs.length > 1 ? `${R.name} \u00b7 ` : "";
    $("selection").textContent = `${who}layer ${sel.layer} \u00b7 ${q.label} \u00b7 cell ${sel.cell}`;
    $("legend-lo").textContent = fmt(q.lo);
    $("legend-hi").textContent = fmt(q.hi);
    const id = P.cellId(sel);
    document.querySelectorAll("a.cell-link, #saturation circle, .cell-row").forEach((a) =>
      a.classList.toggle("current", a.dataset.id === id));
    // the choice in the URL; a page shown in a sandboxed frame (rnnlab serve) may not
    if (location.hash !== "#" + id && location.protocol !== "about:") history.replaceState(null, "", "#" + id);
  };
  P.select = (run, layer, quantityKey, cell) => {
    const R = runs[run];
    const qi = R ? R.quantities.findIndex((q) => q.key === quantityKey) : -1;
    if (!(qi >= 0 && layer >= 0 && layer < R.layers && cell >= 0 && cell < R.hidden)) return false;
    Object.assign(sel, { run, layer, quantity: qi, cell });
    P.render();
    return true;
  };
  P.fromHash = () => {
    const m = /^#(?:R(\d+)-)?L(\d+)-(\w+)-(\d+)$/.exec(location.hash);
    return m ? P.select(+(m[1] ?? 0), +m[2], m[3], +m[4]) : false;
  };
  runEl.addEventListener("change", () => {
    const R = runs[+runEl.value];
    Object.assign(sel, { run: +runEl.value, layer: R.initial.layer, quantity: R.initial.quantity, cell: R.initial.cell });
    fillChoices(); P.render();
  });
  layerEl.addEventListener("change", () => { sel.layer = +layerEl.value; P.render(); });
  quantityEl.addEventListener("change", () => { sel.quantity = +quantityEl.value; P.render(); });
  cellEl.addEventListener("change", () => {
    const c = Math.round(+cellEl.value);
    if (c >= 0 && c < runs[sel.run].hidden) sel.cell = c;
    P.render();
  });
  const step = (d) => { const H = runs[sel.run].hidden; sel.cell = (sel.cell + d + H) % H; P.render(); };
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  document.addEventListener("keydown", (e) => {
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
  });
  window.addEventListener("hashchange", P.fromHash);
  fillChoices();
}

// the interpretable-cells table, one column per run; its links, the circles and the rows of
// the searches select their cell
function featureTable(P) {
  const { runs } = P;
  const head = document.querySelector("#feature-table thead tr");
  head.cells[1].textContent = runs.length > 1 ? `${runs[0].name} (r)` : "strongest cells (r)";
  for (const R of runs.slice(1)) head.insertCell().outerHTML = `<th>${esc(R.name)} (r)</th>`;
  const tbody = document.querySelector("#feature-table tbody");
  runs[0].features.forEach((f, fi) => {
    const tr = tbody.insertRow();
    tr.dataset.feature = f.name;
    tr.insertCell().innerHTML = `<b></b><div class="desc"></div>`;
    tr.cells[0].querySelector("b").textContent = f.name;
    tr.cells[0].querySelector(".desc").textContent = f.description;
    runs.forEach((R, run) => {
      const td = tr.insertCell();
      td.dataset.run = run;
      const cells = R.features[fi].cells;
      if (!cells.length) td.textContent = "(constant in this text: no correlation)";
      for (const c of cells) {
        const s = { run, layer: c.layer, quantity: R.quantities.findIndex((q) => q.key === c.quantity), cell: c.cell };
        const a = document.createElement("a");
        a.className = "cell-link";
        a.dataset.id = P.cellId(s);
        Object.assign(a.dataset, { run, layer: c.layer, quantity: c.quantity, cell: c.cell, r: c.r });
        a.href = "#" + a.dataset.id;
        a.textContent = `L${c.layer} ${c.quantity}[${c.cell}] r=${c.r >= 0 ? "+" : ""}${c.r.toFixed(3)}`;
        td.appendChild(a);
      }
    });
  });
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a.cell-link, #saturation circle, .cell-row");
    if (!a) return;
    e.preventDefault();
    P.select(+(a.dataset.run ?? 0), +a.dataset.layer, a.dataset.quantity, +a.dataset.cell);
    if (!a.classList.contains("cell-row")) $("viewer").scrollIntoView({ block: "start" });
  });
}

// hover: the character's own probability and the chosen run's top-k guesses of the next one
function hoverTips(P) {
  const { D, N, textEl } = P, tip = $("tip");
  textEl.addEventListener("mouseover", (e) => {
    const s = e.target.closest("#text span");
    if (!s) return;
    const t = +s.dataset.i;
    textEl.querySelectorAll("span.hover").forEach((x) => x.classList.remove("hover"));
    s.classList.add("hover");
    const R = P.runs[P.sel.run], K = R.top_k, own = R.own_probs[t];
    const next = t + 1 < N ? D.text[t + 1] : null;
    let html = `<div class="own" data-index="${t}"><b>${esc(shown(D.text[t]))}</b> `;
    html += own === null ? "(first character: not predicted)" :
      `had p=${own.toFixed(3)}, surprise ${(-Math.log2(Math.max(own, 1e-12))).toFixed(2)} bits`;
    html += `<br>cell value ${P.current[t].toFixed(2)}`;
    if (D.gap) html += `<br>prediction gap ${D.gap[t].toFixed(3)}`;
    html += `<br>next character, best ${K} guesses:</div>`;
    for (let k = 0; k < K; k++) {
      const sym = R.symbols[R.top_ids[t * K + k]], p = R.top_probs[t * K + k];
      html += `<div class="pred${sym === next ? " actual" : ""}" data-char="${esc(sym)}" data-p="${p}">` +
        `<span class="ch">${esc(shown(sym))}</span><span class="p">${p.toFixed(3)}</span>` +
        `<span class="bar" style="width:${(100 * p).toFixed(1)}%"></span></div>`;
    }
    tip.innerHTML = html;
    tip.hidden = false;
    const r = s.getBoundingClientRect();
    tip.style.left = `${window.scrollX + Math.min(r.left, window.innerWidth - 220)}px`;
    tip.style.top = `${window.scrollY + r.bottom + 4}px`;
  });
  textEl.addEventListener("mouseleave", () => { tip.hidden = true; });
}

(async function main() {
  const D = JSON.parse($("data").textContent);
  const N = D.text.length;
  const runs = [];
  for (const R of D.runs) runs.push(await unpackRun(R, N));
  const I = runs[0].initial;
  const P = { D, N, runs, textEl: $("text"), sel: { run: 0, ...I }, current: null, paint: null, shown, esc };
  P.setPaint = (f) => { P.paint = f; P.render(); };  // another coloring: the runs' prediction gap
  cellNames(P);
  textSpans(P);
  viewer(P);
  featureTable(P);
  hoverTips(P);
  if (!P.fromHash()) P.render();
  searchPanels(P);
  document.body.dataset.ready = "true";
})().catch((err) => {
  document.body.dataset.ready = "error";
  $("note").textContent = `this page failed to load: ${err}`;
  throw err;
});
