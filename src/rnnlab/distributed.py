"""Many processes (torchrun): where this process stands among the ranks of one training job,
and the few collectives the training loop needs. torchrun sets RANK, LOCAL_RANK and WORLD_SIZE;
alone, every collective is a no-op. Imports torch only.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes of one training job (1 of 1 alone).

    Every rank runs the same loop on its own share of the B streams; rank 0 alone writes the run
    directory, validates and shows progress. The collectives below are no-ops for one process.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's streams of the global batch."""
        share = batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def agree(self, values: list[float], device: torch.device) -> list[float]:
        """The maximum of each value over all ranks, known to every rank."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def from_main(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's values, known to every rank."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def object_from_main(self, obj: object) -> object:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of a value over all ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.item() / self.world

    def gather_rows(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The carried state of all ranks' streams, (L, B, H) each, in stream order."""
        if self.world == 1:
            return state
        out = []
        for s in state:
            parts = [torch.empty_like(s) for _ in range(self.world)]
            dist.all_gather(parts, s.contiguous())
            out.append(torch.cat(parts, 1))
        return tuple(out)


def distributed() -> Ranks:
    """Join the process group that torchrun describes in the environment (once; nccl when this
    process has a GPU, gloo otherwise), or report a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # left to the interpreter's teardown, gloo's worker threads can still hold tensors
        # when Python is gone and abort the process ("terminate called without an active
        # exception", SIGABRT; seen under load in tests/test_distributed.py): leave the group
        # while Python is whole (gloo only: nccl's teardown is collective, and a rank that
        # failed would leave the others waiting at exit)
        if not torch.cuda.is_available():
            atexit.register(_leave)
    return ranks


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_now(code: int) -> None:
    """End a rank that has nothing left to do (not rank 0, which reports and writes): leave the
    process group, flush, and exit without the interpreter's teardown. Under load, that teardown
    still aborted a rank about one time in ten after it had left the group ("terminate called
    without an active exception", SIGABRT: a C++ thread of torch's destroyed while joinable), and
    torchrun then killed rank 0 in the middle of its report."""
    import sys

    _leave()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
