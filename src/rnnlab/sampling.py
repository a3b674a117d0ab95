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

    Per layer one matrix-vector product on [x, h] with [W_ih; W_hh]; layer 0's input projection
    of every symbol is precomputed as a (V, G*H) table, so the embedding costs a row lookup.
    LSTM gates are reordered to (i, f, o, g) so one sigmoid covers the three sigmoid gates.
    With ``dtype=torch.bfloat16`` the recurrent weights are kept in bf16 (half the bytes to read
    per character, which is what bounds batch-1 speed); state and gate math stay in float32.
    """

    def __init__(self, model: CharLM, dtype: torch.dtype | None = None) -> None:
        c = model.config
        self.cell, self.H, self.L = c.cell, c.hidden_size, c.num_layers
        H = self.H
        p = {n: t.detach() for n, t in model.rnn.named_parameters()}
        if self.cell == "lstm":  # PyTorch's (i, f, g, o) -> (i, f, o, g)
            order = torch.cat(
                [torch.arange(2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
            ).to(p["bias_ih_l0"].device)
            p = {n: t.index_select(0, order) for n, t in p.items()}
        wd = dtype or p["weight_hh_l0"].dtype
        gru = self.cell == "gru"
        with torch.no_grad():
            emb = model.embedding.weight.detach()
            self.table = emb @ p["weight_ih_l0"].T + p["bias_ih_l0"]  # (V, G*H)
            if not gru:
                self.table += p["bias_hh_l0"]
            # every weight (N, K): out = W @ x
            self.w_hh = [p[f"weight_hh_l{i}"].to(wd).contiguous() for i in range(self.L)]
            self.w_ih = [None] + [p[f"weight_ih_l{i}"].to(wd) for i in range(1, self.L)]
            self.w_cat = [None] + [  # (G*H, 2H): W @ [x; h]
                torch.cat([p[f"weight_ih_l{i}"], p[f"weight_hh_l{i}"]], 1).to(wd).contiguous()
                for i in range(1, self.L)
            ]
            self.b = [p[f"bias_ih_l{i}"] + p[f"bias_hh_l{i}"] for i in range(self.L)]
            self.b_ih = [p[f"bias_ih_l{i}"] for i in range(self.L)]
            self.b_hh = [p[f"bias_hh_l{i}"] for i in range(self.L)]
            self.head_w = model.head.weight.detach().T.contiguous()  # (H, V)
            self.head_b = model.head.bias.detach().clone()

    @staticmethod
    def _matvec(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, K) -> (B, N) through w (N, K); at batch 1 a plain matrix-vector product."""
        x = x.to(w.dtype)
        return torch.mv(w, x[0]).unsqueeze(0) if x.size(0) == 1 else torch.mm(x, w.T)

    def step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Args:
            token: (B,) int64 ids of the current characters.
            state: as CharLM's, each (L, B, H).

        Returns:
            logits (B, V) for the next character, and the new state.
        """
        layers = [list(s.unbind(0)) for s in state]
        logits = self.advance(token, layers)
        return logits, tuple(torch.stack(s) for s in layers)

    def advance(self, token: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """``step`` on per-layer lists ``[hs]`` or ``[hs, cs]``, updated in place: the hot loop
        of generation, written for few tensor operations per character."""
        H, hs, mv = self.H, layers[0], self._matvec
        x = None
        for i in range(self.L):
            h = hs[i]
            if self.cell == "gru":
                gi = (
                    torch.index_select(self.table, 0, token)
                    if i == 0
                    else self.b_ih[i] + mv(self.w_ih[i], x)
                )  # (B, 3H)
                gh = self.b_hh[i] + mv(self.w_hh[i], h)
                rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
                n = torch.tanh(gi[:, 2 * H :] + rz[:, :H] * gh[:, 2 * H :])
                h = torch.addcmul(n, rz[:, H:], h - n)  # (1 - z) * n + z * h
            else:
                if i == 0:
                    g = torch.index_select(self.table, 0, token) + mv(self.w_hh[0], h)
                else:
                    g = self.b[i] + mv(self.w_cat[i], torch.cat([x, h], 1))  # (B, G*H)
                if self.cell == "lstm":
                    sig = torch.sigmoid(g[:, : 3 * H])  # i, f, o
                    c = torch.addcmul(
                        sig[:, H : 2 * H] * layers[1][i], sig[:, :H], torch.tanh(g[:, 3 * H :])
                    )
                    h = sig[:, 2 * H :] * torch.tanh(c)
                    layers[1][i] = c
                else:
                    h = torch.tanh(g) if self.cell == "rnn" else torch.relu(g)
            hs[i] = h
            x = h
        return torch.addmm(self.head_b, x, self.head_w)  # (B, V)


# --- generation -------------------------------------------------------------------------------


@torch.inference_mode()
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
    dtype: torch.dtype | None = None,
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
        dtype: torch.bfloat16 keeps the recurrent weights in bf16 for speed (see Decoder);
            None keeps the model's own dtype.

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
    decoder = Decoder(model, dtype)
    layers = [list(s.unbind(0)) for s in state]
    token = prime[:, -1]  # (B,) the last prompt character is fed by the first step
    tokens = []
    decoders = [vocab.incremental_decoder() for _ in range(B)]
    plain = temperature > 0 and top_k == 0 and top_p >= 1.0
    block = 256
    for t in range(length):
        logits = decoder.advance(token, layers)  # (B, V)
        if plain:
            # Gumbel-max with the temperature folded into the noise:
            # argmax(l / T + G) == argmax(l + T * G); noise drawn a block of steps at a time
            if t % block == 0:
                noise = temperature * gumbel((min(block, length - t), *logits.shape), gen)
                noise = noise.to(device)
            token = (logits + noise[t % block]).argmax(-1)
        else:
            token = pick(logits, temperature, top_k, top_p, gen)
        tokens.append(token)
        if on_text is not None:
            for row, tok in enumerate(token.tolist()):
                piece = decoders[row].decode(bytes([tok])) if decoders[row] else vocab.symbols[tok]
                if piece:
                    on_text(row, piece)
    out = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in range(B)]
    return [vocab.decode(row) for row in out]


def gumbel(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise: -log(-log(U)), U ~ Uniform(0, 1)."""
    u = torch.rand(shape, generator=gen).clamp_(1e-20, 1.0)
    return -torch.log(-torch.log(u))


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
