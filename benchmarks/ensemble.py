"""What averaging trained models buys (issue 21, the plan's MEMBER_EPOCHS): each run's best
weights on the validation split of the first run, alone and averaged with every combination of
the others, p(x) = mean_k p_k(x), as `model.Ensemble` predicts.

    python benchmarks/ensemble.py RUN RUN [RUN ...] [--json benchmarks/results/ensemble.json]

The runs must share a vocabulary and a corpus (their validation split is the first run's). A run
that is itself an ensemble counts as one model (its own average). Each text is read as `rnnlab
eval` reads it by default (64 segments side by side, each warmed up on the 512 characters
before it: within 0.002 nats/char of one exact pass). Writes the JSON and prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scaling import cpu_name  # a script's own folder, benchmarks/, is on its path

from rnnlab import checkpoint, tokens
from rnnlab.bpc import iter_char_nats_batched


def target_probabilities(run: Path, ids: np.ndarray) -> np.ndarray:
    """(N-1,) each run's probability of every next character of ``ids``."""
    model, _, _ = checkpoint.load_model(run, ensemble=True)
    nats = np.concatenate(list(iter_char_nats_batched(model, ids)))
    return np.exp(-nats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--json", default="benchmarks/results/ensemble.json")
    a = p.parse_args()
    first = checkpoint.load_config(a.runs[0])
    vocab = checkpoint.load_vocab(a.runs[0])
    for run in a.runs[1:]:
        if checkpoint.load_vocab(run).symbols != vocab.symbols:
            sys.exit(f"{run} has another vocabulary than {a.runs[0]}")
    _, val = tokens.corpus_splits(first.corpus, first.train.val_fraction, "")
    ids = np.asarray(val)
    t0 = time.perf_counter()
    probs = {run.name: target_probabilities(run, ids) for run in a.runs}
    rows = []
    names = list(probs)
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            average = np.mean([probs[n] for n in combo], axis=0)
            rows.append({"runs": list(combo), "nats_per_char": float(-np.log(average).mean())})
    result = {
        "machine": cpu_name(),
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "validation_chars": len(ids) - 1,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    path = Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"{'models':>6}  {'nats/char':>9}  runs")
    for row in rows:
        print(f"{len(row['runs']):>6}  {row['nats_per_char']:9.4f}  {' + '.join(row['runs'])}")


if __name__ == "__main__":
    main()
