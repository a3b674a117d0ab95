"""Shared by the serve tests: a tiny run directory and a real uvicorn server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import torch

from rnnlab import checkpoint
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.model import CharLM
from rnnlab.vocab import Vocab

TEXT = (
    "def area(shape, scale=2):  # width * height\n"
    '    """Return the area."""\n'
    "    if shape in ('square', \"circle\"):\n"
    "        return [scale * (x + 1) for x in range(3)]\n"
    "    return {'a': 1}\n\n"
) * 6


def make_run(path: Path, cell: str = "lstm", seed: int = 0, text: str = TEXT) -> Path:
    """A run directory with random weights (2 x 16) and one validation record."""
    vocab = Vocab.from_chars(text)
    torch.manual_seed(seed)
    config = ModelConfig(
        cell=cell, num_layers=2, hidden_size=16, embedding_size=8, vocab_size=len(vocab)
    )
    model = CharLM(config).eval()
    path.mkdir(parents=True)
    corpus = CorpusConfig(source=str(path / "text.txt"))
    checkpoint.save_config(path, checkpoint.RunConfig(config, TrainConfig(), corpus))
    checkpoint.save_vocab(path, vocab)
    checkpoint.save_weights(path / checkpoint.BEST, model, step=0)
    checkpoint.append_metrics(path, {"step": 10, "split": "val", "bpc": 4.25})
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread, serving ``app`` on a free loopback port until ``stop()``."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def sse_events(lines) -> list[tuple[str, dict]]:
    """Parse Server-Sent Events from an iterator of lines: [(event, data), ...]."""
    events, kind, data = [], "message", ""
    for line in lines:
        if line == "":
            if data:
                events.append((kind, json.loads(data)))
            kind, data = "message", ""
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
    return events
