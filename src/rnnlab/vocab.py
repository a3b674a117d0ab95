"""Vocab: characters (Unicode code points) or bytes <-> integer ids, and its JSON form.

Stdlib only. Characters outside the vocabulary follow one explicit policy: "error" (default,
listing them) or "skip" (drop them).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

UNKNOWN_POLICIES = ("error", "skip")


class UnknownCharacterError(UsageError):
    """Text holds characters the model never saw in training."""


def unknown_characters(missing: Sequence[str]) -> UnknownCharacterError:
    """The error that lists the characters the model never saw."""
    missing = sorted(missing)
    shown = " ".join(repr(c) for c in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    return UnknownCharacterError(
        f"{len(missing)} character(s) not in the model's vocabulary: {shown}{more}; "
        "remove them or pass --unknown skip to drop them"
    )


@dataclass(frozen=True)
class Vocab:
    """A symbol table, sorted when built from a text (a fine-tuned run's appends the characters
    its base never saw, so known ids stay). In "char" mode symbols are one-character strings,
    in "byte" mode they are the 256 byte values and text is UTF-8 encoded first."""

    mode: str
    symbols: tuple[Any, ...]

    def __post_init__(self) -> None:
        if self.mode not in ("char", "byte"):
            raise UsageError(f"vocabulary mode must be 'char' or 'byte', got {self.mode!r}")
        if self.mode == "byte" and self.symbols != tuple(range(256)):
            raise UsageError("a byte vocabulary holds exactly the byte values 0..255")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def from_chars(cls, chars: Iterable[str]) -> Vocab:
        return cls("char", tuple(sorted(set(chars))))

    @classmethod
    def bytes(cls) -> Vocab:
        return cls("byte", tuple(range(256)))

    def __len__(self) -> int:
        return len(self.symbols)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary, sorted."""
        if self.mode == "byte":
            return []
        return sorted(set(text) - self._index.keys())

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        """Text -> ids. Raises UnknownCharacterError listing unseen characters (policy "error")."""
        if unknown not in UNKNOWN_POLICIES:
            raise UsageError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}")
        if self.mode == "byte":
            return list(text.encode("utf-8"))
        missing = self.unknown(text)
        if missing and unknown == "error":
            raise unknown_characters(missing)
        index = self._index
        return [index[c] for c in text if c in index]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text. In byte mode, invalid UTF-8 becomes U+FFFD."""
        if self.mode == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.symbols[i] for i in ids)

    def incremental_decoder(self) -> codecs.IncrementalDecoder | None:
        """For streaming byte-mode output: holds back partial UTF-8 sequences. None in char mode."""
        if self.mode == "byte":
            return codecs.getincrementaldecoder("utf-8")(errors="replace")
        return None

    def code_points(self) -> list[int]:
        """Char mode: the code points in id order, for vectorized encoding (see data.py)."""
        return [ord(c) for c in self.symbols]

    def id_of(self, symbol: str) -> int | None:
        """The id of a single character (char mode) or None if it is not in the vocabulary."""
        if self.mode == "byte":
            raw = symbol.encode("utf-8")
            return raw[0] if len(raw) == 1 else None
        return self._index.get(symbol)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "symbols": list(self.symbols)}

    @classmethod
    def from_json(cls, data: Any) -> Vocab:
        """The vocabulary of ``to_json``; anything else raises UsageError (vocab.json is
        untrusted input)."""
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise UsageError('a vocabulary is a JSON object {"mode": ..., "symbols": [...]}')
        mode, symbols = data.get("mode"), tuple(data["symbols"])
        if mode == "char":
            if any(not isinstance(s, str) or len(s) != 1 for s in symbols):
                raise UsageError("char vocabulary symbols must be single characters")
            if len(set(symbols)) != len(symbols):  # sorted, except that a fine-tuned run
                raise UsageError("char vocabulary symbols must be distinct")  # appends new ones
        elif mode == "byte" and any(type(s) is not int for s in symbols):
            raise UsageError("a byte vocabulary holds exactly the byte values 0..255")
        return cls(mode, symbols)
