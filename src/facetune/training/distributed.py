"""Multi-process training with torch.distributed, as started by `torchrun`.

One global batch of `batch_size` samples is cut into micro-batches of `micro_batch`;
micro-batch k goes to rank k mod world, and each rank accumulates gradients over its
micro-batches before DistributedDataParallel averages them. The micro-batches are the
same whatever the number of processes, each with its own seeded augmentation and
dropout, so 2 processes × batch b train the same weights as 1 process × batch 2b
(BatchNorm statistics are per micro-batch in both). Changing the world size between
runs keeps the effective batch, and `--resume` works across it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..errors import FacetuneError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: Any) -> tuple[DistInfo, Any]:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on CUDA)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local), device


def shutdown(info: DistInfo) -> None:
    if info.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def broadcast_floats(values: list[float], info: DistInfo) -> list[float]:
    """Rank 0's values on every rank, so decisions such as early stopping agree."""
    if not info.active:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(t, 0)
    return t.tolist()


def all_reduce_sums(values: list[float], info: DistInfo) -> list[float]:
    """Sums over all ranks (training loss and accuracy counts for the log)."""
    if not info.active:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.active:
        import torch.distributed as dist

        dist.barrier()


def micro_batch_size(batch_size: int, micro_batch: int, world: int) -> tuple[int, int]:
    """(micro-batch size, accumulation steps per rank) for a global batch on `world` processes."""
    micro = micro_batch or max(1, batch_size // world)
    if batch_size % (micro * world):
        raise FacetuneError(f"--batch-size {batch_size} must be a multiple of micro-batch {micro} × {world} process(es)")
    return micro, batch_size // (micro * world)


class GlobalBatchSampler:
    """Like DistributedSampler, seeded per epoch with `set_epoch`, but it hands out whole
    micro-batches of shared global batches, so results do not depend on the world size.
    The last incomplete global batch is dropped."""

    def __init__(self, n: int, batch_size: int, micro: int, info: DistInfo, seed: int) -> None:
        self.n, self.batch_size, self.micro, self.info, self.seed = n, batch_size, micro, info, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def order(self) -> np.ndarray:
        import torch

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=gen).numpy()

    def __iter__(self) -> Iterator[tuple[int, list[tuple[int, np.ndarray]], np.ndarray]]:
        """Per global batch: (its index, this rank's [(micro index, sample indices)], all its indices)."""
        order = self.order()
        per = self.batch_size // self.micro
        for b in range(len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            mine = [(b * per + k, np.sort(batch[k * self.micro : (k + 1) * self.micro])) for k in range(per) if k % self.info.world == self.info.rank]
            yield b, mine, batch
