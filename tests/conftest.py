"""Shared helpers: every test makes its own small text; nothing touches the network."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch


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
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(cmd, env=env, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is missing and could not be installed here: sudo apt-get install chromium"
        )
    return found
