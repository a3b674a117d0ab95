"""What a trained model does on a text, character by character: every gate and state of every
cell (cells.ReferenceRNN, the step-by-step twin of the fused stack) and the model's own next-
character distribution (its head on that twin's top layer: CharLM in eval mode, float32), with
the state carried over the whole text. Imports model and cells from rnnlab.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..cells import GATES, reference_of
from ..model import CharLM
from .features import FEATURES, Correlator, Saturation, text_features

# what can be shown per cell, by cell type; "c" is shown as tanh(c), which is bounded
QUANTITIES: dict[str, tuple[str, ...]] = {
    "lstm": ("c", "h", "i", "f", "g", "o"),
    "gru": ("h", "r", "z", "n"),
    "rnn": ("h",),
    "rnn-relu": ("h",),
    "mingru": ("h", "z"),
    "minlstm": ("h", "f", "i"),
}
LABELS = {
    "c": "cell state tanh(c)",
    "h": "hidden state h",
    "i": "input gate i",
    "f": "forget gate f",
    "g": "candidate g",
    "o": "output gate o",
    "r": "reset gate r",
    "z": "update gate z",
    "n": "candidate n",
}
SIGMOID_GATES = {"i", "f", "o", "r", "z"}  # in [0, 1]: the gates whose saturation is measured


@dataclass
class Chunk:
    """The record of T consecutive characters.

    Attributes:
        start: position of the first character in the text.
        values: (L, Q, T, H) float32, the quantities QUANTITIES[cell] of every cell.
        probs: (T, V) float32, the model's distribution of the character after each one.
    """

    start: int
    values: np.ndarray
    probs: np.ndarray


def quantities(cell: str) -> tuple[str, ...]:
    return QUANTITIES[cell]


def saturation_gates(cell: str) -> tuple[str, ...]:
    return tuple(g for g in GATES[cell] if g in SIGMOID_GATES)


@torch.no_grad()
def iter_record(
    model: CharLM,
    ids: np.ndarray,
    chunk_len: int = 1024,
    on_progress: Callable[[int], None] | None = None,
    exact_chars: int | None = None,
    rows: int = 8,
    warmup: int = 256,
) -> Iterator[Chunk]:
    """Run the model over ``ids`` and yield what it did, chunk by chunk.

    Gates, states and the distribution all come from one pass of the reference twin
    (cells.reference_of: ReferenceRNN with the fused stack's weights, or a MinRNNStack itself)
    and the model's head: the same equations as the fused model, held equal by the tests.

    The first ``exact_chars`` characters are read with the state carried from the start of the
    text (exact). The rest is cut into up to ``rows`` - 1 more segments read side by side as a
    batch, each from a zero state warmed up on the ``warmup`` characters before it (as
    evaluation.iter_char_nats_batched): a step-by-step twin at batch 1 waits for one small
    product per character and layer, so this is where a page's time went.

    Args:
        model: a CharLM (any device; the record is made on CPU in float32, in eval mode).
        ids: (N,) character ids.
        chunk_len: characters per step of the loop; only trades memory for speed.
        on_progress: called with the number of characters done after each chunk.
        exact_chars: how many characters from the start are exact; None: all of them.
        rows, warmup: the batch of segments beyond ``exact_chars``.

    Yields:
        Chunks covering positions 0..N-1, each exactly once (in order within a segment).
    """
    model = _cpu_float32_eval(model)
    cell = model.config.cell
    ref = reference_of(model.rnn).eval()
    names = QUANTITIES[cell]
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    n = len(ids)
    exact = n if exact_chars is None else min(max(exact_chars, 1), n)
    seg = max(exact, math.ceil(n / max(rows, 1)), warmup, 1)
    starts = list(range(0, n, seg))  # segment r covers [starts[r], starts[r] + seg)

    # one thread: the loop is thousands of small products and element-wise ops; with 2 threads
    # on a loaded 2-core machine it ran 4x slower (46 s against 12 s for a 2x512 LSTM's page)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield from _record_segments(
            model, ref, names, ids, starts, seg, chunk_len, warmup, on_progress
        )
    finally:
        torch.set_num_threads(threads)


def _record_segments(
    model: CharLM,
    ref: torch.nn.Module,
    names: tuple[str, ...],
    ids: torch.Tensor,
    starts: list[int],
    seg: int,
    chunk_len: int,
    warmup: int,
    on_progress: Callable[[int], None] | None,
) -> Iterator[Chunk]:
    """The loop of ``iter_record``: segments starting at ``starts``, ``seg`` characters each."""
    n, R = len(ids), len(starts)

    def batch(spans: list[tuple[int, int]], length: int) -> torch.Tensor:
        out = torch.zeros(len(spans), length, dtype=torch.long)
        for r, (a, b) in enumerate(spans):
            out[r, : b - a] = ids[a:b]
        return out

    state = None
    if R > 1 and warmup:
        warm = batch([(max(a - warmup, 0), a) for a in starts], warmup)  # row 0: unused
        _, state, _ = ref(model.embedding(warm), None)
        state = tuple(s.index_fill(1, torch.tensor([0]), 0.0) for s in state)  # row 0: exact
    done = 0
    for t in range(0, seg, chunk_len):
        T = min(chunk_len, seg - t)
        spans = [(min(a + t, n), min(a + t + T, n)) for a in starts]
        window = batch(spans, T)  # (R, T), padded on the right
        out, state, trace = ref(model.embedding(window), state, record=True)
        # the head on the reference's top layer is CharLM.forward in eval mode; a second,
        # fused pass at batch 1 cost more than the recording itself (oneDNN, 2 cores)
        probs = model.head(out).softmax(-1)  # (R, T, V)
        if "c" in trace:
            trace["c"] = trace["c"].tanh()
        values = torch.stack([trace[q] for q in names], 1)  # (L, Q, R, T, H)
        for r, (a, b) in enumerate(spans):
            if b > a:
                yield Chunk(a, values[:, :, r, : b - a].numpy(), probs[r, : b - a].numpy())
                done += b - a
        if on_progress:
            on_progress(done)


def _cpu_float32_eval(model: CharLM) -> CharLM:
    """A float32 CPU copy in eval mode (no dropout); the caller's model is left as it was."""
    p = next(model.parameters())
    if p.device.type == "cpu" and p.dtype == torch.float32 and not model.training:
        return model
    copy = CharLM(model.config)
    copy.load_state_dict({k: v.float().cpu() for k, v in model.state_dict().items()})
    return copy.eval()


@dataclass
class Analysis:
    """Everything the page and ``--json`` show about a model on a text.

    Attributes:
        cell, num_layers, hidden_size: the model's recurrent stack (L layers of H cells).
        quantities: the Q quantities recorded per cell, QUANTITIES[cell].
        symbols: the text's characters, one per id, for the N characters shown.
        values: (L, Q, N, H) float32 activations at the shown characters ("c" as tanh(c)).
        top_ids, top_probs: (N, K) the model's K most likely next characters after each one.
        own_probs: (N,) the probability the model gave each character before seeing it
            (NaN for the first, which nothing predicts).
        num_analyzed: characters the statistics below cover (>= N).
        r: (F, L, Q, H) Pearson r of every cell with every feature in features.FEATURES.
        constant: (F,) bool, features that never change in the analyzed text (r undefined).
        saturation: the sigmoid gates' saturation counts.
        probs: (N, V) float32, the model's whole next-character distribution after each shown
            character (for comparing two runs).
    """

    cell: str
    num_layers: int
    hidden_size: int
    quantities: tuple[str, ...]
    symbols: list[str]
    values: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    own_probs: np.ndarray
    num_analyzed: int
    r: np.ndarray
    constant: np.ndarray
    saturation: Saturation
    probs: np.ndarray

    def strongest(
        self, per_feature: int = 5, among: tuple[str, ...] | None = None
    ) -> dict[str, list[dict]]:
        """For each feature, the cells whose activation correlates most with it (largest |r|),
        one entry per cell (its best quantity, of those in ``among`` if given), strongest
        first; [] for a feature that is constant in the text."""
        out = {}
        L, H = self.num_layers, self.hidden_size
        keep = [q for q, name in enumerate(self.quantities) if among is None or name in among]
        for fi, name in enumerate(FEATURES):
            if self.constant[fi]:
                out[name] = []
                continue
            r = self.r[fi][:, keep]  # (L, Q', H)
            by_unit = np.abs(r).transpose(0, 2, 1).reshape(L * H, len(keep))  # (L*H, Q')
            best_q = by_unit.argmax(1)
            order = np.argsort(-by_unit.max(1), kind="stable")[:per_feature]
            out[name] = [
                {
                    "layer": int(u // H),
                    "quantity": self.quantities[keep[best_q[u]]],
                    "cell": int(u % H),
                    "r": float(r[u // H, best_q[u], u % H]),
                }
                for u in order
            ]
        return out


def analyze(
    model: CharLM,
    ids: np.ndarray,
    symbols: list[str],
    show_chars: int,
    top_k: int = 5,
    chunk_len: int = 1024,
    on_progress: Callable[[int], None] | None = None,
) -> Analysis:
    """Record the model over ``ids``; keep every activation and prediction of the first
    ``show_chars`` characters (exact: the state carried from the start of the text), and
    correlation and saturation statistics over all of them (beyond the shown characters read by
    warmed-up segments side by side, see ``iter_record``).

    Args:
        model: a trained CharLM.
        ids: (M,) the text's ids; symbols: (M,) one display character per id (features are
            computed on "".join(symbols)).
        show_chars: N, how many characters (from the start) the page shows.
        top_k: predictions kept per character.
        chunk_len, on_progress: as in ``iter_record``.
    """
    config = model.config
    L, H, V = config.num_layers, config.hidden_size, config.vocab_size
    names = QUANTITIES[config.cell]
    Q, N = len(names), min(show_chars, len(ids))
    text = "".join(symbols)
    feats = np.stack(list(text_features(text).values()), 1)  # (M, F)
    gates = saturation_gates(config.cell)
    gate_index = [names.index(g) for g in gates]
    corr = Correlator(feats.shape[1], L * Q * H)
    sat = Saturation.empty(gates, L, H)
    values = np.zeros((L, Q, N, H), np.float32)
    probs_shown = np.zeros((N, V), np.float32)
    own = np.full(N, np.nan)
    for chunk in iter_record(model, ids, chunk_len, on_progress, exact_chars=N):
        T, a = chunk.values.shape[2], chunk.start
        flat = chunk.values.transpose(2, 0, 1, 3).reshape(T, L * Q * H)  # (T, L*Q*H)
        corr.add(feats[a : a + T], flat)
        sat.add(chunk.values[:, gate_index])
        if a < N:
            k = min(T, N - a)
            values[:, :, a : a + k] = chunk.values[:, :, :k]
            probs_shown[a : a + k] = chunk.probs[:k]
    nxt = np.asarray(ids[1:N], dtype=np.int64)
    own[1:] = probs_shown[np.arange(N - 1), nxt]  # p(x_t) was predicted at t - 1
    top_ids = np.argsort(-probs_shown, axis=1, kind="stable")[:, : min(top_k, V)]  # (N, K)
    return Analysis(
        config.cell,
        L,
        H,
        names,
        list(symbols[:N]),
        values,
        top_ids,
        np.take_along_axis(probs_shown, top_ids, 1),
        own,
        len(ids),
        corr.r().reshape(-1, L, Q, H),
        corr.constant_features(),
        sat,
        probs_shown,
    )
