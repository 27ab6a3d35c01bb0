"""The one training loop every family shares: epochs of sharded batches, per-epoch evaluation,
an early stop on the time budget, and a progress bar per epoch (rank 0 only)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError
from .config import TrainConfig
from .data import BaselineData
from .runtime import Runtime, shard_batches


class Task:
    """One family's model(s) on one dataset; subclasses fill in the model-specific parts.

    ``metric`` names the family's metric (``accuracy``, ``mse``, ``bits_per_char``, ...);
    ``train_step`` takes the rank's index batch and returns losses (key ``loss`` first);
    ``evaluate`` returns ``loss`` and ``metric`` on a split.
    """

    metric = "loss"
    higher_is_better = False

    def __init__(self, data: BaselineData, cfg: TrainConfig, rt: Runtime) -> None:
        self.data = data
        self.cfg = cfg
        self.rt = rt

    # --- to implement -------------------------------------------------------------------
    def modules(self) -> dict[str, Any]:
        """The trained ``nn.Module``s by name (unwrapped from DDP), saved in the checkpoint."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """JSON-able arguments that rebuild :meth:`modules` (see ``checkpoint.build_modules``)."""
        raise NotImplementedError

    def n_train(self) -> int:
        return len(self.data.splits["train"])

    def train_step(self, index: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, split: str) -> dict[str, float]:
        raise NotImplementedError

    def write_plots(self, out_dir: Path) -> list[str]:
        """Family-specific PNGs (confusion matrix, reconstructions, samples); returns names."""
        return []

    def extra_results(self) -> dict[str, Any]:
        """Additional final figures for metrics.json (e.g. judged sample quality)."""
        return {}

    def guide(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What a good run of this family looks like, for families whose metric does not say it
        (GAN): ``line`` (printed), ``targets`` and ``met`` (the targets this run measured)."""
        return {}

    # --- shared helpers -----------------------------------------------------------------
    def wrap(self, module: Any) -> Any:
        """Move to the device and wrap in DDP when running under torchrun."""
        module = module.to(self.rt.device)
        if self.rt.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        return module


def _mean_across_ranks(rt: Runtime, values: dict[str, float]) -> dict[str, float]:
    if not rt.distributed or not values:
        return values
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / rt.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def fit(task: Task, cfg: TrainConfig, rt: Runtime) -> dict[str, Any]:
    """Train ``task`` for ``cfg.epochs`` (or until ``cfg.max_minutes``) and evaluate it.

    Returns ``history`` (per epoch: train losses, eval loss/metric, seconds), ``test``, the
    evaluation split's name, ``stopped_early`` and ``train_seconds``. A training loss that is
    not finite (on any rank) stops the run with ``DlprepError``: nothing is written.
    """
    from tqdm import tqdm

    from ..progress import progress_enabled

    start = time.monotonic()
    deadline = start + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    eval_split = "val" if "val" in task.data.splits else "test"
    history: list[dict[str, Any]] = []
    stopped = False
    epochs = int(cfg.epochs or 1)
    for epoch in range(epochs):
        t0 = time.monotonic()
        batches = shard_batches(task.n_train(), int(cfg.batch_size or 64), seed=cfg.seed,
                                epoch=epoch, rank=rt.rank, world_size=rt.world_size)
        if cfg.max_batches:
            batches = batches[:cfg.max_batches]
        sums: dict[str, float] = {}
        bar = tqdm(total=len(batches), desc=f"{cfg.family} epoch {epoch + 1}/{epochs}",
                   unit="batch", file=sys.stderr, leave=True, dynamic_ncols=True,
                   disable=not (progress_enabled(cfg.progress) and rt.is_main))
        steps = 0
        for index in batches:
            losses = task.train_step(index)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
            bar.update(1)
            if steps % 10 == 0 or steps == len(batches):
                bar.set_postfix({k: f"{v / steps:.4f}" for k, v in list(sums.items())[:2]})
            bad = next((k for k, v in losses.items() if not math.isfinite(v)), None)
            late, diverged = rt.any_of(time.monotonic() > deadline, bad is not None)
            if diverged:
                bar.close()
                raise _diverged(task, cfg, epoch, steps, bad, losses)
            if late:
                stopped = True
                break
        bar.close()
        train = _mean_across_ranks(rt, {f"train_{k}": v / max(steps, 1) for k, v in sums.items()})
        record: dict[str, Any] = {"epoch": epoch + 1, "steps": steps, **train}
        record.update({f"{eval_split}_{k}": v for k, v in task.evaluate(eval_split).items()})
        record["seconds"] = round(time.monotonic() - t0, 3)
        history.append(record)
        if stopped:
            break
    train_seconds = time.monotonic() - start
    test = task.evaluate("test")
    return {"history": history, "eval_split": eval_split, "test": test,
            "stopped_early": stopped, "train_seconds": round(train_seconds, 3)}


def _diverged(task: Task, cfg: TrainConfig, epoch: int, step: int, key: str | None,
              losses: dict[str, float]) -> DlprepError:
    where = f"epoch {epoch + 1}, step {step}"
    what = f"the training {key} became {losses[key]}" if key else \
        "the training loss stopped being finite on another process"
    return DlprepError(f"{cfg.family} on {task.data.name}: {what} at {where} (lr {cfg.lr}); "
                       f"nothing was written: lower --lr, or check the data for NaN/inf values")
