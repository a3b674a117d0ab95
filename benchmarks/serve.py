"""Load test of `rnnlab serve` on loopback: 1, 8 and 64 concurrent streaming clients, each asking
for 500 characters, against the same requests sent one at a time (half before the concurrent
batch, half after), in the same run and against the same server process. Reports aggregate
characters per second, p50/p99 time to first character and per-character latency (the gap
between characters as the client sees them), errors, and the server's peak resident memory;
``--soak-s`` then keeps 64 clients busy and samples the server's memory to show whether it
stays flat.

    python benchmarks/serve.py [RUN] [--clients 1,8,64] [--length 500] [--soak-s 300]

Without RUN a 2x512 LSTM with random weights is served (speed does not depend on the weights).
Needs the serve extra (fastapi, uvicorn, httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from rnnlab import checkpoint
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.model import CharLM
from rnnlab.vocab import Vocab


def random_run(folder: Path, hidden: int) -> Path:
    vocab = Vocab.from_chars("".join(chr(32 + i) for i in range(95)) + "\n")
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=hidden, num_layers=2, vocab_size=len(vocab))
    run = folder / f"lstm-2x{hidden}"
    run.mkdir()
    checkpoint.save_config(run, checkpoint.RunConfig(config, TrainConfig(), CorpusConfig()))
    checkpoint.save_vocab(run, vocab)
    checkpoint.save_weights(run / checkpoint.BEST, CharLM(config), step=0)
    return run


class Memory:
    """Samples a process's resident memory (VmRSS, /proc) ten times a second."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.rss_mb()))
            time.sleep(0.1)

    def peak_since(self, t0: float) -> float:
        return max((m for t, m in self.samples if t >= t0), default=float("nan"))

    def stop(self) -> None:
        self._stop.set()


async def one_request(http: httpx.AsyncClient, body: dict) -> dict:
    """Stream one generation; the client's view of its timing."""
    t0 = time.perf_counter()
    arrivals, error = [], None
    try:
        async with http.stream("POST", "/v1/generate", json=body | {"stream": True}) as r:
            if r.status_code != 200:
                error = f"HTTP {r.status_code}: {(await r.aread()).decode()[:200]}"
            else:
                async for line in r.aiter_lines():
                    if line.startswith('data: {"sample"'):
                        arrivals.append(time.perf_counter())
                    elif line.startswith("event: error"):
                        error = "error event"
    except Exception as e:  # a refused or dropped connection counts as an error
        error = f"{type(e).__name__}: {e}"
    if error is None and len(arrivals) != body["length"]:
        error = f"got {len(arrivals)} of {body['length']} characters"
    first = arrivals[0] - t0 if arrivals else None
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return {"first_s": first, "gaps": gaps, "chars": len(arrivals), "error": error}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def scenario(url: str, clients: int, length: int, memory: Memory) -> list[dict]:
    """The same ``clients`` requests one at a time and all at once. One at a time runs half
    before and half after the concurrent batch, so a change of load on a shared machine during
    the measurement weighs on both alike."""
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    bodies = [{"length": length, "seed": i, "temperature": 0.8} for i in range(clients)]
    half = (clients + 1) // 2
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        m0, t0 = time.monotonic(), time.perf_counter()
        alone = [await one_request(http, b) for b in bodies[:half]]
        wall_alone = time.perf_counter() - t0
        m1, t1 = time.monotonic(), time.perf_counter()
        together = await asyncio.gather(*(one_request(http, b) for b in bodies))
        wall_together = time.perf_counter() - t1
        peak_together = memory.peak_since(m1)
        t2 = time.perf_counter()
        alone += [await one_request(http, b) for b in bodies[half:]]
        wall_alone += time.perf_counter() - t2
    return [
        summary(clients, "one at a time", alone, wall_alone, memory.peak_since(m0)),
        summary(clients, "concurrent", together, wall_together, peak_together),
    ]


def summary(clients: int, mode: str, results: list[dict], wall: float, peak_mb: float) -> dict:
    firsts = [r["first_s"] for r in results if r["first_s"] is not None]
    gaps = [g for r in results for g in r["gaps"]]
    return {
        "clients": clients,
        "mode": mode,
        "chars": sum(r["chars"] for r in results),
        "wall_s": wall,
        "chars_per_s": sum(r["chars"] for r in results) / wall,
        "first_char_p50_ms": 1e3 * pct(firsts, 0.5),
        "first_char_p99_ms": 1e3 * pct(firsts, 0.99),
        "per_char_p50_ms": 1e3 * pct(gaps, 0.5),
        "per_char_p99_ms": 1e3 * pct(gaps, 0.99),
        "errors": sum(r["error"] is not None for r in results),
        "first_error": next((r["error"] for r in results if r["error"]), None),
        "peak_rss_mb": peak_mb,
    }


async def soak(url: str, clients: int, length: int, seconds: float, memory: Memory) -> dict:
    """``clients`` loops of back-to-back requests for ``seconds``; memory every 10 s."""
    stop = time.monotonic() + seconds
    done, errors, first_errors = [0], [0], []

    async def loop(http, i):
        k = 0
        while time.monotonic() < stop:
            r = await one_request(http, {"length": length, "seed": i * 100_000 + k})
            done[0] += 1
            errors[0] += r["error"] is not None
            if r["error"] is not None and len(first_errors) < 5:
                first_errors.append(r["error"])
            k += 1

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await asyncio.gather(*(loop(http, i) for i in range(clients)))
    window = min(60.0, seconds / 4)  # compare the first and the last stretch of the soak
    trace = [(round(t - t0), round(m, 1)) for t, m in memory.samples if t >= t0][::100]
    rss = [m for t, m in memory.samples if t >= t0]
    return {
        "seconds": seconds,
        "clients": clients,
        "requests": done[0],
        "errors": errors[0],
        "first_errors": first_errors,
        "window_s": window,
        "rss_first_window_max_mb": max(m for t, m in memory.samples if t0 <= t < t0 + window),
        "rss_last_window_max_mb": max(m for t, m in memory.samples if t >= t0 + seconds - window),
        "rss_max_mb": max(rss),
        "rss_every_10s_mb": trace,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", nargs="?", help="run directory (default: a random-weight 2x512 LSTM)")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--length", type=int, default=500)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    p.add_argument("--soak-s", type=float, default=0.0, help="then a soak of 64 clients (s)")
    p.add_argument("--soak-only", action="store_true", help="skip the 1/8/64 comparison")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--json", default="benchmarks/results/serve.json")
    a = p.parse_args()
    clients = [int(c) for c in a.clients.split(",")]
    scratch = tempfile.TemporaryDirectory()
    run = Path(a.run) if a.run else random_run(Path(scratch.name), a.hidden)
    env = os.environ | {"OMP_NUM_THREADS": str(a.threads)}
    cmd = [sys.executable, "-m", "rnnlab", "serve", str(run), "--port", str(a.port)]
    cmd += ["--max-streams", str(max(clients)), "--max-request-s", "600"]
    server = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{a.port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        memory = Memory(server.pid)
        asyncio.run(scenario(url, 2, 50, memory))  # warm-up
        rows = []
        for n in [] if a.soak_only else clients:
            rows += asyncio.run(scenario(url, n, a.length, memory))
            for r in rows[-2:]:
                print(
                    f"{n:3d} clients {r['mode']:13s} {r['chars_per_s']:9.0f} chars/s "
                    f"errors {r['errors']}",
                    file=sys.stderr,
                )
        soaked = (
            asyncio.run(soak(url, max(clients), a.length, a.soak_s, memory)) if a.soak_s else None
        )
        memory.stop()
    finally:
        server.terminate()
        server.wait(timeout=30)
    by = {(r["clients"], r["mode"]): r for r in rows}
    for r in rows:
        base = by[(r["clients"], "one at a time")]
        r["speedup_vs_one_at_a_time"] = r["chars_per_s"] / base["chars_per_s"]
    result = {
        "run": str(a.run or f"random-weight 2x{a.hidden} LSTM"),
        "length": a.length,
        "server_threads": a.threads,
        "torch": torch.__version__,
        "machine": "shared 2-core AMD EPYC (Zen 4, AVX-512 BF16, no AMX); other work running",
        "rows": rows,
        "soak": soaked,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1))
    head = (
        f"{'clients':>7s} {'mode':>13s} {'chars/s':>8s} {'x 1-at-a-time':>13s} "
        f"{'TTFC p50':>9s} {'p99':>7s} {'per-char p50':>12s} {'p99':>7s} {'errors':>6s} "
        f"{'peak RSS':>8s}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['clients']:7d} {r['mode']:>13s} {r['chars_per_s']:8.0f} "
            f"{r['speedup_vs_one_at_a_time']:12.1f}x {r['first_char_p50_ms']:7.1f}ms "
            f"{r['first_char_p99_ms']:5.1f}ms {r['per_char_p50_ms']:10.2f}ms "
            f"{r['per_char_p99_ms']:5.2f}ms {r['errors']:6d} {r['peak_rss_mb']:6.0f}MB"
        )
    if soaked:
        print(
            f"soak: {soaked['clients']} clients, {soaked['seconds']:.0f} s, "
            f"{soaked['requests']} requests, {soaked['errors']} errors; server RSS max "
            f"{soaked['rss_first_window_max_mb']:.0f} MB in the first {soaked['window_s']:.0f} s, "
            f"{soaked['rss_last_window_max_mb']:.0f} MB in the last"
        )
        for error in soaked["first_errors"]:
            print(f"soak error: {error}")


if __name__ == "__main__":
    main()
