"""``train(family, dataset, **options)``: one baseline run from data to metrics.json,
checkpoint and plots (rank 0 writes; every rank trains its shard under torchrun)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import DlprepError, require
from .config import TrainConfig, make_config, with_defaults
from .data import BaselineData, load_data


@dataclasses.dataclass
class TrainedRun:
    """What :func:`train_run` gives back: the ``metrics`` written to ``metrics.json`` and the
    trained ``modules`` by name (as saved in ``checkpoint.pt``; the same objects, in memory)."""

    metrics: dict[str, Any]
    modules: dict[str, Any]


def train(family: str, dataset: str | os.PathLike[str] | BaselineData, **options: Any
          ) -> dict[str, Any]:
    """Train the ``family`` baseline on ``dataset`` (name, .h5 path or :class:`BaselineData`).

    Options are the fields of :class:`~dlprep.baselines.config.TrainConfig` (``epochs``,
    ``batch_size``, ``lr``, ``seed``, ``device``, ``max_minutes``, ``out``, ``split_val``,
    ``activation``, ``cell``, ``variational``, ``cache_dir``, ``offline``, ...). Returns the
    metrics written to ``<out>/metrics.json`` (``final`` holds the test metric). Raises
    ``DlprepError`` for bad options, a family that does not fit the data, an unusable
    ``judge`` or a training loss that stops being finite.
    """
    return train_run(family, dataset, **options).metrics


def train_run(family: str, dataset: str | os.PathLike[str] | BaselineData, **options: Any
              ) -> TrainedRun:
    """:func:`train`, also returning the trained modules (no need to reload the checkpoint)."""
    name = dataset.name if isinstance(dataset, BaselineData) else str(dataset)
    cfg = make_config(family, name, options)
    require("torch", "torch")
    from .runtime import seed_everything, start_runtime

    rt = start_runtime(cfg.device, cfg.threads)
    try:
        t0 = time.monotonic()
        data = load_data(dataset, cache_dir=cfg.cache_dir, offline=cfg.offline,
                         split_val=cfg.split_val, seed=cfg.seed)
        data.check_family(family)
        if cfg.judge:
            check_judge(cfg.judge, data)
        lm = family == "rnn" and data.layout == "tokens" and not data.labelled
        cfg = with_defaults(cfg, language_model=lm)
        seed_everything(cfg.seed)
        task = importlib.import_module(f"dlprep.baselines.{family}").make_task(data, cfg, rt)
        from .loop import fit

        result = fit(task, cfg, rt)
        extra = task.extra_results()
        metrics = _metrics(task, cfg, data, result, extra, rt)
        if rt.is_main:
            out = Path(cfg.out) if cfg.out else _default_out(cfg, data)
            out.mkdir(parents=True, exist_ok=True)
            metrics["plots"] = _write_outputs(task, cfg, data, metrics, out)
            metrics["wall_seconds"] = round(time.monotonic() - t0, 3)
            metrics["out"] = str(out)
            _write_json(out / "metrics.json", metrics)
        else:
            metrics["wall_seconds"] = round(time.monotonic() - t0, 3)
        return TrainedRun(metrics=metrics, modules=task.modules())
    finally:
        rt.close()


def check_judge(judge: str, data: BaselineData) -> None:
    """Refuse, before training, a ``--judge`` that is not an image classifier of ``data``'s
    image shape (a bad file, or a family outside ``FAMILIES``, is refused by the loader)."""
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(judge)
    if ckpt.family not in {"mlp", "cnn", "rnn"} or ckpt.info.get("layout") != "image":
        raise DlprepError(f"--judge {judge}: a {ckpt.family} run on {ckpt.info.get('layout')} "
                          f"data is not an image classifier (use an mlp, cnn or rnn run)")
    shape = list(ckpt.info.get("shape") or [])
    if shape != list(data.shape):
        raise DlprepError(f"--judge {judge}: classifies {shape} images, {data.name} has "
                          f"{list(data.shape)}")


def _default_out(cfg: TrainConfig, data: BaselineData) -> Path:
    from ..cache import Cache

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    variant = {"mlp": cfg.activation, "cnn": cfg.activation, "rnn": cfg.cell,
               "autoencoder": "vae" if cfg.variational else "ae", "gan": "dcgan"}[cfg.family]
    base = Path(data.name).stem if data.name.endswith((".h5", ".hdf5")) else data.name
    safe = "".join(ch if ch.isalnum() or ch in "._+-" else "_" for ch in base) or "dataset"
    return Cache.open(cfg.cache_dir).runs_dir / f"{safe}-{cfg.family}-{variant}-{stamp}"


def _metrics(task: Any, cfg: TrainConfig, data: BaselineData, result: dict[str, Any],
             extra: dict[str, Any], rt: Any) -> dict[str, Any]:
    import torch

    from .nets import count_parameters

    metric = task.metric
    metrics = {
        "family": cfg.family, "dataset": data.name, "metric": metric,
        "higher_is_better": task.higher_is_better,
        "config": cfg.to_json(), "model": task.spec(),
        "parameters": sum(count_parameters(m) for m in task.modules().values()),
        "data": {"layout": data.layout, "shape": list(data.shape), "classes": data.classes,
                 **{f"n_{k}": len(v) for k, v in data.splits.items()}, "source": data.source},
        "epochs": result["history"], "eval_split": result["eval_split"],
        "test": result["test"], "final": {metric: result["test"].get(metric)},
        **extra,
        "stopped_early": result["stopped_early"], "train_seconds": result["train_seconds"],
        "device": str(rt.device) + (f" x{rt.world_size} (DDP)" if rt.distributed else ""),
        "world_size": rt.world_size, "threads": torch.get_num_threads(),
        "versions": {"dlprep": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    guide = task.guide(metrics)
    if guide:
        metrics["guide"] = guide
    return metrics


def _write_outputs(task: Any, cfg: TrainConfig, data: BaselineData, metrics: dict[str, Any],
                   out: Path) -> list[str]:
    from .checkpoint import save_checkpoint
    from .plots import plot_losses

    info = {"layout": data.layout, "shape": list(data.shape), "classes": data.classes,
            "mean": None if data.mean is None else [float(v) for v in data.mean],
            "std": None if data.std is None else [float(v) for v in data.std],
            "vocab": data.vocab, "tokenizer": data.tokenizer, "metric": metrics["metric"],
            "final": metrics["final"]}
    save_checkpoint(out / "checkpoint.pt", family=cfg.family, modules=task.modules(),
                    spec=task.spec(), config=cfg.to_json(), info=info)
    plot_losses(metrics["epochs"], out / "loss.png", eval_split=metrics["eval_split"],
                metric=metrics["metric"],
                title=f"{cfg.family} on {data.name}: loss per epoch")
    return ["loss.png", *task.write_plots(out)]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=_json_default, allow_nan=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise DlprepError(f"cannot write {type(value).__name__} to metrics.json")
