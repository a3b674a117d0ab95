"""The self-contained HTML page of an Analysis (one file, inline CSS/JS/SVG, no network), and its
JSON report. The page's CSS, JS and template are package data in viz/assets.
Imports checkpoint from rnnlab (for the atomic write).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .compare import prediction_gap
from .features import FEATURES, SATURATION_HIGH, SATURATION_LOW
from .record import LABELS, Analysis
from .search import FIRE_CELLS, FLANK

LEVELS = 15  # 4-bit values 0..14: a diverging scale with an exact middle (0 of a tanh)
MAX_SHOWN = 20_000  # characters on a page: each one holds L x Q x H activations
LAYER_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def value_range(cell: str, quantity: str, values: np.ndarray) -> tuple[float, float]:
    """The bounds the page's color scale spans for one quantity."""
    if quantity in ("i", "f", "o", "r", "z"):
        return 0.0, 1.0  # sigmoid
    if cell in ("rnn-relu", "mingru", "minlstm"):  # h >= 0, unbounded above: up to the largest
        return 0.0, max(float(values.max()), 1e-6)
    return -1.0, 1.0  # tanh


def quantize(analysis: Analysis) -> tuple[np.ndarray, list[dict]]:
    """Every activation as one of LEVELS levels of its quantity's range.

    Returns:
        levels: (L, Q, H, N) uint8 in 0..LEVELS-1; value = lo + level / (LEVELS - 1) * (hi - lo).
        quantities: the quantities' descriptions (key, label, lo, hi).
    """
    v = analysis.values  # (L, Q, N, H)
    L, Q, N, H = v.shape
    levels = np.empty((L, Q, H, N), np.uint8)
    quantities = []
    for qi, key in enumerate(analysis.quantities):
        lo, hi = value_range(analysis.cell, key, v[:, qi])
        scaled = (v[:, qi].transpose(0, 2, 1) - lo) / (hi - lo) * (LEVELS - 1)  # (L, H, N)
        levels[:, qi] = np.clip(np.rint(scaled), 0, LEVELS - 1)
        quantities.append({"key": key, "label": LABELS[key], "lo": lo, "hi": hi})
    return levels, quantities


def pack_activations(analysis: Analysis) -> tuple[str, list[dict]]:
    """Quantize (``quantize``), two levels per byte, deflate, base64.

    Layout: [layer][quantity][cell] rows of ceil(N / 2) bytes, character t in byte t // 2,
    high nibble first. Returns the base64 text and the quantities' descriptions (key, label,
    lo, hi) that dequantize it: value = lo + level / (LEVELS - 1) * (hi - lo).
    """
    levels, quantities = quantize(analysis)
    if levels.shape[-1] % 2:
        levels = np.concatenate([levels, np.zeros((*levels.shape[:-1], 1), np.uint8)], -1)
    packed = (levels[..., 0::2] << 4) | levels[..., 1::2]  # (L, Q, H, ceil(N/2))
    # raw deflate (DecompressionStream); level 4: measured 20x faster than 9 on a 2x512 LSTM's
    # 1,500 characters (0.6 s against 12 s), for 5% more bytes
    deflate = zlib.compressobj(4, zlib.DEFLATED, -15)
    raw = deflate.compress(packed.tobytes()) + deflate.flush()
    return base64.b64encode(raw).decode("ascii"), quantities


def saturation_svg(analysis: Analysis, size: int = 250) -> str:
    """One scatter per sigmoid gate: x = fraction of steps < 0.1, y = fraction > 0.9, one circle
    per cell, colored by layer (Karpathy, Johnson & Fei-Fei 2015, Figure 3)."""
    sat = analysis.saturation
    if not sat.gates:
        return "<p>This cell type has no gates.</p>"
    left, right = sat.fractions()  # (L, G, H)
    pad, inner = 34, size - 44
    panels = []
    for gi, gate in enumerate(sat.gates):
        parts = [
            f'<svg class="saturation-plot" data-gate="{gate}" '
            f'width="{size}" height="{size}" viewBox="0 0 {size} {size}" role="img" '
            f'aria-label="saturation of the {html.escape(LABELS[gate])}">',
            f'<text x="{size / 2}" y="12" text-anchor="middle" font-size="12">'
            f"{html.escape(LABELS[gate])}</text>",
            f'<rect x="{pad}" y="18" width="{inner}" height="{inner}" fill="none" stroke="#999"/>',
            f'<line x1="{pad}" y1="18" x2="{pad + inner}" y2="{18 + inner}" stroke="#bbb" '
            'stroke-dasharray="3,3"/>',
            f'<text x="{pad + inner / 2}" y="{size - 4}" text-anchor="middle" font-size="10">'
            f"fraction &lt; {SATURATION_LOW} (left-saturated)</text>",
            f'<text x="10" y="{18 + inner / 2}" text-anchor="middle" font-size="10" '
            f'transform="rotate(-90 10 {18 + inner / 2})">fraction &gt; {SATURATION_HIGH}</text>',
            f'<text x="{pad - 3}" y="{18 + inner}" text-anchor="end" font-size="9">0</text>',
            f'<text x="{pad - 3}" y="26" text-anchor="end" font-size="9">1</text>',
            f'<text x="{pad + inner}" y="{28 + inner}" text-anchor="end" font-size="9">1</text>',
        ]
        for layer in range(analysis.num_layers):
            color = LAYER_COLORS[layer % len(LAYER_COLORS)]
            parts.append(f'<g fill="{color}" fill-opacity="0.45">')
            for cell in range(analysis.hidden_size):
                x, y = left[layer, gi, cell], right[layer, gi, cell]
                parts.append(
                    f'<circle cx="{pad + x * inner:.1f}" cy="{18 + (1 - y) * inner:.1f}" r="2.5" '
                    f'data-id="L{layer}-{gate}-{cell}" data-layer="{layer}" data-quantity="{gate}" '
                    f'data-cell="{cell}"><title>L{layer} {gate}[{cell}]: {x:.2f} left, '
                    f"{y:.2f} right</title></circle>"
                )
            parts.append("</g>")
        for layer in range(analysis.num_layers):  # legend
            color = LAYER_COLORS[layer % len(LAYER_COLORS)]
            parts.append(
                f'<circle cx="{pad + inner - 40}" cy="{30 + 12 * layer}" r="3" fill="{color}"/>'
                f'<text x="{pad + inner - 34}" y="{33 + 12 * layer}" font-size="10">'
                f"layer {layer}</text>"
            )
        panels.append("".join(parts) + "</svg>")
    return "\n".join(panels)


def report(analysis: Analysis, per_feature: int = 5) -> dict:
    """The feature correlations and saturation statistics, as plain JSON-ready data."""
    strongest = analysis.strongest(per_feature)
    left, right = analysis.saturation.fractions()
    return {
        "cell": analysis.cell,
        "num_layers": analysis.num_layers,
        "hidden_size": analysis.hidden_size,
        "num_shown": len(analysis.symbols),
        "num_analyzed": analysis.num_analyzed,
        "features": {
            name: {
                "description": description,
                "constant": bool(analysis.constant[fi]),
                "cells": strongest[name],
            }
            for fi, (name, description) in enumerate(FEATURES.items())
        },
        "saturation": {
            "low": SATURATION_LOW,
            "high": SATURATION_HIGH,
            "steps": analysis.saturation.steps,
            "layers": [
                {
                    gate: {
                        "mean_left": float(left[layer, gi].mean()),
                        "mean_right": float(right[layer, gi].mean()),
                        "left": [round(float(x), 5) for x in left[layer, gi]],
                        "right": [round(float(x), 5) for x in right[layer, gi]],
                    }
                    for gi, gate in enumerate(analysis.saturation.gates)
                }
                for layer in range(analysis.num_layers)
            ],
        },
    }


@dataclass(frozen=True)
class PageRun:
    """One run on the page: what it did on the text, its name, and its vocabulary as display
    characters (index == id), for its predictions."""

    analysis: Analysis
    title: str
    symbols: list[str]


def run_data(run: PageRun) -> dict:
    """The page's data block for one run: its activations, predictions and strongest cells."""
    analysis = run.analysis
    activations, quantities = pack_activations(analysis)
    strongest = analysis.strongest(5)
    # open on the strongest cell state or hidden unit: what the essay's pictures show
    firsts = [c[0] for c in analysis.strongest(1, ("c", "h")).values() if c]
    best = max(
        firsts,
        key=lambda c: abs(c["r"]),
        default={"layer": analysis.num_layers - 1, "quantity": analysis.quantities[0], "cell": 0},
    )
    return {
        "name": run.title,
        "cell": analysis.cell,
        "layers": analysis.num_layers,
        "hidden": analysis.hidden_size,
        "quantities": quantities,
        "activations": activations,
        "symbols": run.symbols,
        "top_k": int(analysis.top_ids.shape[1]),
        "top_ids": analysis.top_ids.reshape(-1).tolist(),
        "top_probs": [_round(p) for p in analysis.top_probs.reshape(-1)],
        "own_probs": [None if math.isnan(p) else _round(p) for p in analysis.own_probs],
        "features": [
            {"name": name, "description": desc, "cells": strongest[name]}
            for name, desc in FEATURES.items()
        ],
        "initial": {
            "layer": best["layer"],
            "quantity": analysis.quantities.index(best["quantity"]),
            "cell": best["cell"],
        },
    }


def render_page(
    analysis: Analysis,
    title: str,
    source: str,
    symbols: list[str],
    second: PageRun | None = None,
) -> str:
    """The page as one HTML string.

    Args:
        analysis: from ``record.analyze``.
        title: the run's name; source: where the text came from (shown in the note).
        symbols: the vocabulary as display characters (index == id), for the predictions.
        second: another run on the same text, shown beside the first with the characters
            where the two runs' predictions differ most (``compare.prediction_gap``).
    """
    N = len(analysis.symbols)
    runs = [PageRun(analysis, title, symbols)] + ([second] if second else [])
    data = {
        "text": "".join(analysis.symbols),
        "levels_max": LEVELS - 1,
        "flank": FLANK,
        "fire_cells": FIRE_CELLS,
        "runs": [run_data(r) for r in runs],
        "gap": None,
    }
    models = f"{analysis.num_layers} x {analysis.hidden_size} {analysis.cell}"
    if second is not None:
        gap = prediction_gap(analysis, symbols, second.analysis, second.symbols)
        data["gap"] = [_round(g) for g in gap]
        b = second.analysis
        models += f" ({title}) and {b.num_layers} x {b.hidden_size} {b.cell} ({second.title})"
    note = (
        f"The first {N:,} characters of {source}; the correlations and saturation statistics "
        f"cover the first {analysis.num_analyzed:,}. "
        f"A page holds at most {MAX_SHOWN:,} characters (rnnlab viz --chars N); "
        f"activations are stored in {LEVELS} levels. Model: {models}."
    )
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    payload = payload.replace("<", "\\u003c")  # a "</script>" in the text must not end the block
    assets = resources.files(__package__) / "assets"
    page = (assets / "page.html").read_text(encoding="utf-8")
    js = [(assets / f).read_text(encoding="utf-8") for f in ("search.js", "panels.js", "page.js")]
    titles = " and ".join(r.title for r in runs)
    fills = {
        "__CSS__": (assets / "page.css").read_text(encoding="utf-8"),
        "__JS__": "\n".join(js),
        "__TITLE__": html.escape(titles),
        "__NOTE__": html.escape(note),
        "__SATURATION__": saturation_svg(analysis),
        "__FLANK__": str(FLANK),
        "__FIRE__": str(FIRE_CELLS),
        "__DATA__": payload,
    }
    # one pass over the template, so nothing inserted (a title, the text) is ever substituted
    return re.sub("|".join(fills), lambda m: fills[m.group(0)], page)


def write_page(analysis: Analysis, out: Path, title: str, source: str, symbols: list[str]) -> Path:
    """Write ``render_page`` to ``out`` atomically; returns ``out``."""
    out = Path(out)
    atomic_write(out, render_page(analysis, title, source, symbols).encode("utf-8"))
    return out


def _round(p: float) -> float:
    """4 significant digits: what the page shows (3 decimals) with room to spare."""
    return float(f"{float(p):.4g}")
