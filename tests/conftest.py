"""Shared helpers: every test makes its own small text; nothing touches the network.

``shared_run`` trains one tiny model once per session (2x16 LSTM, 30 steps on ``words_text``);
tests read it, or take ``trained``, a private copy they may change.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

SHARED_RUN_FLAGS = (
    "--cell lstm --hidden 16 --layers 2 --embedding 8 --batch-size 4 --seq-len 16 --lr 1e-2 "
    "--autocast-dtype float32 --device cpu --quiet --max-steps 30 --final-sample 0"
).split()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Token files and downloads go to a per-test cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    torch.set_num_threads(1)


def periodic_text(period: str = "abcdefgh\n", repeats: int = 400) -> str:
    return period * repeats


def words_text(lines: int = 300, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "it",
        "sleeps",
    ]
    return "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(lines)) + "\n"


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium for the browser tests, installed through the system package manager
    when it is missing (as .ci/run does), so the README's test command needs no extra step.
    Fails, never skips, when it cannot be had."""
    found = shutil.which("chromium")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        # one installer at a time, whatever the number of pytest workers
        with open(Path(tempfile.gettempdir()) / "rnnlab-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if shutil.which("chromium") is None:
                for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "chromium"]):
                    subprocess.run(cmd, env=env, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is missing and could not be installed here: sudo apt-get install chromium"
        )
    return found


@pytest.fixture(scope="module")
def browser(chromium_executable):
    """A headless Chromium driven by Playwright (one per test module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium_executable, headless=True, args=["--no-sandbox"]
        )
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """``open_page(url, viewport=(1200, 900), timeout_ms=20_000, on_request=None) -> (page,
    seen)``: the page loaded in a fresh context and ready (``body[data-ready=true]``), with every
    console error and page error in ``seen["errors"]`` and every request's URL in
    ``seen["requests"]`` (``on_request`` also sees each request). Closed at the test's end."""
    contexts = []

    def open_page(url, viewport=(1200, 900), timeout_ms=20_000, on_request=None):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(context)
        page = context.new_page()
        seen = {"errors": [], "requests": []}
        page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.on("request", lambda r: seen["requests"].append(r.url))
        if on_request is not None:
            page.on("request", on_request)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=timeout_ms)
        return page, seen

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """A trained run directory shared by the whole session: never write into it."""
    from rnnlab.cli import main

    root = tmp_path_factory.mktemp("shared")
    corpus = root / "words.txt"
    corpus.write_text(words_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        torch.set_num_threads(1)
        assert main(["train", str(corpus), "--out", str(root / "run"), *SHARED_RUN_FLAGS]) == 0
    return root / "run"


@pytest.fixture
def trained(shared_run, tmp_path):
    """A private copy of ``shared_run``, free to resume, corrupt or delete."""
    return shutil.copytree(shared_run, tmp_path / "run")


# a model trained in a second through the CLI: enough to compress, decompress and sample
TINY_TRAIN = (
    "--hidden 16 --layers 1 --embedding 8 --batch-size 4 --seq-len 16 --lr 1e-2 "
    "--autocast-dtype float32 --device cpu --quiet --max-steps 20"
).split()


def train_tiny_runs(root: Path, seeds: dict[str, str]) -> Path:
    """One tiny run per name in ``seeds`` (its --seed), trained on words_text(400) under
    ``root``, whose cache/ holds the tokens (the module's own cache, not the user's)."""
    from rnnlab.cli import main

    corpus = root / "words.txt"
    corpus.write_text(words_text(400))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        for name, seed in seeds.items():
            args = ["train", str(corpus), "--out", str(root / name), "--seed", seed, *TINY_TRAIN]
            assert main(args) == 0
    return root


def forge_rz_length(rz: Path, length: int) -> None:
    """A .rz file's length fields rewritten and its checksum recomputed, as anyone can."""
    import hashlib

    from rnnlab import rzformat as Z

    blob = bytearray(rz.read_bytes())
    at = len(Z.MAGIC)
    fields = list(Z._FIXED.unpack_from(blob, at))
    fields[6], fields[7] = length, length  # symbols, original bytes
    blob[at : at + Z._FIXED.size] = Z._FIXED.pack(*fields)
    body = bytes(blob[: -Z.CHECKSUM_BYTES])
    rz.write_bytes(body + hashlib.sha256(body).digest()[: Z.CHECKSUM_BYTES])


def scan_oracle(model, ids, h, prev=None):
    """A minGRU/minLSTM CharLM from the paper's equations, one step at a time, written without
    scan.py's helpers (float64 for the scan tests). With ``prev`` (a token-shift model's second
    state), the gates read RWKV's mix of this step's normed input and the one before.

    Returns logits (B, T, V), h (L, B, H) and prev (L, B, H) after the last step (None
    without a token shift)."""

    def rms(x, norm):
        return x / (x.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt() * norm.weight

    rnn = model.rnn
    x = rnn.project(model.embedding(ids))  # (B, T, H)
    hs = list(h.unbind(0))
    ps = None if prev is None else list(prev.unbind(0))
    for k, layer in enumerate(rnn.layers):
        outs = []
        for t in range(ids.size(1)):
            u = n = rms(x[:, t], layer.norm)
            if ps is not None:  # RWKV: a mix of now and one step back
                u, ps[k] = (1 - layer.mix) * n + layer.mix * ps[k], n
            k_all = u @ layer.gates.weight.T + layer.gates.bias
            if rnn.cell == "mingru":
                k_z, k_h = k_all.chunk(2, -1)
                keep, take = 1 - torch.sigmoid(k_z), torch.sigmoid(k_z)
            else:
                k_f, k_i, k_h = k_all.chunk(3, -1)
                f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
                keep, take = f / (f + i), i / (f + i)
            cand = torch.where(k_h >= 0, k_h + 0.5, torch.sigmoid(k_h))
            hs[k] = keep * hs[k] + take * cand
            outs.append(x[:, t] + layer.out(hs[k]))
        x = torch.stack(outs, 1)
        if layer.ff is not None:  # --ff-mult: x + W_2 gelu(W_1 RMSNorm(x))
            norm, up, _, down = layer.ff
            x = x + F.gelu(rms(x, norm) @ up.weight.T + up.bias) @ down.weight.T + down.bias
    last = None if ps is None else torch.stack(ps)
    return model.head(rnn.norm(x)), torch.stack(hs), last
