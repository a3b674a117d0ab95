"""Crash harness: real `rnnlab train` processes killed at random instants, then sampled and
resumed; every resumed run must end bit-identical to the run never interrupted.

Each trial starts a small run (one thread, validation and checkpoint several times a second, so
many kills land inside a save) and sends SIGKILL, SIGTERM or SIGINT at a random instant: for a
third of the trials during start-up (between launch and the first checkpoint, as long as the
uninterrupted run took for it), for the rest during training (after the trial's own first
checkpoint, within the uninterrupted run's training time). Then:
  - `rnnlab sample RUN` must work if best weights exist, else fail with one line (exit 2);
  - `rnnlab train --resume RUN` must finish (a run stopped before its first checkpoint starts
    over; a folder with nothing in it takes `train --out` again);
  - the final weights, optimizer state, RNG state and carried state must equal the
    uninterrupted run's, tensor for tensor.

    python benchmarks/crash.py --trials 100

Prints a table and writes JSON (benchmarks/results/crash.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import safetensors.torch
import torch

RUN_FLAGS = (
    "--hidden 32 --layers 2 --embedding 8 --batch-size 8 --seq-len 32 --dropout 0.1 "
    "--autocast-dtype float32 --device cpu --sample-chars 0 --final-sample 0 --quiet "
    "--eval-every-s 0.3"
).split()
KINDS = (("SIGKILL", 0.7), ("SIGTERM", 0.15), ("SIGINT", 0.15))
EXPECTED_RC = {"SIGTERM": 143, "SIGINT": 130}


def words(lines: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = "the quick brown fox jumps over a lazy dog while it sleeps near river bank".split()
    return "\n".join(" ".join(rng.choice(vocab) for _ in range(9)) for _ in range(lines)) + "\n"


def rnnlab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rnnlab", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(run / "last.safetensors")


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def launch(corpus: Path, steps: int, run: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rnnlab", "train", str(corpus), *RUN_FLAGS]
    cmd += ["--max-steps", str(steps), "--out", str(run)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run: Path) -> bool:
    """Until the run's first checkpoint exists (True) or the process ended (False)."""
    while not (run / "last.safetensors").exists():
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return True


def trial(i: int, kind: str, phase: str, delay: float, corpus: Path, steps: int, work: Path, ref):
    """One run, signalled ``delay`` seconds after it started (phase "startup") or after its
    first checkpoint appeared (phase "training"), then sampled and resumed."""
    run = work / f"trial{i}"
    proc = launch(corpus, steps, run)
    if phase == "training":
        wait_for_checkpoint(proc, run)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(getattr(signal, kind))
    _, stderr = proc.communicate(timeout=600)
    rc = proc.returncode
    saved_step = None
    if (run / "last.safetensors").exists():
        meta_step = rnnlab_step(run)
        saved_step = meta_step
    # sample: works with best weights, else one line and exit 2
    sampled = rnnlab("sample", str(run), "--length", "20", "--seed", "1")
    sample_ok = (
        sampled.returncode == 0
        if (run / "model.safetensors").exists()
        else (sampled.returncode == 2 and len(sampled.stderr.strip().splitlines()) == 1)
    )
    if (run / "config.json").exists():
        resumed = rnnlab("train", "--resume", str(run), "--quiet")
    else:  # stopped before it wrote anything: the same folder takes the run again
        resumed = rnnlab(
            "train", str(corpus), *RUN_FLAGS, "--max-steps", str(steps), "--out", str(run)
        )
    resumable = resumed.returncode == 0
    identical = corrupt = False
    if resumable:
        try:
            identical = same(ref, final_tensors(run))
        except Exception:
            corrupt = True
    leftovers = [p.name for p in run.glob(".*.part")] if run.exists() else []
    return {
        "trial": i,
        "signal": kind,
        "phase": phase,
        "delay_s": round(delay, 3),
        "finished_before_signal": finished_first,
        "exit_code": rc,
        "stderr_tail": stderr.strip().splitlines()[-1:] if stderr.strip() else [],
        "checkpoint_step_after_signal": saved_step,
        "sample_ok": sample_ok,
        "resumable": resumable,
        "resume_error": resumed.stderr.strip()[-300:] if not resumable else "",
        "corrupt": corrupt,
        "identical": identical,
        "leftover_parts": leftovers,
    }


def rnnlab_step(run: Path) -> int | None:
    with open(run / "last.safetensors", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        try:
            return int(json.loads(f.read(n))["__metadata__"]["step"])
        except (ValueError, KeyError):
            return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--steps", type=int, default=120, help="max steps of each run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results/crash.json")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="rnnlab-crash-") as tmp:
        work = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # token files: not the user's cache
        corpus = work / "words.txt"
        corpus.write_text(words(600))
        # the uninterrupted run, timed: start-up (launch to first checkpoint) and training
        t0 = time.perf_counter()
        proc = launch(corpus, args.steps, work / "ref")
        wait_for_checkpoint(proc, work / "ref")
        startup_s = time.perf_counter() - t0
        _, stderr = proc.communicate(timeout=600)
        train_s = time.perf_counter() - t0 - startup_s
        assert proc.returncode == 0, stderr
        wall_s = startup_s + train_s
        ref = final_tensors(work / "ref")
        # every trial's signal and instant drawn up front, so --jobs does not change them: a
        # third during start-up (before the first checkpoint), the rest during training, timed
        # from the trial's own first checkpoint so that a loaded machine still lands them there
        kinds = [k for k, _ in KINDS]
        plan = []
        for _ in range(args.trials):
            kind = rng.choices(kinds, [w for _, w in KINDS])[0]
            if rng.random() < 1 / 3:
                plan.append((kind, "startup", rng.uniform(0, startup_s)))
            else:
                plan.append((kind, "training", rng.uniform(0, train_s)))

        def one(i: int) -> dict:
            row = trial(i, *plan[i], corpus, args.steps, work, ref)
            flag = "ok" if row["identical"] else "FAIL"
            print(
                f"trial {i:3d} {row['signal']:7s} {row['phase']:8s} +{row['delay_s']:5.2f} s"
                f" -> exit {row['exit_code']}, checkpoint {row['checkpoint_step_after_signal']}, "
                f"resumed {flag}",
                file=sys.stderr,
                flush=True,
            )
            return row

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(one, range(args.trials)))

    by_kind = Counter(r["signal"] for r in rows)
    table = []
    for kind in [k for k, _ in KINDS]:
        sel = [r for r in rows if r["signal"] == kind]
        if not sel:
            continue
        signalled = [r for r in sel if not r["finished_before_signal"]]
        table.append(
            {
                "signal": kind,
                "trials": len(sel),
                "before_first_checkpoint": sum(
                    r["checkpoint_step_after_signal"] is None for r in sel
                ),
                "unresumable": sum(not r["resumable"] for r in sel),
                "corrupt": sum(r["corrupt"] for r in sel),
                "identical": sum(r["identical"] for r in sel),
                "sample_ok": sum(r["sample_ok"] for r in sel),
                "exit_codes": dict(Counter(str(r["exit_code"]) for r in signalled)),
                "leftover_parts": sum(bool(r["leftover_parts"]) for r in sel),
            }
        )
    summary = {
        "trials": len(rows),
        "unresumable": sum(not r["resumable"] for r in rows),
        "corrupt": sum(r["corrupt"] for r in rows),
        "identical": sum(r["identical"] for r in rows),
        "uninterrupted_wall_s": round(wall_s, 2),
        "uninterrupted_startup_s": round(startup_s, 2),
        "steps": args.steps,
        "by_signal": dict(by_kind),
    }
    result = {
        "command": "python benchmarks/crash.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "torch": torch.__version__,
        "summary": summary,
        "table": table,
        "trials": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")

    header = "signal | trials | before 1st checkpoint | unresumable | corrupt | bit-identical"
    print(f"| {header} | sample ok | exit codes |")
    print("|---|---|---|---|---|---|---|---|")
    for t in table:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(t["exit_codes"].items()))
        print(
            f"| {t['signal']} | {t['trials']} | {t['before_first_checkpoint']} "
            f"| {t['unresumable']} | {t['corrupt']} | {t['identical']} | {t['sample_ok']} "
            f"| {codes} |"
        )
    s = summary
    print(
        f"\n{s['trials']} trials: {s['unresumable']} unresumable, {s['corrupt']} corrupt, "
        f"{s['identical']} resumed bit-identical to the uninterrupted run"
    )


if __name__ == "__main__":
    main()
