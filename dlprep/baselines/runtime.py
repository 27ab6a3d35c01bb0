"""Where a run executes: device, seeds, threads and (under ``torchrun``) the process group."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DlprepError, require


@dataclass
class Runtime:
    """Device and process-group facts of one training process (rank 0 writes the outputs)."""

    device: Any
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_true(self, flag: bool) -> bool:
        """True on every rank only when ``flag`` is true on every rank (a collective)."""
        if not self.distributed:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([0.0 if flag else 1.0])
        dist.all_reduce(t)
        return bool(t.item() == 0.0)

    def any_true(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a collective)."""
        return self.any_of(flag)[0]

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        """For each flag: true on any rank (one collective for all of them)."""
        if not self.distributed:
            return tuple(bool(f) for f in flags)
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if f else 0.0 for f in flags])
        dist.all_reduce(t)
        return tuple(bool(v > 0) for v in t.tolist())

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def start_runtime(device: str = "auto", threads: int | None = None) -> Runtime:
    """Pick the device (``auto``: CUDA when present) and join the ``torchrun`` process group when
    ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA). ``threads``: CPU threads (default
    :func:`cpu_threads`)."""
    torch = require("torch", "torch")
    if device not in {"auto", "cpu", "cuda"}:
        raise DlprepError(f"--device {device!r}: must be auto, cpu or cuda")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise DlprepError("--device cuda: no CUDA device is available (use --device cpu)")
    use_cuda = has_cuda and device in {"auto", "cuda"}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            owns = True
    if not use_cuda:  # the cores of this machine are shared by its local processes only
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(threads or cpu_threads(local))
    return Runtime(device=dev, rank=rank, world_size=world, owns_group=owns)


def cpu_threads(world_size: int = 1) -> int:
    """Intra-op threads per process: the cores this process may use, shared by the
    ``world_size`` processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``), less the cores
    other work keeps busy (1-minute load average). Oversubscribed OpenMP threads spin and can
    make training 10x slower on a busy machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    share = max(1, cores // max(1, world_size))
    try:
        idle = cores - int(round(os.getloadavg()[0]))
    except OSError:  # pragma: no cover
        idle = cores
    return max(1, min(share, idle, 8))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; on CPU the run is then bit-for-bit repeatable."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def shard_batches(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, shuffle: bool = True) -> list[np.ndarray]:
    """Index batches of one epoch for ``rank``, from the loader's sharding
    (``dlprep.data.order.shard_positions``: the ``(seed, epoch)`` permutation dealt round-robin).

    Each rank's batch holds ``batch_size // world_size`` samples, so the k-th batches of all
    ranks together are exactly the k-th global batch of a one-process run; the ragged tail is
    dropped when there is more than one batch, so every rank runs the same number of steps.
    """
    from ..data.order import shard_positions

    per_rank = max(1, batch_size // world_size)
    mine = shard_positions(n, shuffle=shuffle, seed=seed, epoch=epoch, shard=rank,
                           num_shards=world_size)
    full = (n // world_size) // per_rank
    batches = [mine[i * per_rank:(i + 1) * per_rank] for i in range(full)]
    if full == 0 and n // world_size > 0:
        batches = [mine[:n // world_size]]
    return batches
