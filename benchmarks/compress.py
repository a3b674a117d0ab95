"""rnnlab as a compressor: bits per character of `rnnlab compress` (adaptive, the default;
--static; --dynamic) against
gzip -9, bzip2 -9, xz -9e, zstd -19 and brotli -q 11, and the context-mixing rivals zpaq -m5,
paq8px -8 and lstm-compress when they are on PATH, all measured in the same run on the same
text, with compression and decompression speed; every file is decompressed and compared byte
for byte. The rivals are benchmarks only, never dependencies: `apt-get install zpaq`; paq8px
from https://github.com/hxim/paq8px (`cd build && bash build-linux-with-gcc.sh`, then put
build/paq8px on PATH); lstm-compress from https://github.com/byronknoll/lstm-compress
(`make CC=g++`). Coders with fixed parameters (xz, paq8px, lstm-compress) are also scored
"given train": size(train + text) - size(train), the cost of the text for a coder that has read
the training split first, as the model has (zpaq picks its model by the input's size, so a
difference of two of its archives is not a cost). Also the model's own figures (`rnnlab eval`:
static, --adapt, mixed, --dynamic) for the very setting of each file, and the size cost of
coding the text as S segments side by side rather than one stream.

    python benchmarks/compress.py RUN [RUN ...] [--chars N] [--offset K] [--segments 128]
        [--threads N] [--weights-dtype float32] [--no-dynamic] [--json out.json]

Each RUN is scored on its own validation split (the last 10% of its corpus), truncated to
--chars characters when given. Dynamic-evaluation hyperparameters are chosen on the run's
training split (never the scored text); the adaptation's defaults are fixed, and a grid of them
on the training split is reported beside them. The coder runs on --threads threads (pinned, and
recorded in the file for the decoder); by default on `rnnlab compress`'s: one when mixed (the
mixer learns on a thread of its own), else two.
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import gzip
import json
import lzma
import math
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import brotli
import numpy as np
import torch
import zstandard

from rnnlab import (
    adaptive,
    checkpoint,
    compression,
    contextmix,
    ctxrun,
    dynamic,
    evaluation,
    tokens,
)
from rnnlab.data import split
from rnnlab.model import count_parameters

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


# rival coders run as programs: (compress argv, decompress argv) with {src} and {dst}
RIVALS = {
    "zpaq -m5": ("zpaq", "{src}", "{dst}"),
    "paq8px -8": ("paq8px", "{src}", "{dst}"),
    "lstm-compress": ("lstm-compress", "{src}", "{dst}"),
}
FIXED_PARAMETERS = ("paq8px -8", "lstm-compress")  # their "given train" difference is a cost


def rival_size(name: str, data: bytes, check: bool = True) -> tuple[int, float, float]:
    """(compressed bytes, compress seconds, decompress seconds) of ``data`` with a rival
    program, decompressed and compared byte for byte when ``check``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, packed, back = Path(tmp) / "text", Path(tmp) / "packed", Path(tmp) / "back"
        src.write_bytes(data)
        if name.startswith("zpaq"):
            make = ["zpaq", "a", str(packed) + ".zpaq", "text", "-m5"]
            undo = ["zpaq", "x", str(packed) + ".zpaq", "text", "-to", str(back)]
            out, restored = Path(str(packed) + ".zpaq"), back
        elif name.startswith("paq8px"):
            make = ["paq8px", "-8", "text", str(packed)]
            undo = ["paq8px", "-d", str(packed), str(back)]
            out, restored = packed, back
        else:
            make = ["lstm-compress", "-c", "text", str(packed)]
            undo = ["lstm-compress", "-d", str(packed), str(back)]
            out, restored = packed, back
        t0 = time.perf_counter()
        subprocess.run(make, cwd=tmp, check=True, capture_output=True)
        c_s = time.perf_counter() - t0
        size = out.stat().st_size
        d_s = float("nan")
        if check:
            t0 = time.perf_counter()
            subprocess.run(undo, cwd=tmp, check=True, capture_output=True)
            d_s = time.perf_counter() - t0
            if restored.is_dir():
                restored = restored / "text"
            assert restored.read_bytes() == data, f"{name}: round trip failed"
        return size, c_s, d_s


def rival_rows(data: bytes, train_bytes: bytes, n: int) -> tuple[list[dict], dict]:
    """Rows of the rivals found on PATH, and their 'given train' bits per character."""
    rows, given = [], {}
    for name, (program, *_) in RIVALS.items():
        if shutil.which(program) is None:
            print(f"  ({name}: not on PATH, left out)", flush=True)
            continue
        print(f"  {name} ...", flush=True)
        size, c_s, d_s = rival_size(name, data)
        rows.append(row(name, data, size, n, (c_s, c_s), (d_s, d_s)))
        if name in FIXED_PARAMETERS:
            both = rival_size(name, train_bytes + data, check=False)[0]
            alone = rival_size(name, train_bytes, check=False)[0]
            given[f"{name} given the training split, bpc"] = 8 * (both - alone) / n
    return rows, given


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


def xz_given(train_bytes: bytes, data: bytes, n: int) -> dict:
    """The ladder's conditional rung: what xz needs for the text once it has read the training
    split (xz(train + text) - xz(train)); not a file anyone can decode alone, a reference."""
    xz9 = BASELINES["xz -9e"]
    given = len(xz9(train_bytes + data)) - len(xz9(train_bytes))
    return {"xz_9e_given_the_training_split_bpc": 8 * given / n}


def finish(run, config, rows, n, data, offset, chars, threads, dtype, segments, evals, **more):
    """The text's result: its rows (each against xz), the model's own figures, and ``more``."""
    xz = next(r for r in rows if r["method"] == "xz -9e")["bytes"]
    for r in rows:
        r["vs_xz"] = r["bytes"] / xz - 1
    return {
        "run": str(run),
        "model": json.loads((run / checkpoint.CONFIG).read_text())["model"],
        "text": f"validation split of {config.corpus.source}"
        + (f", characters {offset:,} to {offset + n:,}" if chars or offset else ""),
        "coder": {"threads": threads, "weights_dtype": dtype, "segments": segments},
        "num_chars": n,
        "num_bytes": len(data),
        "rows": rows,
        "eval": evals,
        **more,
    }


def bench_run(
    run: Path,
    chars: int | None,
    segments: int | None,
    tune_chars: int,
    threads: int | None,
    dtype: str,
    offset: int = 0,
    trials: int = 3,
    with_dynamic: bool = True,
    with_rivals: bool = True,
) -> dict:
    model, vocab, config = checkpoint.load_model(run, checkpoint.BEST, "cpu")
    corpus = tokens.load_tokens(config.corpus, config.corpus.sha256)
    train_ids, val_ids = split(corpus.open(), config.train.val_fraction)
    ids = np.asarray(val_ids[offset : offset + (chars or len(val_ids))]).astype(np.int64)
    text = vocab.decode(ids.tolist())
    data = text.encode("utf-8") if vocab.mode == "char" else bytes(ids.astype(np.uint8))
    n = len(ids)
    segments = compression.auto_segments(n) if segments is None else segments
    rows = []
    for name, fn in BASELINES.items():
        blob, c_s = timed(fn, data)
        back, d_s = timed(UNPACK[name], blob)
        assert back == data
        rows.append(row(name, data, len(blob), n, c_s, d_s))

    def ours(
        name, seg, settings=None, stats=None, digest=None, trials=1, adapt=None, tables=None,
        **extra,
    ):  # fmt: skip
        """Round trip(s); the speeds are the best of ``trials`` (the machine's speed drifts)."""
        times = []
        for _ in range(trials):
            blob, c_s = timed(
                lambda: compression.compress(
                    data,
                    model,
                    vocab,
                    seg,
                    settings,
                    stats,
                    digest,
                    dtype,
                    threads,
                    adapt,
                    tables=tables,
                )  # fmt: skip
            )
            back, d_s = timed(
                lambda b=blob: compression.decompress(b, model, vocab, stats, digest, tables=tables)
            )
            assert back == data, "round trip failed"
            times.append((c_s, d_s))
        c_s = min((t[0] for t in times), key=lambda x: x[0])
        d_s = min((t[1] for t in times), key=lambda x: x[0])
        every = [{"compress_s": c[0], "decompress_s": d[0]} for c, d in times]
        rows.append(row(name, data, len(blob), n, c_s, d_s, segments=seg, trials=every, **extra))

    log2v = math.log2(len(vocab))

    def same_setting(bpc_scored: float, streams: int) -> float:
        """The model's bpc for the file's own setting: the segments' scored characters, plus
        the first character of each segment at log2 V bits, as the coder spends them."""
        S, _ = compression.segment_layout(n, streams)
        return (bpc_scored * (n - S) + S * log2v) / n

    static_bpc, static_s = timed(evaluation.bits_per_char, model, ids)
    flat = dynamic.DynamicConfig("sgd", 0.0, 0.0, 50)  # lr 0: static, same streams
    static_seg = dynamic.dynamic_bits_per_char(model, ids, flat, None, segments).bpc
    ours(
        f"rnnlab static, {segments} segments",
        segments,
        trials=trials,
        eval_bpc=same_setting(static_seg, segments),
    )

    # the default: the output layer adapts and the match model learns (adaptive.py)
    adapt = adaptive.AdaptConfig()
    adapt_seg = adaptive.adaptive_bits_per_char(model, ids, adapt, segments)
    ours(
        f"rnnlab adaptive, {segments} segments",
        segments,
        trials=trials,
        adapt=adapt,
        eval_bpc=adapt_seg.bpc,
    )
    # the default when the run has context tables: adaptive, mixed with them (contextmix.py)
    weights_n = count_parameters(model)
    tables = ctxrun.run_tables(run, model.config.vocab_size, weights_n)
    mixed_seg = None
    if tables is not None:
        mixed_seg = adaptive.adaptive_bits_per_char(model, ids, adapt, segments, tables=tables)
        ours(
            f"rnnlab mixed, {segments} segments",
            segments,
            trials=trials,
            adapt=adapt,
            tables=tables,
            eval_bpc=mixed_seg.bpc,
            tables_bytes=(run / contextmix.CONTEXTS_FILE).stat().st_size,
            weights_bytes=(run / checkpoint.BEST).stat().st_size,
        )
    train_text = vocab.decode(np.asarray(train_ids).astype(np.int64).tolist())
    train_bytes = train_text.encode() if vocab.mode == "char" else bytes(np.asarray(train_ids))
    rivals, rivals_given = rival_rows(data, train_bytes, n) if with_rivals else ([], {})
    rows.extend(rivals)
    if not with_dynamic:
        return finish(run, config, rows, n, data, offset, chars, threads, dtype, segments, {
            "static_bpc_one_stream": static_bpc,
            f"static_bpc_{segments}_segments": static_seg,
            f"adaptive_bpc_{segments}_segments": adapt_seg.bpc,
            f"mixed_bpc_{segments}_segments": mixed_seg.bpc if mixed_seg else float("nan"),
            **xz_given(train_bytes, data, n), **rivals_given,
        })  # fmt: skip
    adapt_one = adaptive.adaptive_bits_per_char(model, ids, adapt, 1)
    wide = np.asarray(train_ids[-(20_000 + 400 * segments) : -20_000]).astype(np.int64)
    adapt_grid = []
    for head_lr in (0.0, 0.05 / 128, 0.1 / 128, 0.2 / 128):  # per character
        for match_long in (0, 16):
            c = adaptive.AdaptConfig(head_lr=head_lr, match_long=match_long)
            r = adaptive.adaptive_bits_per_char(model, wide, c, segments)
            adapt_grid.append({**dataclasses.asdict(c), "bpc": r.bpc, "static_bpc": r.static_bpc})

    with compression.pinned_threads(1):  # as `rnnlab compress` computes them
        stats = dynamic.gradient_stats(model, train_ids, 50)
    digest = dynamic.stats_digest(stats)
    # tuning text: from the training split, never the scored text; one stream: tune_chars; side
    # by side: 400 characters per stream, so that each stream takes several updates
    piece = np.asarray(train_ids[-(20_000 + tune_chars) : -20_000]).astype(np.int64)
    t0 = time.perf_counter()
    settings, trials = dynamic.tune(
        model, piece, stats, "rms", learning_rates=(3e-5, 1e-4, 3e-4, 1e-3), decays=(0.0, 1e-2)
    )
    sgd, sgd_trials = dynamic.tune(
        model, piece, None, "sgd", learning_rates=(0.01, 0.03, 0.1, 0.3), decays=(0.0,)
    )
    seg_rms, seg_rms_trials = dynamic.tune(
        model, wide, stats, "rms", (1e-4, 3e-4, 1e-3), (0.0,), streams=segments
    )
    seg_sgd, seg_sgd_trials = dynamic.tune(
        model, wide, None, "sgd", (0.03, 0.1, 0.3), (0.0,), streams=segments
    )
    tune_s = time.perf_counter() - t0
    # the paper's setting: one stream (exact), the rms rule and the SGD baseline
    dyn_one = dynamic.dynamic_bits_per_char(model, ids, settings, stats, 1)
    sgd_one = dynamic.dynamic_bits_per_char(model, ids, sgd, None, 1)
    # side by side, in the compressor: the rule that tuned best at that width
    candidates = [(seg_rms, seg_rms_trials), (seg_sgd, seg_sgd_trials)]
    best_seg = min(candidates, key=lambda c: min(t["bpc"] for t in c[1]))[0]
    seg_stats = stats if best_seg.rule == "rms" else None
    dyn_seg = dynamic.dynamic_bits_per_char(model, ids, best_seg, seg_stats, segments)
    ours(
        f"rnnlab dynamic ({best_seg.rule}), {segments} segments",
        segments,
        best_seg,
        seg_stats,
        digest if seg_stats is not None else None,
        eval_bpc=same_setting(dyn_seg.bpc, segments),
    )
    return finish(
        run, config, rows, n, data, offset, chars, threads, dtype, segments,
        {
            "static_bpc_one_stream": static_bpc,
            "static_seconds": static_s[0],
            f"static_bpc_{segments}_segments": static_seg,
            f"adaptive_bpc_{segments}_segments": adapt_seg.bpc,
            f"mixed_bpc_{segments}_segments": mixed_seg.bpc if mixed_seg else float("nan"),
            "adaptive_bpc_one_stream": adapt_one.bpc,
            "adaptive_seconds_one_stream": adapt_one.seconds,
            "dynamic_rms_bpc_one_stream": dyn_one.bpc,
            "dynamic_rms_seconds_one_stream": dyn_one.seconds,
            "dynamic_sgd_bpc_one_stream": sgd_one.bpc,
            "dynamic_sgd_seconds_one_stream": sgd_one.seconds,
            f"dynamic_{best_seg.rule}_bpc_{segments}_segments": dyn_seg.bpc,
            **xz_given(train_bytes, data, n), **rivals_given,
        },
        adapt_settings=dataclasses.asdict(adapt),
        adapt_grid_on_the_training_split={"chars": len(wide), "trials": adapt_grid},
        dynamic_settings={
            "rms_one_stream": dataclasses.asdict(settings),
            "sgd_one_stream": dataclasses.asdict(sgd),
            f"{segments}_segments": dataclasses.asdict(best_seg),
        },
        tuning={
            "chars": len(piece),
            "seconds": tune_s,
            "rms_one_stream": trials,
            "sgd_one_stream": sgd_trials,
            "rms_segments": seg_rms_trials,
            "sgd_segments": seg_sgd_trials,
        },
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--chars", type=int, default=None, help="score only N characters")
    p.add_argument("--offset", type=int, default=0, help="from this character of the split")
    p.add_argument("--trials", type=int, default=3, help="round trips of static and adaptive")
    p.add_argument(
        "--segments", type=int, default=None, help="default: rnnlab compress's for the text"
    )
    p.add_argument("--tune-chars", type=int, default=32_000, help="training chars for tuning")
    p.add_argument("--threads", type=int, default=None, help="default: rnnlab compress's")
    p.add_argument(
        "--weights-dtype",
        default=compression.DEFAULT_WEIGHTS_DTYPE,
        choices=tuple(compression.WEIGHTS_DTYPES),
    )
    p.add_argument("--no-dynamic", action="store_true", help="leave out dynamic evaluation (slow)")
    p.add_argument("--no-rivals", action="store_true", help="leave out zpaq, paq8px, lstm-compress")
    p.add_argument("--json", default="benchmarks/results/compress.json")
    a = p.parse_args()
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"coder pinned to {a.threads or compression.MIXED_THREADS} thread(s) mixed, else "
        f"{a.threads or compression.THREADS}"
        f", recurrent weights {a.weights_dtype}",
        "texts": [
            bench_run(
                r,
                a.chars,
                a.segments,
                a.tune_chars,
                a.threads,
                a.weights_dtype,
                a.offset,
                a.trials,
                not a.no_dynamic,
                not a.no_rivals,
            )  # fmt: skip
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
            f"{'dec kB/s':>9s} {'comp/cpu-s':>10s} {'dec/cpu-s':>9s} {'eval bpc':>9s}"
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
        if "dynamic_settings" in t:
            print(f"  dynamic settings (tuned on the training split): {t['dynamic_settings']}")
    print(f"\n{a.json}")


if __name__ == "__main__":
    main()
