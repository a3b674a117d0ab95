"""The context mixer taken apart (issue 22): bits per character of a run's validation split
read as `rnnlab compress` reads it (its segments side by side: one per 1,024 characters begun,
at most 128), by

    network, static             the trained model's own probabilities
    network, adaptive           + the adaptive head and match models (`--no-mix`)
    context tables alone        the tables and the mixer, fed a network that knows nothing
    mixed, no APM               adaptive network + tables, the APM stage off
    mixed, no warm-up           the mixer starting from zero, not from the end of the training text
    mixed, counts not discounted    the counts stationary (halved only at 255): discount 0
    mixed, no local tables      without the tables of the text being read
    mixed, one mixer            one weight set per decision, no second layer
    mixed, two mixers           without the mixers by column and by word length
    mixed, no line contexts     without the tables of the line's prefix and the line above
    mixed, no check bytes       rows shared by whatever contexts hash to them
    mixed, no match model       without the match model of the training text
    mixed, one view of the network  the adapted distribution alone (as both of the network's
                                inputs), not beside the network as trained
    mixed                       the default

    python benchmarks/mixing.py RUN [--chars N] [--json benchmarks/results/mixing.json]

The run needs its context tables (`rnnlab contexts RUN`) and its corpus on this machine. Writes
the JSON and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from rnnlab import adaptive, checkpoint, contextmix, ctxrun, rzmodel, tokens
from rnnlab.ctxtables import side_by_side
from rnnlab.data import split
from rnnlab.model import count_parameters


def tables_alone(tables: contextmix.ContextTables, ids: np.ndarray, segments: int) -> float:
    """Bits per character of the mixer fed a uniform network, in the coder's layout (each
    segment's first character at the mixer's first-symbol frequencies, as the coder codes it)."""
    n, V = len(ids), tables.counts.shape[2]
    S = min(segments, n)
    mixer, bits = contextmix.Mixer(tables.copy(), S), 0.0
    uniform = np.full((S, V), 1.0 / V)
    for t, active, column in side_by_side(ids, S):
        if t:
            p = mixer.predict(uniform)
            bits -= float(np.log2(p[np.arange(active), column[:active]]).sum())
        else:
            bits -= float(np.log2(mixer.first[column[:active]]).sum())
        mixer.observe(column, active)
    return bits / n


def one_view(model, ids: np.ndarray, adapt: adaptive.AdaptConfig, tables, segments: int) -> float:
    """The mixed reading with the network's adapted distribution as both of its inputs."""
    predict = contextmix.Mixer.predict
    contextmix.Mixer.predict = lambda self, p, trained=None: predict(self, p)  # type: ignore
    try:
        return adaptive.adaptive_bits_per_char(model, ids, adapt, segments, tables=tables).bpc
    finally:
        contextmix.Mixer.predict = predict  # type: ignore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--chars", type=int, default=None, help="score only the first N characters")
    p.add_argument("--json", default="benchmarks/results/mixing.json")
    a = p.parse_args()
    model, vocab, config = checkpoint.load_model(a.run, checkpoint.BEST, "cpu")
    corpus = tokens.load_tokens(config.corpus, config.corpus.sha256)
    train_ids, val_ids = split(corpus.open(), config.train.val_fraction)
    ids = np.asarray(val_ids[: a.chars]).astype(np.int64)
    tables = ctxrun.run_tables(a.run, len(vocab), count_parameters(model))
    if tables is None:
        raise SystemExit(f"{a.run} has no context tables: run `rnnlab contexts {a.run}` first")
    no_apm = contextmix.ContextTables(
        dataclasses.replace(tables.config, apm_rate=0.0), tables.counts, tables.word,
        tables.classes, tables.learned, tables.checks, tables.text,
    )  # fmt: skip
    t0 = time.perf_counter()
    cold = contextmix.ContextTables.build(np.asarray(train_ids), vocab.symbols, tables.config)
    cold_s = time.perf_counter() - t0
    adapt = adaptive.AdaptConfig()
    rows = {}

    def reading(name: str, fn) -> None:
        t0 = time.perf_counter()
        rows[name] = {"bpc": fn(), "seconds": time.perf_counter() - t0}
        print(f"{name:32s} {rows[name]['bpc']:.4f} bpc  {rows[name]['seconds']:6.1f} s", flush=True)

    segments = rzmodel.auto_segments(len(ids))  # as the compressor cuts this text
    plain = adaptive.adaptive_bits_per_char(model, ids, adapt, segments)
    rows["network, static"] = {"bpc": plain.static_bpc, "seconds": None}
    print(f"{'network, static':32s} {plain.static_bpc:.4f} bpc")
    rows["network, adaptive"] = {"bpc": plain.bpc, "seconds": plain.seconds}
    print(f"{'network, adaptive':32s} {plain.bpc:.4f} bpc  {plain.seconds:6.1f} s")
    reading("context tables alone", lambda: tables_alone(tables, ids, segments))

    def variant(**change) -> contextmix.ContextTables:
        config = dataclasses.replace(tables.config, **change)
        return contextmix.build_tables(np.asarray(train_ids), vocab.symbols, config)

    readings = [("mixed, no APM", no_apm), ("mixed, no warm-up", cold)]
    readings += [
        ("mixed, counts not discounted", variant(discount=0)),
        ("mixed, no local tables", variant(local_bits=0)),
        ("mixed, one mixer", variant(mixers=1)),
        ("mixed, two mixers", variant(mixers=2)),
        ("mixed, no line contexts", variant(lines=0)),
        ("mixed, no check bytes", variant(checks=0)),
        ("mixed, no match model", variant(match=0)),
        ("mixed", tables),
    ]
    for name, t in readings:
        reading(name, lambda t=t: adaptive.adaptive_bits_per_char(
            model, ids, adapt, segments, tables=t).bpc)  # fmt: skip
        if name == "mixed, no match model":
            reading(
                "mixed, one view of the network",
                lambda: one_view(model, ids, adapt, tables, segments),
            )
    result = {
        "run": str(a.run),
        "text": f"validation split of {config.corpus.source}, {len(ids):,} characters",
        "segments": segments,
        "tables": dataclasses.asdict(tables.config),
        "tables_bytes": (a.run / contextmix.CONTEXTS_FILE).stat().st_size,
        "reading_bytes": tables.reading_bytes,
        "weights_bytes": (a.run / checkpoint.BEST).stat().st_size,
        "count_seconds_without_warmup": cold_s,
        "rows": rows,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{a.json}")


if __name__ == "__main__":
    main()
