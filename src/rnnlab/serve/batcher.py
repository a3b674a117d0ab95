"""One batched stepping loop shared by every generation request in flight.

Each sample being generated is a row of one batch: a request joins at the next step (its prompt
primed by one forward pass), leaves when it has its length, runs out of time, or its client goes
away. One step of a batch of 64 costs little more than a step of 1 on a CPU, so many clients
share the machine instead of queueing. Every request draws its noise from its own seeded
generator, so a seed gives the same text alone or beside others. Imports model, cells, vocab.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..cells import StepDecoder
from ..model import CharLM
from ..vocab import Vocab

LN2 = math.log(2.0)
TOP = 5  # guesses shown per character (as `rnnlab viz`)


@dataclass
class Job:
    """One request: ``num_samples`` rows that start from the same prompt.

    ``emit`` is called with each event (a dict): in the batcher thread, or, when the batcher
    has a ``post`` (the server's ``loop.call_soon_threadsafe``), in the thread ``post`` runs it.
    Events: ``{"type": "token", "sample", "text", ["surprise_bits", "top5"], ["logprob",
    "top_logprobs"]}`` and, last, ``{"type": "done", "finish_reason", "produced"}``.
    """

    ids: list[int]  # the prompt (at least one id)
    num_samples: int
    length: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    details: bool
    deadline: float  # time.monotonic() after which its rows stop
    emit: Callable[[dict[str, Any]], None]
    logprobs: int = 0  # each token's log-probability (nats) and the K most likely, when K > 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    # filled in by the batcher
    produced: int = 0
    generator: torch.Generator | None = None
    decoders: list[Any] = field(default_factory=list)
    finish_reason: str | None = None

    def cancel(self) -> None:
        """Called by the server when the client disconnects: the rows leave at the next step."""
        self.cancelled.set()


class Batcher:
    """Owns a model's step decoder and a thread that steps every active row together.

    Example:
        >>> b = Batcher(model, vocab, max_rows=64); b.start()
        >>> b.submit(job)            # from any thread; events arrive through job.emit
        >>> b.close()
    """

    def __init__(
        self,
        model: CharLM,
        vocab: Vocab,
        max_rows: int = 64,
        post: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        """Args:
        model, vocab: what generates.
        max_rows: the most rows (samples in flight) the batch holds.
        post: runs a function in the consumers' thread (an event loop's call_soon_threadsafe):
            a step's events then cross threads in one hand-over, not one per row.
        """
        self.model = model.eval()
        self.post = post
        self._outbox: list[tuple[Job, dict[str, Any]]] = []
        self.vocab = vocab
        self.max_rows = max_rows
        # float32 weights: the step is then exact (a seed gives the same text whatever the batch)
        self.decoder = StepDecoder.from_model(self.model, None)
        self.device = model.head.weight.device
        self._pending: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._reserved = 0  # rows admitted or waiting to be: what the stream limit counts
        self._jobs: list[Job] = []  # the active jobs, in row order
        self._layers: list[list[torch.Tensor]] = []  # [hs] or [hs, cs], each (B, H) per layer
        self._tokens = torch.zeros(0, dtype=torch.long)  # (B,) the character each row feeds next
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.steps = 0  # batched steps taken (for /health and tests)

    # --- called from other threads ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rnnlab-batcher", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._pending.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reserve(self, rows: int) -> bool:
        """Claim ``rows`` rows of the batch; False when that would pass ``max_rows``."""
        with self._lock:
            if self._reserved + rows > self.max_rows:
                return False
            self._reserved += rows
            return True

    def submit(self, job: Job) -> None:
        """Queue a job whose rows were reserved; it joins the batch at the next step."""
        self._pending.put(job)

    @property
    def rows_in_flight(self) -> int:
        with self._lock:
            return self._reserved

    # --- the batcher thread --------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            try:
                self._admit(block=not self._jobs)
                if self._jobs:
                    self._step()
            except Exception as e:  # a bug: fail the requests in flight, keep serving
                for job in self._jobs:
                    self._send(job, {"type": "error", "error": f"{type(e).__name__}: {e}"})
                self._release(list(range(len(self._jobs))), reason=None)
            self._flush()

    def _send(self, job: Job, event: dict[str, Any]) -> None:
        self._outbox.append((job, event))

    def _flush(self) -> None:
        """Hand this step's events over: all at once through ``post``, or one by one."""
        out, self._outbox = self._outbox, []
        if not out:
            return
        if self.post is None:
            for job, event in out:
                job.emit(event)
        else:
            self.post(lambda: [job.emit(event) for job, event in out])

    def _admit(self, block: bool) -> None:
        while True:
            try:
                job = self._pending.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return
            if job is None:  # close()
                return
            block = False
            if job.cancelled.is_set():
                self._finish(job, "cancelled")
                continue
            self._join(job)

    @torch.inference_mode()
    def _join(self, job: Job) -> None:
        """Prime the prompt (one forward pass at batch 1) and append the job's rows."""
        n = job.num_samples
        job.generator = torch.Generator().manual_seed(job.seed)
        job.decoders = [self.vocab.incremental_decoder() for _ in range(n)]
        prime = torch.tensor([job.ids], device=self.device)  # (1, P)
        if prime.size(1) > 1:
            _, state = self.model(prime[:, :-1])
        else:
            state = self.model.init_state(1, self.device)
        rows = [[h.expand(n, -1).contiguous() for h in s.unbind(0)] for s in state]  # (n, H)
        if not self._jobs:
            self._layers = rows
            self._tokens = prime[0, -1:].expand(n).clone()
        else:
            self._layers = [
                [torch.cat([old, new]) for old, new in zip(olds, news, strict=True)]
                for olds, news in zip(self._layers, rows, strict=True)
            ]
            self._tokens = torch.cat([self._tokens, prime[0, -1:].expand(n)])
        self._jobs.append(job)
        if job.length == 0:
            self._release([len(self._jobs) - 1], "length")

    @torch.inference_mode()
    def _step(self) -> None:
        jobs = self._jobs
        counts = [j.num_samples for j in jobs]
        logits = self.decoder.advance(self._tokens, self._layers).float()  # (B, V)
        B, V = logits.shape
        temp = torch.tensor([j.temperature for j in jobs]).repeat_interleave(torch.tensor(counts))
        greedy = temp == 0
        # each job's own generator: (n, V) uniforms per step, whoever else is in the batch
        u = torch.cat([torch.rand((j.num_samples, V), generator=j.generator) for j in jobs])
        noise = -torch.log(-torch.log(u.clamp_(1e-20, 1.0)))  # Gumbel(0, 1), (B, V)
        scores = logits / torch.where(greedy, 1.0, temp)[:, None]
        scores = self._filter(scores, jobs, counts)
        tokens = (scores + noise.masked_fill(greedy[:, None], 0.0)).argmax(-1)  # (B,)
        self._tokens = tokens
        self.steps += 1

        detail_rows = any(j.details for j in jobs)
        k = max(j.logprobs for j in jobs)
        if detail_rows or k:  # the model's own distribution (untempered), as `rnnlab viz` shows
            logp = logits.log_softmax(-1)  # (B, V)
            chosen = logp.gather(1, tokens[:, None])[:, 0]  # (B,)
            surprise = (-chosen / LN2).tolist()
            top_logp, top_ids = logp.topk(min(max(TOP, k), V), -1)  # (B, max(5, K))
            top_p, top_ids = top_logp[:, :TOP].exp().tolist(), top_ids.tolist()
            top_logp, chosen = top_logp.tolist(), chosen.tolist()
        token_list = tokens.tolist()
        now = time.monotonic()
        done, row = [], 0
        for j_index, job in enumerate(jobs):
            for k in range(job.num_samples):
                tok = token_list[row]
                dec = job.decoders[k]
                piece = dec.decode(bytes([tok])) if dec else self.vocab.symbols[tok]
                event = {"type": "token", "sample": k, "text": piece}
                if job.details:
                    event["surprise_bits"] = round(surprise[row], 4)
                    event["top5"] = [
                        [self.symbol(i), round(p, 4)]
                        for i, p in zip(top_ids[row][:TOP], top_p[row], strict=True)
                    ]
                if job.logprobs:
                    event["logprob"] = chosen[row]
                    event["top_logprobs"] = [
                        [self.symbol(i), lp]
                        for i, lp in zip(
                            top_ids[row][: job.logprobs], top_logp[row][: job.logprobs], strict=True
                        )
                    ]
                self._send(job, event)
                row += 1
            job.produced += 1
            if job.cancelled.is_set():
                done.append((j_index, "cancelled"))
            elif job.produced >= job.length:
                done.append((j_index, "length"))
            elif now > job.deadline:
                done.append((j_index, "time_limit"))
        for reason in ("cancelled", "length", "time_limit"):
            which = [i for i, r in done if r == reason]
            if which:
                self._release(which, reason)

    def symbol(self, i: int) -> str:
        """A symbol as text: the character, or in byte mode the byte as U+00XX (for display)."""
        s = self.vocab.symbols[i]
        return s if isinstance(s, str) else chr(s)

    @staticmethod
    def _filter(scores: torch.Tensor, jobs: list[Job], counts: list[int]) -> torch.Tensor:
        """Per-row top-k then top-p (as sampling.top_k_filter / top_p_filter, row by row)."""
        B, V = scores.shape
        if all((j.top_k <= 0 or j.top_k >= V) and j.top_p >= 1.0 for j in jobs):
            return scores
        reps = torch.tensor(counts)
        k = torch.tensor([j.top_k if 0 < j.top_k < V else V for j in jobs]).repeat_interleave(reps)
        p = torch.tensor([j.top_p for j in jobs]).repeat_interleave(reps)
        sorted_scores, order = scores.sort(dim=-1, descending=True, stable=True)  # (B, V)
        drop = torch.arange(V)[None, :] >= k[:, None]  # beyond the k best: exactly k kept
        probs = sorted_scores.masked_fill(drop, float("-inf")).softmax(-1)
        nucleus = (probs.cumsum(-1) - probs >= p[:, None]) & (p[:, None] < 1.0)
        drop_sorted = drop | nucleus
        dropped = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return scores.masked_fill(dropped, float("-inf"))

    def _release(self, indices: list[int], reason: str | None) -> None:
        """Remove jobs (by position) and their rows; tell each job why it ended."""
        gone = set(indices)
        keep_rows, row = [], 0
        for i, job in enumerate(self._jobs):
            if i not in gone:
                keep_rows.extend(range(row, row + job.num_samples))
            row += job.num_samples
        index = torch.tensor(keep_rows, dtype=torch.long)
        self._layers = [[t.index_select(0, index) for t in s] for s in self._layers]
        self._tokens = self._tokens.index_select(0, index)
        ended = [self._jobs[i] for i in sorted(gone)]
        self._jobs = [j for i, j in enumerate(self._jobs) if i not in gone]
        for job in ended:
            self._finish(job, reason)

    def _finish(self, job: Job, reason: str | None) -> None:
        with self._lock:
            self._reserved -= job.num_samples
        if reason is not None:
            job.finish_reason = reason
            self._send(job, {"type": "done", "finish_reason": reason, "produced": job.produced})
