"""Generation: prime with one forward pass over the prompt, then one step per character with
the state carried (O(1) work per new character, the prefix is never fed again).

The per-character step is hand-written from the CharLM's own weights (one matmul per layer, the
first layer's input projection folded into a table) because at batch 1 the cost of a step is
call overhead, not arithmetic. Imports config, vocab and model from rnnlab.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .model import CharLM, State
from .vocab import Vocab

# --- sampling transforms: small pure functions on logits (B, V) ---------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature (> 0); lower is more conservative."""
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits per row (ties broken by index), -inf elsewhere."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    idx = logits.topk(k, dim=-1).indices  # (B, k)
    kept = torch.full_like(logits, float("-inf"))
    return kept.scatter(-1, idx, logits.gather(-1, idx))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely symbols whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)  # (B, V)
    drop_sorted = cum - sorted_logits.softmax(-1) >= p  # mass before this symbol already >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# --- the one-step decoder ----------------------------------------------------------------------


class Decoder:
    """One recurrent step at a time from a CharLM's weights, equal to ``CharLM.forward``.

    Per layer one ``addmm`` on [x, h] @ [W_ih; W_hh]^T; layer 0's input projection of every
    symbol is precomputed as a (V, G*H) table, so the embedding costs a row lookup.
    """

    def __init__(self, model: CharLM) -> None:
        c = model.config
        self.cell, self.H, self.L = c.cell, c.hidden_size, c.num_layers
        rnn = model.rnn
        with torch.no_grad():
            p = {n: t.detach().clone() for n, t in rnn.named_parameters()}
            emb = model.embedding.weight.detach()
            gru = self.cell == "gru"
            self.table = emb @ p["weight_ih_l0"].T + p["bias_ih_l0"]  # (V, G*H)
            if not gru:
                self.table += p["bias_hh_l0"]
            self.w_hh0 = p["weight_hh_l0"].T.contiguous()  # (H, G*H)
            self.w_cat = [None] + [  # (2H, G*H): [x, h] @ w_cat
                torch.cat([p[f"weight_ih_l{i}"], p[f"weight_hh_l{i}"]], 1).T.contiguous()
                for i in range(1, self.L)
            ]
            self.b = [p[f"bias_ih_l{i}"] + p[f"bias_hh_l{i}"] for i in range(self.L)]
            if gru:  # GRU keeps the hidden projection of n apart: n = tanh(Wx + r * (Uh + b))
                self.w_ih = [None] + [p[f"weight_ih_l{i}"].T.contiguous() for i in range(1, self.L)]
                self.b_ih = [p[f"bias_ih_l{i}"] for i in range(self.L)]
                self.w_hh = [p[f"weight_hh_l{i}"].T.contiguous() for i in range(self.L)]
                self.b_hh = [p[f"bias_hh_l{i}"] for i in range(self.L)]
            self.head_w = model.head.weight.detach().T.contiguous()  # (H, V)
            self.head_b = model.head.bias.detach().clone()

    def step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Args:
            token: (B,) int64 ids of the current characters.
            state: as CharLM's, each (L, B, H).

        Returns:
            logits (B, V) for the next character, and the new state.
        """
        hs = list(state[0].unbind(0))
        cs = list(state[1].unbind(0)) if self.cell == "lstm" else None
        x = None
        for i in range(self.L):
            h = hs[i]
            if self.cell == "gru":
                gi = self.table[token] if i == 0 else torch.addmm(self.b_ih[i], x, self.w_ih[i])
                gh = torch.addmm(self.b_hh[i], h, self.w_hh[i] if i else self.w_hh0)
                H = self.H
                rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
                r, z = rz[:, :H], rz[:, H:]
                n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
                h = n + z * (h - n)  # (1 - z) * n + z * h
            else:
                if i == 0:
                    g = torch.addmm(self.table[token], h, self.w_hh0)  # (B, G*H)
                else:
                    g = torch.addmm(self.b[i], torch.cat([x, h], 1), self.w_cat[i])
                if self.cell == "lstm":
                    H = self.H
                    ifo = torch.sigmoid(g[:, : 2 * H]), torch.sigmoid(g[:, 3 * H :])
                    c = torch.addcmul(
                        ifo[0][:, H:] * cs[i], ifo[0][:, :H], torch.tanh(g[:, 2 * H : 3 * H])
                    )
                    h = ifo[1] * torch.tanh(c)
                    cs[i] = c
                else:
                    h = torch.tanh(g) if self.cell == "rnn" else torch.relu(g)
            hs[i] = h
            x = h
        logits = torch.addmm(self.head_b, x, self.head_w)  # (B, V)
        new_state = (torch.stack(hs),) + ((torch.stack(cs),) if cs is not None else ())
        return logits, new_state


# --- generation -------------------------------------------------------------------------------


@torch.no_grad()
def generate(
    model: CharLM,
    vocab: Vocab,
    prompt: str = "",
    length: int = 500,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    num_samples: int = 1,
    unknown: str = "error",
    on_text: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Sample ``num_samples`` continuations of ``prompt`` in parallel.

    Args:
        model: a CharLM (put in eval mode here).
        vocab: its vocabulary.
        prompt: text to prime the state with; "" starts after a newline (or symbol 0).
        length: characters (char mode) or bytes (byte mode) to generate per sample.
        temperature: 0 is greedy; otherwise logits are divided by it.
        top_k: keep exactly the k most likely symbols (0: all).
        top_p: nucleus sampling threshold (1: off).
        seed: makes the output reproducible; None draws a fresh seed.
        num_samples: rows generated at once (a batch).
        unknown: policy for prompt characters outside the vocabulary ("error" or "skip").
        on_text: called as ``on_text(row, text)`` with each new piece of text, for streaming.

    Returns:
        The generated texts, without the prompt.
    """
    if length < 0 or num_samples < 1 or temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError("need length >= 0, num_samples >= 1, temperature >= 0, 0 < top_p <= 1")
    model.eval()
    device = model.head.weight.device
    ids = vocab.encode(prompt, unknown=unknown)
    if not ids:
        start = vocab.id_of("\n")
        ids = [start if start is not None else 0]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
    B = num_samples
    prime = torch.tensor([ids], device=device).expand(B, -1)  # (B, P)
    logits, state = model(prime[:, :-1]) if prime.size(1) > 1 else (None, None)
    state = state if state is not None else model.init_state(B, device)
    decoder = Decoder(model)
    token = prime[:, -1]  # (B,) the last prompt character is fed by the first step
    out = torch.empty(B, length, dtype=torch.long)
    decoders = [vocab.incremental_decoder() for _ in range(B)]
    for t in range(length):
        logits, state = decoder.step(token, state)
        token = pick(logits, temperature, top_k, top_p, gen)
        out[:, t] = token
        if on_text is not None:
            for row, tok in enumerate(token.tolist()):
                piece = decoders[row].decode(bytes([tok])) if decoders[row] else vocab.symbols[tok]
                if piece:
                    on_text(row, piece)
    return [vocab.decode(row) for row in out.tolist()]


def pick(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator
) -> torch.Tensor:
    """Next ids (B,) from logits (B, V): greedy at temperature 0, else a draw from the filtered,
    tempered softmax (Gumbel-max: argmax of logits/T + Gumbel noise is a softmax sample)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = top_p_filter(
        top_k_filter(apply_temperature(logits.float(), temperature), top_k), top_p
    )
    u = torch.rand(logits.shape, generator=gen).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    return (logits + gumbel).argmax(-1)
