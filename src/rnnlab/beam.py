"""Beam search: the ``width`` most likely continuations, kept step by step with the state
carried by cells.StepDecoder, under the same stop strings and constraints as sampling.
Imports errors, vocab, model, cells, controls and completion from rnnlab; sampling.complete
calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cells import StepDecoder
from .completion import CharLogprob, Completion, logprob_records, symbol_text
from .controls import Constraint, mask_logits, split_at_stop
from .errors import UsageError
from .model import LM, model_device
from .vocab import Vocab


@dataclass
class _Hypothesis:
    ids: list[int]
    logprob: float  # sum, nats
    seen: str | bytes  # the output as the constraint sees it
    records: list[CharLogprob]

    def score(self) -> float:
        """Length-normalized: mean log-probability per symbol (hypotheses that stop early
        compete with longer ones on equal terms)."""
        return self.logprob / max(len(self.ids), 1)


@torch.inference_mode()
def beam_search(
    model: LM,
    vocab: Vocab,
    ids: list[int],
    length: int,
    width: int,
    num_samples: int,
    stops: tuple[str, ...],
    constraint: Constraint | None,
    logprobs: int,
    weights_dtype: torch.dtype | None,
) -> list[Completion]:
    """Keep the ``width`` most likely continuations (sum of log-probabilities) step by step;
    a hypothesis ends at a stop string or a complete regex match, or at ``length``. The
    results are ranked by mean log-probability per symbol. Width 1 is greedy decoding.

    Returns:
        The ``num_samples`` best Completions, best first, ``score`` set.
    """
    model.eval()
    device = model_device(model)
    if not ids:
        start = vocab.id_of("\n")
        ids = [start if start is not None else 0]
    prime = torch.tensor([ids], device=device)  # (1, P)
    _, state = model(prime[:, :-1]) if prime.size(1) > 1 else (None, None)
    state = state if state is not None else model.init_state(1, device)
    decoder = StepDecoder.from_model(model, weights_dtype)
    layers = [list(s.unbind(0)) for s in state]
    token = prime[:, -1]  # (1,)
    empty = constraint.empty if constraint is not None else ""
    alive = [_Hypothesis([], 0.0, empty, [])]
    done: list[tuple[_Hypothesis, str]] = []
    V = len(vocab)
    for _ in range(length):
        logp = decoder.advance(token, layers).double().log_softmax(-1)  # (n, V)
        recs = logprob_records(vocab, logp, logp.argmax(-1), logprobs) if logprobs else None
        allowed = logp.new_ones(logp.shape, dtype=torch.bool)
        if constraint is not None:
            for r, h in enumerate(alive):
                allowed[r] = constraint.mask(h.seen)
                if not allowed[r].any() and constraint.complete(h.seen):
                    done.append((h, "stop"))  # a complete match nothing extends
        totals = torch.tensor([h.logprob for h in alive], device=device, dtype=logp.dtype)[
            :, None
        ] + mask_logits(logp, allowed)  # (n, V)
        flat = totals.flatten()
        k = min(2 * width, int(torch.isfinite(flat).sum()))
        if k == 0:
            break
        best = flat.topk(k).indices.tolist()
        parents, nexts = [], []
        for i in best:
            r, tok = divmod(i, V)
            h = alive[r]
            record = None
            if recs is not None:
                x = recs[r]
                record = CharLogprob(symbol_text(vocab, tok), logp[r, tok].item(), x.top)
            piece = constraint.pieces[tok] if constraint is not None else ""
            new = _Hypothesis(
                h.ids + [tok],
                flat[i].item(),
                h.seen + piece,
                h.records + [record] if record is not None else h.records,
            )
            if stops and _ends_in_stop(vocab, new.ids, stops):
                done.append((new, "stop"))
                continue
            if len(nexts) < width:
                parents.append(r)
                nexts.append(new)
        if not nexts:
            alive = []
            break
        index = torch.tensor(parents, device=device)
        layers = [[t.index_select(0, index) for t in s] for s in layers]
        token = torch.tensor([h.ids[-1] for h in nexts], device=device)
        alive = nexts
    done += [(h, "length") for h in alive]
    if not done:
        raise constraint.dead_end(empty) if constraint is not None else UsageError("no output")
    done.sort(key=lambda hf: hf[0].score(), reverse=True)
    out = []
    for h, reason in done[:num_samples]:
        text = vocab.decode(h.ids)
        if reason == "stop" and stops:
            text, _, _ = split_at_stop(text, stops)
        n = len(text.encode()) if vocab.mode == "byte" else len(text)
        out.append(Completion(text, reason, h.records[:n] if logprobs else None, h.score()))
    return out


def _ends_in_stop(vocab: Vocab, ids: list[int], stops: tuple[str, ...]) -> bool:
    """Whether the text of ``ids`` now holds a stop string (it was checked a step ago, so only
    its tail can)."""
    tail = vocab.decode(ids[-(max(len(s) for s in stops) * 4 + 4) :])
    return any(s in tail for s in stops)
