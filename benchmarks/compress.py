"""rnnlab as a compressor: bits per character of `rnnlab compress` (static and --dynamic) against
gzip -9, bzip2 -9, xz -9e, zstd -19 and brotli -q 11, all measured in the same run on the same
text, with compression and decompression speed; every rnnlab file is decompressed and compared
byte for byte. Also the model's own figures (`rnnlab eval`, static and dynamic) and the size
cost of coding the text as S segments side by side rather than one stream.

    python benchmarks/compress.py RUN [RUN ...] [--chars N] [--segments 64] [--threads 2]
        [--weights-dtype float32] [--json out.json]

Each RUN is scored on its own validation split (the last 10% of its corpus), truncated to
--chars characters when given. Dynamic-evaluation hyperparameters are chosen on the run's
training split (never the scored text). The coder runs on --threads threads (pinned, and
recorded in the file for the decoder).
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import gzip
import json
import lzma
import platform
import time
from pathlib import Path

import brotli
import numpy as np
import torch
import zstandard

from rnnlab import checkpoint, compression, dynamic, evaluation, training
from rnnlab.data import split

BASELINES = {
    "gzip -9": lambda b: gzip.compress(b, 9, mtime=0),
    "bzip2 -9": lambda b: bz2.compress(b, 9),
    "xz -9e": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
    "zstd -19": lambda b: zstandard.ZstdCompressor(level=19).compress(b),
    "brotli -q 11": lambda b: brotli.compress(b, quality=11),
}
UNPACK = {
    "gzip -9": gzip.decompress,
    "bzip2 -9": bz2.decompress,
    "xz -9e": lzma.decompress,
    "zstd -19": lambda b: zstandard.ZstdDecompressor().decompress(b),
    "brotli -q 11": brotli.decompress,
}


def timed(fn, *args):
    """The result, and (wall seconds, CPU seconds of this process): on a shared machine the
    CPU time is the figure that does not depend on the neighbours."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, (time.perf_counter() - t0, time.process_time() - c0)


def row(name, data, blob_len, n_chars, c_s, d_s, **extra):
    kb = len(data) / 1000
    return {
        "method": name,
        "bytes": blob_len,
        "bpc": 8 * blob_len / n_chars,
        "vs_xz": None,
        "compress_kB_per_s": kb / c_s[0],
        "decompress_kB_per_s": kb / d_s[0],
        "compress_kB_per_cpu_s": kb / max(c_s[1], 1e-9),
        "decompress_kB_per_cpu_s": kb / max(d_s[1], 1e-9),
        **extra,
    }


def bench_run(
    run: Path, chars: int | None, segments: int, tune_chars: int, threads: int, dtype: str
) -> dict:
    model, vocab, config = checkpoint.load_model(run, checkpoint.BEST, "cpu")
    tokens = training.load_tokens(config.corpus, config.corpus.sha256)
    train_ids, val_ids = split(tokens.open(), config.train.val_fraction)
    ids = np.asarray(val_ids[: chars or len(val_ids)]).astype(np.int64)
    text = vocab.decode(ids.tolist())
    data = text.encode("utf-8") if vocab.mode == "char" else bytes(ids.astype(np.uint8))
    n = len(ids)
    rows = []
    for name, fn in BASELINES.items():
        blob, c_s = timed(fn, data)
        back, d_s = timed(UNPACK[name], blob)
        assert back == data
        rows.append(row(name, data, len(blob), n, c_s, d_s))

    def ours(name, seg, settings=None, stats=None, digest=None, **extra):
        blob, c_s = timed(
            lambda: compression.compress(
                data, model, vocab, seg, settings, stats, digest, dtype, threads
            )
        )
        back, d_s = timed(compression.decompress, blob, model, vocab, stats, digest)
        assert back == data, "round trip failed"
        rows.append(row(name, data, len(blob), n, c_s, d_s, segments=seg, **extra))

    static_bpc, static_s = timed(evaluation.bits_per_char, model, ids)
    flat = dynamic.DynamicConfig("sgd", 0.0, 0.0, 50)  # lr 0: static, same streams
    static_seg = dynamic.dynamic_bits_per_char(model, ids, flat, None, segments).bpc
    ours(f"rnnlab static, {segments} segments", segments, eval_bpc=static_seg)

    with compression.pinned_threads(1):  # as `rnnlab compress` computes them
        stats = dynamic.gradient_stats(model, train_ids, 50)
    digest = dynamic.stats_digest(stats)
    piece = np.asarray(train_ids[-(20_000 + tune_chars) : -20_000]).astype(np.int64)
    t0 = time.perf_counter()
    settings, trials = dynamic.tune(
        model,
        piece,
        stats,
        "rms",
        learning_rates=(1e-4, 3e-4, 1e-3, 3e-3),
        decays=(0.0, 1e-2),
        streams=segments,
    )
    tune_s = time.perf_counter() - t0
    dyn_seg = dynamic.dynamic_bits_per_char(model, ids, settings, stats, segments)
    ours(
        f"rnnlab dynamic, {segments} segments",
        segments,
        settings,
        stats,
        digest,
        eval_bpc=dyn_seg.bpc,
    )
    # the paper's setting: one stream (exact), same rule; and plain SGD as the baseline
    sgd, sgd_trials = dynamic.tune(
        model,
        piece,
        None,
        "sgd",
        learning_rates=(0.01, 0.03, 0.1),
        decays=(0.0,),
        streams=segments,
    )
    dyn_one = dynamic.dynamic_bits_per_char(model, ids, settings, stats, 1)
    sgd_seg = dynamic.dynamic_bits_per_char(model, ids, sgd, None, segments)
    # the ladder's conditional rung: what xz needs for the text once it has read the training
    # split (xz(train + text) - xz(train)); not a file anyone can decode alone, a reference
    train_text = vocab.decode(np.asarray(train_ids).astype(np.int64).tolist())
    train_bytes = train_text.encode() if vocab.mode == "char" else bytes(np.asarray(train_ids))
    xz9 = BASELINES["xz -9e"]
    given = len(xz9(train_bytes + data)) - len(xz9(train_bytes))
    xz = next(r for r in rows if r["method"] == "xz -9e")["bytes"]
    for r in rows:
        r["vs_xz"] = r["bytes"] / xz - 1
    return {
        "run": str(run),
        "model": json.loads((run / checkpoint.CONFIG).read_text())["model"],
        "text": f"validation split of {config.corpus.source}" + (f", first {n:,}" if chars else ""),
        "coder": {"threads": threads, "weights_dtype": dtype, "segments": segments},
        "num_chars": n,
        "num_bytes": len(data),
        "rows": rows,
        "eval": {
            "static_bpc_one_stream": static_bpc,
            "static_seconds": static_s[0],
            f"static_bpc_{segments}_segments": static_seg,
            "dynamic_rms_bpc_one_stream": dyn_one.bpc,
            "dynamic_rms_seconds_one_stream": dyn_one.seconds,
            f"dynamic_rms_bpc_{segments}_segments": dyn_seg.bpc,
            f"dynamic_sgd_bpc_{segments}_segments": sgd_seg.bpc,
            "xz_9e_given_the_training_split_bpc": 8 * given / n,
        },
        "dynamic_settings": {"rms": dataclasses.asdict(settings), "sgd": dataclasses.asdict(sgd)},
        "tuning": {
            "chars": len(piece),
            "seconds": tune_s,
            "grid_rms": "lr (1e-4, 3e-4, 1e-3, 3e-3) x decay (0, 1e-2)",
            "grid_sgd": "lr (0.03, 0.1, 0.3, 1) x decay (0,)",
            "rms": trials,
            "sgd": sgd_trials,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--chars", type=int, default=None, help="score only the first N characters")
    p.add_argument("--segments", type=int, default=compression.DEFAULT_SEGMENTS)
    p.add_argument("--tune-chars", type=int, default=32_000, help="training chars for tuning")
    p.add_argument("--threads", type=int, default=compression.THREADS)
    p.add_argument(
        "--weights-dtype",
        default=compression.DEFAULT_WEIGHTS_DTYPE,
        choices=tuple(compression.WEIGHTS_DTYPES),
    )
    p.add_argument("--json", default="benchmarks/results/compress.json")
    a = p.parse_args()
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"coder pinned to {a.threads} threads, recurrent weights {a.weights_dtype}",
        "texts": [
            bench_run(r, a.chars, a.segments, a.tune_chars, a.threads, a.weights_dtype)
            for r in a.runs
        ],
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    for t in results["texts"]:
        print(
            f"\n{t['text']}: {t['num_chars']:,} characters, {t['num_bytes']:,} bytes ({t['run']})"
        )
        print(
            f"{'method':32s} {'bytes':>9s} {'bpc':>7s} {'vs xz':>7s} {'comp kB/s':>10s} "
            f"{'dec kB/s':>9s} {'eval bpc':>9s}"
        )
        for r in t["rows"]:
            ev = f"{r['eval_bpc']:9.4f}" if "eval_bpc" in r else ""
            print(
                f"{r['method']:32s} {r['bytes']:9,d} {r['bpc']:7.4f} {r['vs_xz']:+7.1%} "
                f"{r['compress_kB_per_s']:10.1f} {r['decompress_kB_per_s']:9.1f} "
                f"{r['compress_kB_per_cpu_s']:10.1f} {r['decompress_kB_per_cpu_s']:9.1f} {ev}"
            )
        for k, v in t["eval"].items():
            print(f"  eval {k}: {v:.4f}")
        print(f"  dynamic settings (tuned on the training split): {t['dynamic_settings']}")
    print(f"\n{a.json}")


if __name__ == "__main__":
    main()
