// The page's two searches; viz/search.py is the same in numpy, and the tests hold them equal.
// Both read one run's levels: a Uint8Array of K rows (layer, quantity, cell) of N characters,
// each value in 0..levels_max (its quantity's range), so u = level / levels_max is in [0, 1].
"use strict";

// Cells on over [a, b) and off over `flank` characters around it (or the reverse), scored by
// the margin min(selection) - max(around): the width of the range of thresholds for which the
// cell passes LSTMVis's rule (see search.py span_scores for why). Returns Float64Array(2K):
// score, sign per row.
function spanScores(levels, K, N, levelsMax, a, b, flank) {
  const out = new Float64Array(2 * K);
  const lo = Math.max(a - flank, 0), hi = Math.min(b + flank, N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    let sMin = Infinity, sMax = -Infinity, sSum = 0;
    for (let t = a; t < b; t++) {
      const u = levels[row + t] / levelsMax;
      if (u < sMin) sMin = u;
      if (u > sMax) sMax = u;
      sSum += u;
    }
    let fMin = Infinity, fMax = -Infinity, fSum = 0, fN = 0;
    for (let t = lo; t < hi; t++) {
      if (t === a) { t = b - 1; continue; }
      const u = levels[row + t] / levelsMax;
      if (u < fMin) fMin = u;
      if (u > fMax) fMax = u;
      fSum += u; fN++;
    }
    if (!fN) { fMin = 0; fMax = 0; fN = 1; }
    const gap = sSum / (b - a) - fSum / fN;
    const on = sMin - fMax + 1e-3 * gap, off = fMin - sMax - 1e-3 * gap;
    out[2 * k] = Math.max(on, off);
    out[2 * k + 1] = on >= off ? 1 : -1;
  }
  return out;
}

// Where all of `rows` are past the middle of the threshold range their margin found.
function fires(levels, K, N, levelsMax, a, b, flank, rows) {
  const out = new Uint8Array(N).fill(1);
  const lo = Math.max(a - flank, 0), hi = Math.min(b + flank, N);
  for (const k of rows) {
    const row = k * N;
    let sMin = Infinity, sMax = -Infinity, fMin = Infinity, fMax = -Infinity, fN = 0;
    for (let t = a; t < b; t++) {
      const u = levels[row + t] / levelsMax;
      sMin = Math.min(sMin, u); sMax = Math.max(sMax, u);
    }
    for (let t = lo; t < hi; t++) {
      if (t === a) { t = b - 1; continue; }
      const u = levels[row + t] / levelsMax;
      fMin = Math.min(fMin, u); fMax = Math.max(fMax, u); fN++;
    }
    if (!fN) { fMin = 0; fMax = 0; }
    const up = sMin - fMax >= fMin - sMax;
    const cut = up ? (sMin + fMax) / 2 : (fMin + sMax) / 2;
    for (let t = 0; t < N; t++) {
      const u = levels[row + t] / levelsMax;
      if (up ? !(u > cut) : !(u < cut)) out[t] = 0;
    }
  }
  return out;
}

// Once per run: each row's sum of levels and its centered norm, so that a correlation with a
// 0/1 feature needs only the sum over the matched characters:
//   sum_t (x_t - mean)(f_t - p) = S_matched - M * mean,  sum_t (f_t - p)^2 = M (1 - M / N).
function rowStats(levels, K, N) {
  const sum = new Float64Array(K), norm = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    let s = 0, ss = 0;
    const row = k * N;
    for (let t = 0; t < N; t++) { const x = levels[row + t]; s += x; ss += x * x; }
    sum[k] = s;
    norm[k] = Math.sqrt(Math.max(ss - (s * s) / N, 0));
  }
  return { sum, norm };
}

// The characters inside a match of `source` (a JavaScript regular expression), in order.
function regexMatches(text, source) {
  const re = new RegExp(source, "gm");  // ^ and $ at every line, as in a text editor
  const at = [];
  let m, last = -1;
  while ((m = re.exec(text)) !== null) {
    for (let t = Math.max(m.index, last); t < m.index + m[0].length; t++) at.push(t);
    last = Math.max(last, m.index + m[0].length);
    if (m[0].length === 0) re.lastIndex++;  // an empty match must not loop forever
  }
  return at;
}

// Pearson r of every row with the feature that is 1 at `at` (sorted positions) and 0 elsewhere.
function correlations(levels, K, N, stats, at) {
  const M = at.length, r = new Float64Array(K);
  const fNorm = Math.sqrt(M * (1 - M / N));
  if (!(fNorm > 0)) return r;
  // over half the text matched: sum the rest and subtract (levels are integers: exact either way)
  let idx = at, flip = false;
  if (2 * M > N) {
    const matched = new Uint8Array(N);
    for (const t of at) matched[t] = 1;
    idx = [];
    for (let t = 0; t < N; t++) if (!matched[t]) idx.push(t);
    flip = true;
  }
  for (let k = 0; k < K; k++) {
    if (!(stats.norm[k] > 1e-9)) continue;
    const row = k * N;
    let s = 0;
    for (let j = 0; j < idx.length; j++) s += levels[row + idx[j]];
    if (flip) s = stats.sum[k] - s;
    r[k] = (s - (M * stats.sum[k]) / N) / (stats.norm[k] * fNorm);
  }
  return r;
}

// Row indices by descending value, ties in row order.
function topRows(values, top, stride = 1) {
  const K = values.length / stride;
  const idx = Array.from({ length: K }, (_, k) => k);
  idx.sort((i, j) => values[j * stride] - values[i * stride] || i - j);
  return idx.slice(0, top);
}
