"""Context tables: symbol counts of the training text under hashed contexts (orders 2 to k,
for prose the word so far, with the previous word, with the two previous; for lines the line's
prefix with its indentation, and the characters above), the statistics
contextmix.py mixes with the network, and the training text itself for its match model
(ctxmatch.py). Built once from a run's training split, saved beside the weights as safetensors
with a SHA-256 (no pickle; size bounded and checked), and updated while reading. Imports
ctxkeys, ctxmatch, errors and files from rnnlab.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .ctxkeys import (
    LETTER,
    MAX_WORDS,
    NEWLINE,
    OTHER,
    SPACE,
    Contexts,
    side_by_side,
    symbol_classes,
    word_symbols,
)
from .ctxmatch import index_bytes
from .ctxtree import Tree, balanced_tree, class_tree, tree_paths
from .errors import UsageError

CONTEXTS_FILE = "contexts.safetensors"
# 2: discounted counts, local tables, two mixers; 3: line contexts, classes; 4: check bytes;
# 5: the training text, for its match model; 6: the mixer's learned weights for two network
# inputs; 7: the symbol tree (ctxtree.class_tree), the first symbol's frequencies (learned); 8:
# the mixer's learned weights for a second input per table (a deterministic context's)
FORMAT_VERSION = 8
MAX_ORDER = 12
MAX_MATCH = 32
MAX_LINES = 2
COUNT_LIMIT = 255  # uint8 counts; 30, 60 and 127 measured no better on held-out Shakespeare


def _flag(default: Any, flag: str, help: str) -> Any:
    return field(default=default, metadata={"flag": flag, "help": help})


@dataclass(frozen=True)
class MixConfig:
    """What the tables hold and how the mixer learns; recorded in the tables' file and in every
    .rz file coded with them."""

    # the last-symbols contexts' orders. Order 1 is left to the mixer's weight sets and the APM,
    # which already read the previous symbol, and its table goes to longer contexts: held-out,
    # the ten-minute models, (1..6) -> (2, 3, 4, 5, 7, 10) in the same memory: Shakespeare
    # 1.8029 -> 1.8021, code 0.9989 -> 0.9960, unseen code (the code model) 1.0722 -> 1.0690;
    # (2..6, 8), (2, 3, 4, 6, 8, 12), (2, 3, 4, 5, 7, 9 / 11 / 12) and (3, 4, 5, 6, 8, 11) read
    # between the two, (1..6, 8, 12) 1.8018 and 0.9942 with 16% more memory
    orders: tuple[int, ...] = (2, 3, 4, 5, 7, 10)
    words: int = 3  # word contexts: the word so far; with the previous word; with two
    # line contexts: 1, the line so far (its first LINE_PREFIX characters, the column, the
    # indentation); 2, also the two characters above (the previous line's at this column and the
    # next) with the last one. Held-out code 1.0675 -> 1.0568 bpc with both, Shakespeare 1.8376
    # -> 1.8361 (the default mixer)
    lines: int = 2
    table_bits: int = 17  # rows of every table: 2**table_bits
    # paq's nonstationary counts: each time a row counts a symbol, the row's other counts above
    # this keep only half their excess (0: off). Held-out tiny Shakespeare and code, mixed:
    # 2 and 4 measured 0.004-0.005 better than off, 8 and 16 no better
    discount: int = 4
    # rows of the tables of the text being read (empty at its start, never saved), beside the
    # training text's: what this text has done so far, apart from the training counts (0: none)
    local_bits: int = 16
    # 2: a second mixer with a weight set per (decision, previous symbol), beside the one per
    # decision, the two mixed by a second layer (paq8's final mixer); 1: one mixer; 3: also one
    # per (decision, column, classes of the last two symbols); 4: and one per (decision, length
    # of the word so far, class of the symbol before the last)
    mixers: int = 4
    # 1: every row carries a check byte (8 more bits of its context's hash) and a context may
    # sit in either of two neighbouring rows: a row of another context reads as empty, and a
    # context not found takes the row of the two with fewer counts (paq's hash confirmation and
    # replacement); 0: rows are shared by whatever contexts hash to them
    checks: int = 1
    # the match model of the training text (ctxmatch.py): its context length, 0: none. Held-out
    # tiny Shakespeare, the forty-minute fixed model: 1.8870 without; 5, 7, 8, 10, 12 and 20:
    # 1.8847, 1.8816, 1.8820, 1.8837, 1.8859 and 1.8870. The ten-minute models: 5, 7, 10 on
    # Shakespeare 1.8177, 1.8167, 1.8175; on code 1.0231, 1.0222, 1.0227 (14: 1.0235)
    match: int = 7
    # held-out, the ten-minute models, 0.002 / 0.003 / 0.004: Shakespeare 1.8167 / 1.8156 /
    # 1.8158, code 1.0222 / 1.0194 / 1.0186; the forty-minute fixed model 0.002 -> 0.003: -0.0015
    mixer_lr: float = _flag(0.003, "--mix-lr", "learning rate of the context mixer (0: frozen)")
    apm_rate: float = _flag(0.002, "--mix-apm-rate", "learning rate of the APM stage (0: off)")

    def __post_init__(self) -> None:
        orders = tuple(int(k) for k in self.orders)
        object.__setattr__(self, "orders", orders)
        if (
            not orders
            or any(not 1 <= k <= MAX_ORDER for k in orders)
            or sorted(set(orders)) != list(orders)
        ):
            raise UsageError(f"context orders must be increasing, from 1 to {MAX_ORDER}")
        if not 0 <= self.words <= MAX_WORDS:
            raise UsageError(f"word contexts must be 0 to {MAX_WORDS}, got {self.words}")
        if not 0 <= self.lines <= MAX_LINES:
            raise UsageError(f"line contexts must be 0 to {MAX_LINES}, got {self.lines}")
        if not 8 <= self.table_bits <= 24:
            raise UsageError(f"table bits must be 8 to 24, got {self.table_bits}")
        if not (self.local_bits == 0 or 8 <= self.local_bits <= 24):
            raise UsageError(f"local table bits must be 0 or 8 to 24, got {self.local_bits}")
        if (
            not 0 <= self.discount <= COUNT_LIMIT
            or self.mixers not in (1, 2, 3, 4)
            or self.checks not in (0, 1)
            or not 0 <= self.match <= MAX_MATCH
        ):
            raise UsageError("invalid context-mixing settings (discount, mixers, checks, match)")
        for name in ("mixer_lr", "apm_rate"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise UsageError(f"{name.replace('_', '-')} must be in [0, 1], got {v}")

    @property
    def tables(self) -> int:
        return len(self.orders) + self.words + self.lines

    @property
    def local_table_bits(self) -> int:
        """Rows (log2) of each local table: at most the saved tables' (0: none)."""
        return min(self.local_bits, self.table_bits)

    @classmethod
    def from_dict(cls, raw: dict) -> MixConfig:
        try:
            return cls(**{**raw, "orders": tuple(raw["orders"])})
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"invalid context-mixing settings: {e}") from None


def text_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integers that hold the ids of ``vocab_size`` symbols."""
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else "<u4")


def table_bits_for(budget: int, tables: int, vocab_size: int) -> int:
    """The most rows per table (a power of two) whose tables fit in ``budget`` bytes."""
    rows = max(1, budget // max(1, tables * vocab_size))
    if rows < 256:
        raise UsageError(
            f"a context-table limit of {budget:,} bytes is too small for {tables} tables "
            f"of {vocab_size} symbols; raise --context-mb"
        )
    return min(24, int(math.log2(rows)))


class ContextTables:
    """The symbol counts of every context table: (tables, 2**table_bits, V) uint8."""

    def __init__(
        self,
        config: MixConfig,
        counts: np.ndarray,
        word: np.ndarray,
        classes: np.ndarray,
        learned: dict[str, np.ndarray] | None = None,
        checks: np.ndarray | None = None,
        text: np.ndarray | None = None,
        tree: Tree | None = None,
    ) -> None:
        """``word`` and ``classes``: ``word_symbols`` and ``symbol_classes`` of the vocabulary;
        ``learned``: the mixer's state after reading the end of the training text (its
        weights, state maps and APM, contextmix.Mixer's), or None: the mixer starts fresh;
        ``checks``: (tables, rows) uint8, each row's check byte (0: empty), given exactly
        where ``config.checks``; ``text``: the training text's ids (``text_dtype``), for the
        match model, given exactly where ``config.match``; ``tree``: the mixer's symbol tree
        (ctxtree.py; default: the balanced one)."""
        if bool(config.checks) != (checks is not None):
            raise ValueError("check bytes must be given exactly where config.checks is set")
        if bool(config.match) != (text is not None):
            raise ValueError("the training text must be given exactly where config.match is set")
        self.config, self.counts, self.word, self.classes = config, counts, word, classes
        self.learned = learned or {}
        self.checks, self.text = checks, text
        self.tree = tree if tree is not None else balanced_tree(len(word))
        self.bits = int(counts.shape[1]).bit_length() - 1  # rows: 2**bits
        self._digest: str | None = None

    @classmethod
    def empty(
        cls, config: MixConfig, symbols: tuple[Any, ...], symbol_counts: np.ndarray | None = None
    ) -> ContextTables:
        """Tables with no counts, their symbol tree from ``symbol_counts`` (V,) (default: none)."""
        V = len(symbols)
        counts = np.zeros((config.tables, 1 << config.table_bits, V), dtype=np.uint8)
        checks = np.zeros(counts.shape[:2], dtype=np.uint8) if config.checks else None
        text = np.zeros(0, text_dtype(V)) if config.match else None
        tree = class_tree(
            symbols, np.zeros(V, np.int64) if symbol_counts is None else symbol_counts
        )
        words, classes = word_symbols(symbols), symbol_classes(symbols)
        return cls(config, counts, words, classes, None, checks, text, tree)

    @classmethod
    def build(
        cls, ids: np.ndarray, symbols: tuple[Any, ...], config: MixConfig, streams: int = 1024
    ) -> ContextTables:
        """The tables of a training text (N,) ids: counted as ``streams`` contiguous pieces
        read side by side, with the very update the coder makes."""
        tables = cls.empty(config, symbols, np.bincount(ids, minlength=len(symbols)))
        S = max(1, min(streams, len(ids) // 64))
        contexts = Contexts(config, tables.word, tables.classes, S)
        for _, active, column in side_by_side(ids, S):
            tables.update(contexts.hashes, column, active)
            contexts.push(column, active)
        if config.match:
            tables.text = np.asarray(ids).astype(text_dtype(len(symbols)))
        return tables

    def slots(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tables, S) context hashes -> their rows (int64, the hashes' top bits) and check
        bytes (uint8, the next 8 bits, 1 to 255)."""
        rows = (hashes >> np.uint64(64 - self.bits)).astype(np.int64)
        check = (hashes >> np.uint64(56 - self.bits)) & np.uint64(0xFF)
        return rows, np.maximum(check, np.uint64(1)).astype(np.uint8)

    def _found(self, rows: np.ndarray, check: np.ndarray) -> np.ndarray:
        """Where each context sits: its row, the row beside it (row ^ 1), or -1: in neither."""
        m = np.arange(len(rows))[:, None]
        other = rows ^ 1
        return np.where(
            self.checks[m, rows] == check,
            rows,
            np.where(self.checks[m, other] == check, other, -1),
        )

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """(tables, S) context hashes -> their counts, (tables, S, V) uint8 (zeros for a
        context a table does not hold)."""
        rows, check = self.slots(hashes)
        m = np.arange(len(rows))[:, None]
        if self.checks is None:
            return self.counts[m, rows]
        at = self._found(rows, check)
        counts = self.counts[m, np.maximum(at, 0)]
        counts[at < 0] = 0
        return counts

    def _claim(self, rows: np.ndarray, check: np.ndarray) -> np.ndarray:
        """(tables, a) rows of the a streams' contexts, each given a row where it had none: of
        its two rows the one with fewer counts, emptied (where several streams claim one row,
        the first of them); -1 for a stream that lost its row to another's context."""
        M, R, V = self.counts.shape
        at = self._found(rows, check)
        lost = at < 0
        if lost.any():
            mm, s = np.nonzero(lost)
            r = rows[mm, s]
            fuller = self.counts[mm, r].sum(axis=1, dtype=np.int64) > self.counts[mm, r ^ 1].sum(
                axis=1, dtype=np.int64
            )
            victim = np.where(fuller, r ^ 1, r)
            cell, first = np.unique(mm * R + victim, return_index=True)  # s ascending per cell
            self.counts.reshape(M * R, V)[cell] = 0
            self.checks.reshape(-1)[cell] = check[mm[first], s[first]]
            at = self._found(rows, check)
        return at

    def update(self, hashes: np.ndarray, symbols: np.ndarray, active: int) -> None:
        """Count ``symbols`` (S,) after the contexts ``hashes`` (tables, S) of the first
        ``active`` streams; a count that would pass 255 halves its row first."""
        if not active:
            return
        self._digest = None
        M, R, V = self.counts.shape
        flat = self.counts.reshape(-1)
        rows, check = self.slots(hashes[:, :active])
        symbols = np.tile(symbols[:active], M)  # (M * active,), as the rows flattened
        if self.checks is not None:
            rows = self._claim(rows, check)
        counted = (np.arange(M)[:, None] * R + rows).reshape(-1)  # rows of M x R
        if self.checks is not None:
            held = rows.reshape(-1) >= 0
            counted, symbols = counted[held], symbols[held]
        if self.config.discount:  # every row counted: its other symbols' excess halved
            keep = np.uint8(self.config.discount)
            whole, inv = np.unique(counted, return_inverse=True)
            seen = np.zeros((len(whole), V), dtype=bool)  # a row counted in several streams
            seen[inv, symbols] = True
            view = self.counts.reshape(M * R, V)
            c = view[whole]
            view[whole] = np.where((c > keep) & ~seen, keep + ((c - keep) >> 1), c)
        cells = counted * V + symbols
        cells, times = np.unique(cells, return_counts=True)
        new = flat[cells].astype(np.int64) + times
        full = new > COUNT_LIMIT
        if full.any():
            whole = np.unique(cells[full] // V)  # the rows to halve
            self.counts.reshape(M * R, V)[whole] >>= 1
            new = np.minimum(COUNT_LIMIT, flat[cells].astype(np.int64) + times)
        flat[cells] = new.astype(np.uint8)

    def copy(self) -> ContextTables:
        """A copy to read with (reading updates the counts)."""
        learned = {k: v.copy() for k, v in self.learned.items()}
        checks = None if self.checks is None else self.checks.copy()
        return ContextTables(
            self.config,
            self.counts.copy(),
            self.word.copy(),
            self.classes.copy(),
            learned,
            checks,
            self.text,  # read, never written
            self.tree,
        )

    def sha256(self) -> str:
        """Of the settings and every count (kept until the counts change)."""
        if self._digest is None:
            h = hashlib.sha256()
            h.update(json.dumps(asdict(self.config), sort_keys=True).encode())
            h.update(np.ascontiguousarray(self.counts).tobytes())
            h.update(self.word.astype("<i8").tobytes())
            h.update(self.classes.astype("<i8").tobytes())
            if self.checks is not None:
                h.update(np.ascontiguousarray(self.checks).tobytes())
            if self.text is not None:
                h.update(self.text.astype("<u4").tobytes())
            h.update(b"".join(a.astype("<i8").tobytes() for a in self.tree))
            for name in sorted(self.learned):
                h.update(name.encode() + np.ascontiguousarray(self.learned[name]).tobytes())
            self._digest = h.hexdigest()
        return self._digest

    @property
    def nbytes(self) -> int:
        extra = sum(a.nbytes for a in (self.checks, self.text) if a is not None)
        return self.counts.nbytes + extra + self.word.nbytes + self.classes.nbytes

    @property
    def reading_bytes(self) -> int:
        """In memory while reading: the tables, the mixer's learned state, the local tables
        of the text read and the match model's index."""
        M, _, V = self.counts.shape
        bits = self.config.local_table_bits
        local = M * (V + self.config.checks) << bits if bits else 0
        index = 0 if self.text is None else index_bytes(len(self.text))
        return self.nbytes + sum(a.nbytes for a in self.learned.values()) + local + index

    def save(self, path: Path) -> None:
        """Atomically, as safetensors with the settings and a SHA-256 in its metadata."""
        from safetensors.numpy import save

        from .files import atomic_write

        meta = {
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps(asdict(self.config)),
            "sha256": self.sha256(),
        }
        learned = {f"learned.{k}": np.ascontiguousarray(v) for k, v in self.learned.items()}
        arrays = {"counts": self.counts, "word": self.word, "classes": self.classes}
        arrays |= {"tree_order": self.tree[0], "tree_splits": self.tree[1]}
        if self.checks is not None:
            arrays["checks"] = self.checks
        if self.text is not None:
            arrays["text"] = self.text
        blob = save(arrays | learned, metadata=meta)
        atomic_write(path, blob)

    @classmethod
    def load(cls, path: Path, vocab_size: int, max_bytes: int) -> ContextTables:
        """The tables saved at ``path``, refused (UsageError) if larger than ``max_bytes``,
        of another vocabulary, or not what their checksum says."""
        from safetensors import SafetensorError, safe_open

        size = path.stat().st_size
        if size > max_bytes:
            raise UsageError(
                f"{path} is {size / 1e6:,.1f} MB, over the {max_bytes / 1e6:,.1f} MB limit; "
                "raise --context-mb or rebuild it with `rnnlab contexts RUN`"
            )
        bad = (
            f"{path} is damaged or not a context-table file; rebuild it with `rnnlab contexts RUN`"
        )
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format_version") != str(FORMAT_VERSION):  # another rnnlab's
                    raise UsageError(
                        f"{path} has another format (rnnlab's tables are of format "
                        f"{FORMAT_VERSION}); rebuild it with `rnnlab contexts RUN`"
                    )
                counts, word = f.get_tensor("counts"), f.get_tensor("word")
                classes = f.get_tensor("classes")
                names = set(f.keys())
                checks = f.get_tensor("checks") if "checks" in names else None
                text = f.get_tensor("text") if "text" in names else None
                tree = (f.get_tensor("tree_order"), f.get_tensor("tree_splits"))
                tree_paths(*tree)  # ValueError if not a tree of these symbols
                learned = {
                    k.removeprefix("learned."): f.get_tensor(k)
                    for k in sorted(names)
                    if k.startswith("learned.")
                }
            config = MixConfig.from_dict(json.loads(meta["config"]))
        except UsageError:  # a ValueError too: the other format's message, as it is
            raise
        except (SafetensorError, OSError, KeyError, ValueError):
            raise UsageError(bad) from None
        shape = (config.tables, 1 << config.table_bits, vocab_size)
        if (
            counts.dtype != np.uint8
            or counts.shape != shape
            or word.shape != (vocab_size,)
            or classes.shape != (vocab_size,)
            or not np.isin(classes, (LETTER, SPACE, NEWLINE, OTHER)).all()
            or (checks is None) != (not config.checks)
            or (checks is not None and (checks.dtype != np.uint8 or checks.shape != shape[:2]))
            or (text is None) != (not config.match)
            or (text is not None and (text.dtype != text_dtype(vocab_size) or text.ndim != 1))
            or (text is not None and len(text) and int(text.max()) >= vocab_size)
            or any(a.dtype != np.int64 for a in tree)
            or len(tree[0]) != vocab_size
        ):
            raise UsageError(bad)
        # arrays of their own
        tables = cls(
            config,
            counts,
            word.astype(np.int64),
            classes.astype(np.int64),
            learned,
            checks,
            text,
            tree,
        )
        if tables.sha256() != meta.get("sha256"):
            raise UsageError(bad)
        return tables
