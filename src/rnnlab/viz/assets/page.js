// rnnlab viz: one page, no network. The data block holds the text and, for each run (one, or
// two side by side), its top-k predictions and every cell's activations, 4-bit quantized,
// packed and deflated; search.js and panels.js add the span and regex searches.
"use strict";
(async function main() {
  const D = JSON.parse(document.getElementById("data").textContent);
  const N = D.text.length;
  const runs = [];
  for (const R of D.runs) runs.push(await unpackRun(R));

  const viewer = document.getElementById("viewer");
  const textEl = document.getElementById("text");
  const tip = document.getElementById("tip");
  const runEl = document.getElementById("run");
  const layerEl = document.getElementById("layer");
  const quantityEl = document.getElementById("quantity");
  const cellEl = document.getElementById("cell");
  const R0 = runs[0];
  const sel = { run: 0, layer: R0.initial.layer, quantity: R0.initial.quantity, cell: R0.initial.cell };

  async function unpackRun(R) {
    const L = R.layers, Q = R.quantities.length, H = R.hidden, K = L * Q * H;
    const ROW = Math.ceil(N / 2);  // bytes per row: two 4-bit values each
    const raw = Uint8Array.from(atob(R.activations), (c) => c.charCodeAt(0));
    const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    const packed = new Uint8Array(await new Response(stream).arrayBuffer());
    if (packed.length !== K * ROW) throw new Error("activation block has the wrong size");
    const levels = new Uint8Array(K * N);  // row (layer, quantity, cell) of N levels
    for (let k = 0; k < K; k++) {
      for (let t = 0; t < N; t++) {
        const b = packed[k * ROW + (t >> 1)];
        levels[k * N + t] = t & 1 ? b & 15 : b >> 4;
      }
    }
    // precomputed once, so a regex search only sums over the matched characters
    return Object.assign({}, R, { K, Q, levels, stats: rowStats(levels, K, N) });
  }

  const row = (s) => (s.layer * runs[s.run].Q + s.quantity) * runs[s.run].hidden + s.cell;
  function unrow(run, k) {
    const R = runs[run];
    return { run, layer: Math.floor(k / (R.Q * R.hidden)), quantity: Math.floor(k / R.hidden) % R.Q, cell: k % R.hidden };
  }
  function label(s) {
    const R = runs[s.run];
    return `${runs.length > 1 ? R.name + " " : ""}L${s.layer} ${R.quantities[s.quantity].key}[${s.cell}]`;
  }
  function cellId(s) {
    return `${s.run ? "R" + s.run + "-" : ""}L${s.layer}-${runs[s.run].quantities[s.quantity].key}-${s.cell}`;
  }

  // a cell's values at every character, in its quantity's own units
  function values(s = sel) {
    const R = runs[s.run], q = R.quantities[s.quantity], off = row(s) * N;
    const out = new Float32Array(N);
    for (let t = 0; t < N; t++) out[t] = q.lo + (R.levels[off + t] / D.levels_max) * (q.hi - q.lo);
    return out;
  }

  function shown(ch) {  // a visible stand-in for invisible characters
    return { "\n": "\u21b5", " ": "\u2423", "\t": "\u21e5", "\r": "\u240d" }[ch] ?? ch;
  }

  function color(v, q) {  // blue - white - red over the quantity's range
    const s = Math.max(-1, Math.min(1, (2 * (v - q.lo)) / (q.hi - q.lo) - 1));
    const a = Math.abs(s);
    const [r, g, b] = s >= 0 ? [235, 110, 90] : [95, 155, 225];  // light enough to read on
    return `rgb(${Math.round(255 + (r - 255) * a)},${Math.round(255 + (g - 255) * a)},${Math.round(255 + (b - 255) * a)})`;
  }

  // the text, one span per character (the page caps N, so this stays responsive)
  const spans = new Array(N);
  const frag = document.createDocumentFragment();
  for (let t = 0; t < N; t++) {
    const s = document.createElement("span");
    s.dataset.i = t;
    if (D.text[t] === "\n") { s.textContent = "\u21b5\n"; s.className = "nl"; }
    else s.textContent = D.text[t];
    spans[t] = s;
    frag.appendChild(s);
  }
  textEl.appendChild(frag);

  runs.forEach((R, i) => runEl.add(new Option(R.name, i)));
  document.getElementById("run-label").hidden = runs.length < 2;
  function fillChoices() {
    const R = runs[sel.run];
    layerEl.length = 0; quantityEl.length = 0;
    for (let l = 0; l < R.layers; l++) layerEl.add(new Option(`L${l}`, l));
    R.quantities.forEach((q, i) => quantityEl.add(new Option(q.label, i)));
    cellEl.max = R.hidden - 1;
  }

  let current = null, paint = null;  // paint: another coloring (the runs' prediction gap)
  function render() {
    const R = runs[sel.run], q = R.quantities[sel.quantity];
    if (runEl.value !== String(sel.run)) { runEl.value = sel.run; fillChoices(); }
    current = values();
    for (let t = 0; t < N; t++) spans[t].style.backgroundColor = paint ? paint(t) : color(current[t], q);
    layerEl.value = sel.layer; quantityEl.value = sel.quantity; cellEl.value = sel.cell;
    Object.assign(viewer.dataset, { run: sel.run, layer: sel.layer, quantity: q.key, cell: sel.cell });
    const who = runs.length > 1 ? `${R.name} \u00b7 ` : "";
    document.getElementById("selection").textContent = `${who}layer ${sel.layer} \u00b7 ${q.label} \u00b7 cell ${sel.cell}`;
    document.getElementById("legend-lo").textContent = fmt(q.lo);
    document.getElementById("legend-hi").textContent = fmt(q.hi);
    const id = cellId(sel);
    document.querySelectorAll("a.cell-link, #saturation circle, .cell-row").forEach((a) =>
      a.classList.toggle("current", a.dataset.id === id));
    // the choice in the URL; a page shown in a sandboxed frame (rnnlab serve) may not
    if (location.hash !== "#" + id && location.protocol !== "about:") history.replaceState(null, "", "#" + id);
  }
  function fmt(x) { return Number.isInteger(x) ? String(x) : x.toFixed(2); }

  function select(run, layer, quantityKey, cell) {
    const R = runs[run];
    const qi = R ? R.quantities.findIndex((q) => q.key === quantityKey) : -1;
    if (!(qi >= 0 && layer >= 0 && layer < R.layers && cell >= 0 && cell < R.hidden)) return false;
    Object.assign(sel, { run, layer, quantity: qi, cell });
    render();
    return true;
  }
  function fromHash() {
    const m = /^#(?:R(\d+)-)?L(\d+)-(\w+)-(\d+)$/.exec(location.hash);
    return m ? select(+(m[1] ?? 0), +m[2], m[3], +m[4]) : false;
  }

  runEl.addEventListener("change", () => {
    const R = runs[+runEl.value];
    Object.assign(sel, { run: +runEl.value, layer: R.initial.layer, quantity: R.initial.quantity, cell: R.initial.cell });
    fillChoices(); render();
  });
  layerEl.addEventListener("change", () => { sel.layer = +layerEl.value; render(); });
  quantityEl.addEventListener("change", () => { sel.quantity = +quantityEl.value; render(); });
  cellEl.addEventListener("change", () => {
    const c = Math.round(+cellEl.value);
    if (c >= 0 && c < runs[sel.run].hidden) sel.cell = c;
    render();
  });
  const step = (d) => { const H = runs[sel.run].hidden; sel.cell = (sel.cell + d + H) % H; render(); };
  document.getElementById("prev").addEventListener("click", () => step(-1));
  document.getElementById("next").addEventListener("click", () => step(1));
  document.addEventListener("keydown", (e) => {
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
  });
  window.addEventListener("hashchange", fromHash);

  // the interpretable-cells table: one column per run
  const head = document.querySelector("#feature-table thead tr");
  head.cells[1].textContent = runs.length > 1 ? `${runs[0].name} (r)` : "strongest cells (r)";
  for (const R of runs.slice(1)) head.insertCell().outerHTML = `<th>${esc(R.name)} (r)</th>`;
  const tbody = document.querySelector("#feature-table tbody");
  R0.features.forEach((f, fi) => {
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
        const a = cellLink(s, ` r=${c.r >= 0 ? "+" : ""}${c.r.toFixed(3)}`);
        a.dataset.r = c.r;
        td.appendChild(a);
      }
    });
  });
  function cellLink(s, suffix) {
    const a = document.createElement("a");
    a.className = "cell-link";
    a.dataset.id = cellId(s);
    const R = runs[s.run];
    Object.assign(a.dataset, { run: s.run, layer: s.layer, quantity: R.quantities[s.quantity].key, cell: s.cell });
    a.href = "#" + a.dataset.id;
    a.textContent = `L${s.layer} ${R.quantities[s.quantity].key}[${s.cell}]${suffix}`;
    return a;
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a.cell-link, #saturation circle, .cell-row");
    if (!a) return;
    e.preventDefault();
    select(+(a.dataset.run ?? 0), +a.dataset.layer, a.dataset.quantity, +a.dataset.cell);
    if (!a.classList.contains("cell-row")) viewer.scrollIntoView({ block: "start" });
  });

  // hover: the character's own probability and each run's top-k guesses of the next one
  textEl.addEventListener("mouseover", (e) => {
    const s = e.target.closest("#text span");
    if (!s) return;
    const t = +s.dataset.i;
    textEl.querySelectorAll("span.hover").forEach((x) => x.classList.remove("hover"));
    s.classList.add("hover");
    const R = runs[sel.run], K = R.top_k, own = R.own_probs[t];
    const next = t + 1 < N ? D.text[t + 1] : null;
    let html = `<div class="own" data-index="${t}"><b>${esc(shown(D.text[t]))}</b> `;
    html += own === null ? "(first character: not predicted)" :
      `had p=${own.toFixed(3)}, surprise ${(-Math.log2(Math.max(own, 1e-12))).toFixed(2)} bits`;
    html += `<br>cell value ${current[t].toFixed(2)}`;
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
  function esc(s) {
    return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }

  fillChoices();
  if (!fromHash()) render();
  searchPanels({
    D, N, runs, spans, textEl, sel, select, render, label, cellId, unrow, esc, shown,
    setPaint: (f) => { paint = f; render(); },
  });
  document.body.dataset.ready = "true";
})().catch((err) => {
  document.body.dataset.ready = "error";
  document.getElementById("note").textContent = `this page failed to load: ${err}`;
  throw err;
});
