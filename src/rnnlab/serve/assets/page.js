// rnnlab playground: streams /v1/generate (Server-Sent Events) into the page, each character
// tinted by its surprise; hover/focus shows the model's top-5 guesses. No outside requests.
"use strict";
const $ = (id) => document.getElementById(id);
const MAX_BITS = 8;  // surprise at which the tint is fully red
let controller = null;  // the request in flight (AbortController), or null

function show(c) {  // a character as the tooltip and page can show it
  return c === "\n" ? "\u21b5" : c === " " ? "\u2423" : c === "\t" ? "\u21e5" : c;
}

function visible(text) {  // a newline keeps its line break; other control characters get a
  // picture (U+2400 + code), since a form feed or carriage return would upset the layout
  if (text === "\n") return "\u21b5\n";
  return text.replace(/[\x00-\x08\x0b-\x1f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)));
}

function tint(bits) {
  const a = Math.max(0, Math.min(1, bits / MAX_BITS));
  const gb = Math.round(255 - 200 * a);
  return `rgb(255, ${gb}, ${gb})`;
}

async function loadModels() {
  const r = await fetch("/v1/models");
  const data = await r.json();
  const select = $("model");
  for (const m of data.models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = m.name;
    o.dataset.info = `${m.model.cell} ${m.model.num_layers}x${m.model.hidden_size}, ` +
      `${m.vocab.size} symbols` + (m.best_val_bpc != null ? `, val ${m.best_val_bpc.toFixed(3)} bpc` : "");
    select.appendChild(o);
  }
  $("length").max = data.limits.max_length;
  initViz(Boolean(data.viz));
  showInfo();
}

function showInfo() {
  const o = $("model").selectedOptions[0];
  $("model-info").textContent = o ? o.dataset.info : "";
}

function request() {  // the body the controls describe
  const body = {
    model: $("model").value,
    prompt: $("prompt").value,
    length: Number($("length").value),
    temperature: Number($("temperature").value),
    top_k: Number($("top_k").value),
    top_p: Number($("top_p").value),
    stream: true,
    details: true,
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

function addChar(event, index) {
  const span = document.createElement("span");
  span.className = "c";
  span.textContent = visible(event.text);
  span.style.backgroundColor = tint(event.surprise_bits);
  span.dataset.i = index;
  span.dataset.surprise = event.surprise_bits;
  span.dataset.top5 = JSON.stringify(event.top5);
  span.tabIndex = -1;
  $("output").appendChild(span);
}

function setRunning(running, message) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
  document.body.dataset.state = running ? "running" : "idle";
  $("status").textContent = message;
}

async function generate() {
  if (controller) return;
  stopPicking();
  const body = request();
  document.body.dataset.lastRequest = JSON.stringify(body);
  const out = $("output");
  out.replaceChildren();
  const echo = document.createElement("span");
  echo.id = "prompt-echo";
  echo.textContent = body.prompt;
  out.appendChild(echo);
  controller = new AbortController();
  setRunning(true, "generating\u2026");
  let count = 0, reason = "";
  const t0 = performance.now();
  try {
    const r = await fetch("/v1/generate", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({error: r.statusText}));
      throw new Error(`${r.status}: ${err.error}`);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let kind = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const event = JSON.parse(data);
        if (kind === "message") addChar(event, count++);
        else if (kind === "done") reason = event.finish_reason;
        else if (kind === "error") throw new Error(event.error);
      }
      $("status").textContent = `${count} characters`;
    }
    const s = (performance.now() - t0) / 1000;
    setRunning(false, `${count} characters in ${s.toFixed(1)} s (${reason})`);
  } catch (e) {
    if (e.name === "AbortError") setRunning(false, `stopped after ${count} characters`);
    else setRunning(false, `error: ${e.message}`);
  } finally {
    controller = null;
    document.body.dataset.count = count;
  }
}

function stop() {
  if (controller) controller.abort();
}

// pick mode: the user writes with the model, one character at a time, from its five best guesses
// (POST /v1/completions, one token with its top-5 log-probabilities: the model's own
// distribution of the next character); Generate then lets it run on from the text so far
let picking = false;
function startPicking() {
  if (controller) return;
  const out = $("output");
  out.replaceChildren();
  const echo = document.createElement("span");
  echo.id = "prompt-echo";
  echo.textContent = $("prompt").value;
  out.appendChild(echo);
  picking = true;
  offerChoices();
}
function pickedText() {
  return [...$("output").querySelectorAll("span.c")].map((s) => s.dataset.char).join("");
}
async function offerChoices() {
  const box = $("choices");
  const r = await fetch("/v1/completions", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({model: $("model").value, prompt: $("prompt").value + pickedText(),
                          max_tokens: 1, temperature: 0, logprobs: 5}),
  });
  const body = await r.json();
  if (!picking) return;  // Generate took over while the guesses were on their way
  if (!r.ok) { $("status").textContent = `error: ${body.error.message}`; return; }
  const top = Object.entries(body.choices[0].logprobs.top_logprobs[0])
    .map(([c, lp]) => [c, Math.exp(lp)]).sort((a, b) => b[1] - a[1]);
  box.replaceChildren();
  top.forEach(([c, p], i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.dataset.char = c;
    b.textContent = `${i + 1}  '${show(c)}'  ${p.toFixed(3)}`;
    b.addEventListener("click", () => choose(c, p, top));
    box.appendChild(b);
  });
  box.hidden = false;
  $("status").textContent = `${pickedText().length} characters picked; 1-5 picks, Generate lets it run`;
  document.body.dataset.state = "picking";
}
function choose(c, p, top) {
  const n = $("output").querySelectorAll("span.c").length;
  addChar({text: c, surprise_bits: -Math.log2(p), top5: top}, n);
  $("output").lastChild.dataset.char = c;
  offerChoices();
}
function stopPicking() {  // Generate continues from what was picked
  if (!picking) return;
  $("prompt").value += pickedText();
  picking = false;
  $("choices").hidden = true;
}

function showTip(span) {
  const tip = $("tip");
  const top5 = JSON.parse(span.dataset.top5);
  tip.replaceChildren();
  const own = document.createElement("div");
  own.className = "own";
  own.textContent = `'${show(span.textContent)}': surprise ${Number(span.dataset.surprise).toFixed(2)} bits`;
  tip.appendChild(own);
  for (const [c, p] of top5) {
    const row = document.createElement("div");
    row.className = "pred";
    row.dataset.char = c;
    const a = document.createElement("span");
    a.textContent = `'${show(c)}'`;
    const b = document.createElement("span");
    b.className = "p";
    b.textContent = p.toFixed(3);
    row.append(a, b);
    tip.appendChild(row);
  }
  const box = span.getBoundingClientRect();
  tip.style.left = `${Math.min(box.left, window.innerWidth - 180)}px`;
  tip.style.top = `${box.bottom + 6}px`;
  tip.hidden = false;
}

function init() {
  for (const id of ["temperature", "top_k", "top_p"]) {
    const input = $(id);
    input.addEventListener("input", () => { $(`${id}-out`).textContent = input.value; });
  }
  $("model").addEventListener("change", showInfo);
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  $("stop").addEventListener("click", stop);
  $("pick").addEventListener("click", startPicking);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") stop();
    const choice = picking && !e.target.matches("textarea, input") && "12345".indexOf(e.key);
    if (choice >= 0 && $("choices").children[choice]) $("choices").children[choice].click();
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if ($("panel-viz").hidden) generate(); else showViz();
    }
  });
  const out = $("output");
  out.addEventListener("mouseover", (e) => { if (e.target.classList.contains("c")) showTip(e.target); });
  out.addEventListener("mouseleave", () => { $("tip").hidden = true; });
  // keyboard: focus the text, then arrows walk the characters and show each one's guesses
  out.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const chars = out.querySelectorAll("span.c");
    if (!chars.length) return;
    const cur = document.activeElement.classList.contains("c") ? Number(document.activeElement.dataset.i) : -1;
    const next = Math.max(0, Math.min(chars.length - 1, cur + (e.key === "ArrowRight" ? 1 : -1)));
    chars[next].focus();
    showTip(chars[next]);
    e.preventDefault();
  });
  loadModels().then(() => { document.body.dataset.ready = "true"; document.body.dataset.state = "idle"; },
                    (e) => { $("status").textContent = `error: ${e.message}`; });
}

// the viz tab: POST /v1/viz renders the viz page for the pasted text, shown in a sandboxed frame
let vizTimer = null, vizSeq = 0;
function openTab(name) {
  for (const t of ["generate", "viz"]) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
    $(`panel-${t}`).hidden = t !== name;
  }
}
async function showViz() {
  const text = $("viz-text").value, seq = ++vizSeq;
  if (text.length < 2) { $("viz-status").textContent = "type or paste at least 2 characters"; return; }
  $("viz-status").textContent = "recording the cells\u2026";
  document.body.dataset.viz = "busy";
  const t0 = performance.now();
  const r = await fetch("/v1/viz", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: $("model").value, text }),
  });
  if (seq !== vizSeq) return;  // a newer request went out while this one ran
  if (!r.ok) {
    $("viz-status").textContent = `error: ${(await r.json()).error}`;
    document.body.dataset.viz = "error";
    return;
  }
  $("viz-frame").srcdoc = await r.text();
  $("viz-status").textContent = `${text.length} characters, ${Math.round(performance.now() - t0)} ms`;
  Object.assign(document.body.dataset, { viz: "shown", vizChars: text.length });
}
function initViz(enabled) {
  $("tab-viz").hidden = !enabled;
  $("tab-generate").addEventListener("click", () => openTab("generate"));
  $("tab-viz").addEventListener("click", () => openTab("viz"));
  $("viz-go").addEventListener("click", showViz);
  $("viz-text").addEventListener("input", () => {
    if (!$("viz-live").checked) return;
    clearTimeout(vizTimer);
    vizTimer = setTimeout(showViz, 600);  // live, but one request per pause in the typing
  });
}

init();
