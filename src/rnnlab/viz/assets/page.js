// rnnlab viz: one page, no network. The data block holds the text, the model's top-k
// predictions and every cell's activations, 4-bit quantized, packed and deflated.
"use strict";
(async function main() {
  const D = JSON.parse(document.getElementById("data").textContent);
  const N = D.text.length, H = D.hidden, L = D.layers, Q = D.quantities.length, K = D.top_k;
  const ROW = Math.ceil(N / 2);  // bytes per (layer, quantity, cell): two 4-bit values each
  const packed = await inflate(D.activations);
  if (packed.length !== L * Q * H * ROW) throw new Error("activation block has the wrong size");

  const viewer = document.getElementById("viewer");
  const textEl = document.getElementById("text");
  const tip = document.getElementById("tip");
  const layerEl = document.getElementById("layer");
  const quantityEl = document.getElementById("quantity");
  const cellEl = document.getElementById("cell");
  const sel = { layer: D.initial.layer, quantity: D.initial.quantity, cell: D.initial.cell };

  async function inflate(b64) {
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function shown(ch) {  // a visible stand-in for invisible characters
    return { "\n": "\u21b5", " ": "\u2423", "\t": "\u21e5", "\r": "\u240d" }[ch] ?? ch;
  }

  // the chosen cell's values at every character, in the quantity's own units
  function values() {
    const q = D.quantities[sel.quantity];
    const off = ((sel.layer * Q + sel.quantity) * H + sel.cell) * ROW;
    const out = new Float32Array(N);
    for (let t = 0; t < N; t++) {
      const b = packed[off + (t >> 1)];
      const level = t & 1 ? b & 15 : b >> 4;
      out[t] = q.lo + (level / D.levels_max) * (q.hi - q.lo);
    }
    return out;
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

  for (let l = 0; l < L; l++) layerEl.add(new Option(`L${l}`, l));
  D.quantities.forEach((q, i) => quantityEl.add(new Option(q.label, i)));
  cellEl.max = H - 1;

  let current = null;
  function render() {
    const q = D.quantities[sel.quantity];
    current = values();
    for (let t = 0; t < N; t++) spans[t].style.backgroundColor = color(current[t], q);
    layerEl.value = sel.layer; quantityEl.value = sel.quantity; cellEl.value = sel.cell;
    viewer.dataset.layer = sel.layer;
    viewer.dataset.quantity = q.key;
    viewer.dataset.cell = sel.cell;
    document.getElementById("selection").textContent = `layer ${sel.layer} \u00b7 ${q.label} \u00b7 cell ${sel.cell}`;
    document.getElementById("legend-lo").textContent = fmt(q.lo);
    document.getElementById("legend-hi").textContent = fmt(q.hi);
    const id = `L${sel.layer}-${q.key}-${sel.cell}`;
    document.querySelectorAll("a.cell-link, #saturation circle").forEach((a) =>
      a.classList.toggle("current", a.dataset.id === id));
    if (location.hash !== "#" + id) history.replaceState(null, "", "#" + id);
  }
  function fmt(x) { return Number.isInteger(x) ? String(x) : x.toFixed(2); }

  function select(layer, quantityKey, cell) {
    const qi = D.quantities.findIndex((q) => q.key === quantityKey);
    if (!(layer >= 0 && layer < L && qi >= 0 && cell >= 0 && cell < H)) return false;
    Object.assign(sel, { layer, quantity: qi, cell });
    render();
    return true;
  }
  function fromHash() {
    const m = /^#L(\d+)-(\w+)-(\d+)$/.exec(location.hash);
    return m ? select(+m[1], m[2], +m[3]) : false;
  }

  layerEl.addEventListener("change", () => { sel.layer = +layerEl.value; render(); });
  quantityEl.addEventListener("change", () => { sel.quantity = +quantityEl.value; render(); });
  cellEl.addEventListener("change", () => {
    const c = Math.round(+cellEl.value);
    if (c >= 0 && c < H) sel.cell = c;
    render();
  });
  const step = (d) => { sel.cell = (sel.cell + d + H) % H; render(); };
  document.getElementById("prev").addEventListener("click", () => step(-1));
  document.getElementById("next").addEventListener("click", () => step(1));
  document.addEventListener("keydown", (e) => {
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
  });
  window.addEventListener("hashchange", fromHash);

  // links: the interpretable-cells table and the saturation circles
  const tbody = document.querySelector("#feature-table tbody");
  for (const f of D.features) {
    const tr = tbody.insertRow();
    tr.dataset.feature = f.name;
    tr.insertCell().innerHTML = `<b></b><div class="desc"></div>`;
    tr.cells[0].querySelector("b").textContent = f.name;
    tr.cells[0].querySelector(".desc").textContent = f.description;
    const td = tr.insertCell();
    if (!f.cells.length) td.textContent = "(constant in this text: no correlation)";
    for (const c of f.cells) {
      const a = document.createElement("a");
      a.className = "cell-link";
      a.dataset.id = `L${c.layer}-${c.quantity}-${c.cell}`;
      Object.assign(a.dataset, { layer: c.layer, quantity: c.quantity, cell: c.cell, r: c.r });
      a.href = "#" + a.dataset.id;
      a.textContent = `L${c.layer} ${c.quantity}[${c.cell}] r=${c.r >= 0 ? "+" : ""}${c.r.toFixed(3)}`;
      td.appendChild(a);
    }
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a.cell-link, #saturation circle");
    if (!a) return;
    e.preventDefault();
    select(+a.dataset.layer, a.dataset.quantity, +a.dataset.cell);
    viewer.scrollIntoView({ block: "start" });
  });

  // hover: the character's own probability and the model's top-k guesses of the next one
  textEl.addEventListener("mouseover", (e) => {
    const s = e.target.closest("#text span");
    if (!s) return;
    const t = +s.dataset.i;
    textEl.querySelectorAll("span.hover").forEach((x) => x.classList.remove("hover"));
    s.classList.add("hover");
    const own = D.own_probs[t];
    const next = t + 1 < N ? D.text[t + 1] : null;
    let html = `<div class="own" data-index="${t}"><b>${esc(shown(D.text[t]))}</b> `;
    html += own === null ? "(first character: not predicted)" :
      `had p=${own.toFixed(3)}, surprise ${(-Math.log2(Math.max(own, 1e-12))).toFixed(2)} bits`;
    html += `<br>cell value ${current[t].toFixed(2)}<br>next character, best ${K} guesses:</div>`;
    for (let k = 0; k < K; k++) {
      const sym = D.symbols[D.top_ids[t * K + k]], p = D.top_probs[t * K + k];
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

  if (!fromHash()) render();
  document.body.dataset.ready = "true";
})().catch((err) => {
  document.body.dataset.ready = "error";
  document.getElementById("note").textContent = `this page failed to load: ${err}`;
  throw err;
});
