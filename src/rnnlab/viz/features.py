"""Features of a text that a cell might track, and the statistics that find such cells: Pearson
correlation of every cell with every feature, and gate saturation (Karpathy, Johnson & Fei-Fei
2015, "Visualizing and Understanding Recurrent Networks", section 4.2 and Figure 3).
numpy only; imports nothing from rnnlab.

Every feature is read at the state *after* the character at position t has been read (what the
model knows when it predicts t+1), so each one is causal: it depends on text[: t + 1] only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES: dict[str, str] = {
    "in_double_quotes": 'inside "..." (or """...""") strings',
    "in_single_quotes": "inside '...' strings (apostrophes inside words excluded)",
    "in_brackets": "inside (), [] or {}",
    "bracket_depth": "nesting depth of (), [] and {}",
    "line_position": "characters since the last newline",
    "indentation": "leading spaces of the current line (a tab counts 4)",
    "in_comment": "inside a # comment",
    "word_start": "the character just read starts a word",
    "after_newline": "the character just read is a newline",
}

SATURATION_LOW, SATURATION_HIGH = 0.1, 0.9
_OPEN, _CLOSE = "([{", ")]}"
_STRING_PREFIXES = {"f", "r", "b", "u", "rb", "br", "fr", "rf"}


def text_features(text: str) -> dict[str, np.ndarray]:
    """The FEATURES of every character of ``text``.

    A small lexer in one pass: double quotes (single and triple), single quotes (ending at a
    newline; a quote between two letters is an apostrophe unless the word before it is a string
    prefix such as ``f`` or ``rb``), # comments to the end of the line, bracket depth outside
    strings and comments.

    Returns:
        name -> (N,) float64 array, N = len(text), in the order of FEATURES.
    """
    n = len(text)
    out = {name: np.zeros(n) for name in FEATURES}
    quote = ""  # the open string's delimiter: "", '"', "'", '"""' or "'''"
    comment = False
    depth = column = indent = 0
    at_line_start = True
    t = 0
    while t < n:
        ch = text[t]
        step = 1  # characters consumed by this token (3 for a triple quote)
        if ch == "\n":
            if quote in ('"', "'"):
                quote = ""  # an unterminated one-line string ends with its line
            comment, column, indent, at_line_start = False, 0, 0, True
        elif comment:
            pass
        elif quote:
            if text.startswith(quote, t):
                step, quote = len(quote), ""
            elif ch == "\\" and text[t + 1 : t + 2] not in ("", "\n"):
                step = 2  # an escaped character never closes the string
        elif ch in "\"'":
            if text.startswith(ch * 3, t):
                quote, step = ch * 3, 3
            elif ch == '"' or not _is_apostrophe(text, t):
                quote = ch
        elif ch == "#":
            comment = True
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(depth - 1, 0)
        stop = min(t + step, n)
        if ch != "\n":
            if at_line_start and ch in " \t":
                indent += 4 if ch == "\t" else 1
            else:
                at_line_start = False
        for k in range(t, stop):  # a token of several characters shares one state
            prev = text[k - 1] if k else "\n"
            out["in_double_quotes"][k] = quote.startswith('"')
            out["in_single_quotes"][k] = quote.startswith("'")
            out["in_brackets"][k] = depth > 0
            out["bracket_depth"][k] = depth
            out["line_position"][k] = 0 if ch == "\n" else column + (k - t) + 1
            out["indentation"][k] = indent
            out["in_comment"][k] = comment
            out["word_start"][k] = _is_word(text[k]) and not _is_word(prev)
            out["after_newline"][k] = text[k] == "\n"
        column += stop - t if ch != "\n" else 0
        t = stop
    return out


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _is_apostrophe(text: str, t: int) -> bool:
    """A single quote between two letters, as in "o'er", unless it opens a prefixed string."""
    if not (0 < t < len(text) - 1 and text[t - 1].isalpha() and text[t + 1].isalpha()):
        return False
    start = t - 1
    while start > 0 and _is_word(text[start - 1]):
        start -= 1
    return text[start:t].lower() not in _STRING_PREFIXES


class Correlator:
    """Pearson r between F features and K activations, accumulated over chunks of a long text
    (sums in float64, so memory does not grow with the text)."""

    def __init__(self, num_features: int, num_activations: int) -> None:
        self.n = 0
        self.sf = np.zeros(num_features)
        self.sff = np.zeros(num_features)
        self.sx = np.zeros(num_activations)
        self.sxx = np.zeros(num_activations)
        self.sfx = np.zeros((num_features, num_activations))

    def add(self, features: np.ndarray, activations: np.ndarray) -> None:
        """Args:
        features: (T, F) feature values of T consecutive characters.
        activations: (T, K) activations at the same characters.
        """
        f = np.asarray(features, dtype=np.float64)
        x = np.asarray(activations, dtype=np.float64)
        self.n += len(f)
        self.sf += f.sum(0)
        self.sff += (f * f).sum(0)
        self.sx += x.sum(0)
        self.sxx += (x * x).sum(0)
        self.sfx += f.T @ x  # (F, K)

    def r(self) -> np.ndarray:
        """(F, K) Pearson correlations; 0 where a feature or an activation is constant."""
        n = self.n
        cov = n * self.sfx - np.outer(self.sf, self.sx)
        var_f = np.maximum(n * self.sff - self.sf**2, 0.0)
        var_x = np.maximum(n * self.sxx - self.sx**2, 0.0)
        denom = np.sqrt(np.outer(var_f, var_x))
        # a constant column (a dead cell, a feature absent from the text) correlates with nothing
        tiny = 1e-9 * max(n, 1) ** 2
        ok = (var_f[:, None] > tiny) & (var_x[None, :] > tiny)
        return np.where(ok, cov / np.where(ok, denom, 1.0), 0.0)

    def constant_features(self) -> np.ndarray:
        """(F,) bool: features that never change over the text (no correlation is defined)."""
        return np.maximum(self.n * self.sff - self.sf**2, 0.0) <= 1e-9 * max(self.n, 1) ** 2


@dataclass
class Saturation:
    """Per layer, gate and cell: how many steps the gate spent below 0.1 (left-saturated) and
    above 0.9 (right-saturated); Karpathy, Johnson & Fei-Fei 2015, Figure 3."""

    gates: tuple[str, ...]
    low: np.ndarray  # (L, G, H) counts
    high: np.ndarray  # (L, G, H) counts
    steps: int = 0

    @classmethod
    def empty(cls, gates: tuple[str, ...], num_layers: int, hidden_size: int) -> Saturation:
        shape = (num_layers, len(gates), hidden_size)
        return cls(gates, np.zeros(shape, np.int64), np.zeros(shape, np.int64))

    def add(self, values: np.ndarray) -> None:
        """values: (L, G, T, H) gate activations of T steps."""
        self.low += (values < SATURATION_LOW).sum(2)
        self.high += (values > SATURATION_HIGH).sum(2)
        self.steps += values.shape[2]

    def fractions(self) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) fractions of steps, each (L, G, H)."""
        steps = max(self.steps, 1)
        return self.low / steps, self.high / steps
