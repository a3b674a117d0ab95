"""Short texts: what `rnnlab compress` spends and how long it takes, cut into the segments it
chooses when not told (one per 1,024 characters begun, at most 128: rzmodel.auto_segments)
against
the fixed 128 of the versions before, both in the same run.

Each segment starts cold (the network from a zero state, the context tables without context),
so a short text cut into 128 pieces of a few dozen characters pays that start 128 times. For
each length, the first N characters of the text (default: the run's validation split) are
compressed both ways, in process, as the CLI's default does (adaptive, mixed with the run's
context tables when it has them, the CPU's fastest weights dtype), decompressed and compared
byte for byte; the seconds are the best of ``--trials`` round trips (the model and tables are
loaded once, not counted).

    python benchmarks/small_files.py RUN [--text FILE] [--lengths 1000,5000,...]
        [--json benchmarks/results/small_files.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from rnnlab import adaptive, checkpoint, compression, ctxrun, tokens
from rnnlab.data import split
from rnnlab.model import count_parameters

LENGTHS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 150_000)
BEFORE = 128  # every version before auto_segments cut every text into 128 segments


def round_trip(data: bytes, model, vocab, segments: int | None, tables, dtype: str, trials: int):
    """(compressed size, best compress seconds, best decompress seconds, segments used)."""
    best_c = best_d = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        blob = compression.compress(
            data, model, vocab, segments, weights_dtype=dtype, adapt=adaptive.AdaptConfig(),
            tables=tables,
        )  # fmt: skip
        t1 = time.perf_counter()
        back = compression.decompress(blob, model, vocab, tables=tables)
        t2 = time.perf_counter()
        assert back == data, "round trip failed"
        best_c, best_d = min(best_c, t1 - t0), min(best_d, t2 - t1)
    header, _ = compression.read_header(blob)
    return len(blob), best_c, best_d, header.segments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--text", type=Path, help="default: the run's validation split")
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="characters, commas")
    p.add_argument("--trials", type=int, default=2, help="round trips per setting")
    p.add_argument("--json", default="benchmarks/results/small_files.json")
    a = p.parse_args()
    model, vocab, config = checkpoint.load_model(a.run, checkpoint.BEST, "cpu")
    if a.text is None:
        corpus = tokens.load_tokens(config.corpus, config.corpus.sha256)
        ids = np.asarray(split(corpus.open(), config.train.val_fraction)[1])
        text, source = vocab.decode(ids.tolist()), f"validation split of {config.corpus.source}"
    else:
        text, source = a.text.read_text(encoding="utf-8"), str(a.text)
    tables = ctxrun.run_tables(a.run, len(vocab), count_parameters(model))
    dtype = compression.resolve_weights_dtype("auto")
    rows = []
    print(
        f"{'chars':>8s} {'segments':>9s} {'bpc':>7s} {'segments':>9s} {'bpc':>7s} {'size':>7s} "
        f"{'comp s':>7s} {'comp s':>7s} {'dec s':>6s} {'dec s':>6s}"
    )
    print(f"{'':8s} {'before':>9s} {'':7s} {'auto':>9s} {'':7s} {'ratio':>7s}", flush=True)
    for n in (int(x) for x in a.lengths.split(",")):
        if n > len(text):
            break  # the text is shorter than the rest of the lengths asked for
        data = text[:n].encode("utf-8")
        old = round_trip(data, model, vocab, BEFORE, tables, dtype, a.trials)
        new = round_trip(data, model, vocab, None, tables, dtype, a.trials)
        row = {"chars": n, "bytes": len(data)}
        for name, (size, c_s, d_s, segs) in (("before", old), ("auto", new)):
            row[name] = {
                "segments": segs, "compressed_bytes": size, "bpc": 8 * size / n,
                "compress_s": c_s, "decompress_s": d_s,
            }  # fmt: skip
        row["size_ratio"] = new[0] / old[0]
        rows.append(row)
        print(
            f"{n:8,d} {old[3]:9d} {8 * old[0] / n:7.4f} {new[3]:9d} {8 * new[0] / n:7.4f} "
            f"{row['size_ratio']:7.3f} {old[1]:7.2f} {new[1]:7.2f} {old[2]:6.2f} {new[2]:6.2f}",
            flush=True,
        )
    result = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "run": str(a.run),
        "text": source,
        "mixed": tables is not None,
        "weights_dtype": dtype,
        "rows": rows,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{a.json}")


if __name__ == "__main__":
    main()
