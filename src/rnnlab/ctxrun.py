"""A run's context tables: their size limit (``--context-mb``, by default ten times the
model's float32 weights), the most rows that fit it, and building, saving and loading them in
the run directory. Imports contextmix, ctxmatch, ctxtables and errors from rnnlab.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .contextmix import Mixer, build_tables
from .ctxmatch import index_bytes
from .ctxtables import CONTEXTS_FILE, ContextTables, MixConfig, table_bits_for, text_dtype
from .errors import UsageError

LIMIT_TIMES_WEIGHTS = 10  # the tables' default bound: ten times the float32 weights


def limit_bytes(context_mb: float | None, weight_count: int) -> int:
    """``--context-mb`` in bytes, or the default for a model of ``weight_count`` weights."""
    if context_mb is None:
        return LIMIT_TIMES_WEIGHTS * 4 * weight_count
    if not (math.isfinite(context_mb) and context_mb > 0):
        raise UsageError(f"--context-mb must be a positive number, got {context_mb}")
    return int(context_mb * 1e6)


def run_tables(
    run_dir: Path, vocab_size: int, weight_count: int, context_mb: float | None = None
) -> ContextTables | None:
    """The run's context tables (``CONTEXTS_FILE``), or None if it has none; refused if over
    ``limit_bytes(context_mb, weight_count)``."""
    path = Path(run_dir) / CONTEXTS_FILE
    if not path.exists():
        return None
    return ContextTables.load(path, vocab_size, limit_bytes(context_mb, weight_count))


def _sized(config: MixConfig, budget: int, V: int) -> MixConfig:
    """``config`` with the most rows whose counts fit ``budget`` bytes in memory while reading:
    the local tables at half the saved tables' rows (1.5 x the saved counts) or, where that
    would cost the saved tables half their rows, at a quarter (1.25 x); none where that would
    leave them under 256 rows."""
    V += config.checks  # a row's check byte
    row = config.tables * V
    choices = []  # (saved tables' bits, local tables' bits)
    if budget * 2 // 3 >= row * 512:
        bits = table_bits_for(budget * 2 // 3, config.tables, V)
        choices.append((bits, bits - 1))
    if budget * 4 // 5 >= row * 1024:
        bits = table_bits_for(budget * 4 // 5, config.tables, V)
        choices.append((bits, bits - 2))
    if not choices:
        return replace(config, table_bits=table_bits_for(budget, config.tables, V), local_bits=0)
    bits, local = max(choices)  # the most saved rows, then the most local ones
    return replace(config, table_bits=bits, local_bits=local)


def build_run_tables(
    run_dir: Path, train_ids: np.ndarray, symbols: tuple[Any, ...], max_bytes: int
) -> ContextTables:
    """Count the run's training split into tables that fit ``max_bytes`` and save them (the
    file is replaced atomically)."""
    base, V, ids = MixConfig(), len(symbols), np.asarray(train_ids)
    room = max_bytes - 4096  # 4 kB: the file's header
    # the match model's text and its index, where they take at most a quarter of the limit
    # (a small model of a large text would give the tables half their rows for it: the default
    # three-minute model of the 12 MB `python` corpus, whose text and index take 45%) and leave
    # the tables their smallest size
    match = len(ids) * text_dtype(V).itemsize + index_bytes(len(ids))
    smallest_tables = base.tables * (V + base.checks) * 256 * 2
    if base.match and match <= room // 4 and room - match >= smallest_tables:
        room -= match
    else:
        base = replace(base, match=0)
    # the warm-up's state takes the same bytes whatever the rows: measured on the smallest tables
    smallest = ContextTables.empty(replace(base, table_bits=8, local_bits=8), symbols)
    learned = sum(a.nbytes for a in Mixer(smallest, 1).learned().values())
    if room - learned >= base.tables * V * 256 * 2:  # with the warm-up's state, if it fits
        tables = build_tables(ids, symbols, _sized(base, room - learned, V))
    else:  # a small model's limit: counts alone, the mixer starts fresh
        tables = ContextTables.build(ids, symbols, _sized(base, room, V))
    tables.save(Path(run_dir) / CONTEXTS_FILE)
    return tables
