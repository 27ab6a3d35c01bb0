"""``--compare AXIS=V1,V2,...``: the same run (same seed, same data) once per value of one
option, with one side-by-side plot of the curves and a table of the results."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any

from ..errors import DlprepError
from .config import TrainConfig, make_config
from .data import load_data


def parse_compare(spec: str) -> tuple[str, list[str]]:
    """``"activation=relu,tanh"`` -> ``("activation", ["relu", "tanh"])``."""
    axis, sep, values = spec.partition("=")
    axis = axis.strip().replace("-", "_")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not axis or len(items) < 2:
        raise DlprepError(f"--compare {spec!r}: use OPTION=V1,V2[,...], e.g. "
                          f"activation=relu,tanh,sigmoid or cell=rnn,lstm")
    return axis, items


def _typed(axis: str, value: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    allowed = sorted(set(fields) - {"family", "dataset", "out", "cache_dir", "offline",
                                    "progress", "extra", "judge", "device"})
    if axis not in allowed:
        raise DlprepError(f"--compare: cannot vary {axis!r}; choose one of {', '.join(allowed)}")
    kind = str(fields[axis].type)
    try:
        if "bool" in kind:
            if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return value.lower() in {"true", "1", "yes"}
        if "int" in kind:
            return int(value)
        if "float" in kind:
            return float(value)
    except ValueError as exc:
        raise DlprepError(f"--compare {axis}={value!r}: not a valid {kind}") from exc
    return value


def compare_variants(family: str, dataset: Any, axis: str, values: list[str], **options: Any
                     ) -> dict[str, Any]:
    """Train ``family`` once per value of option ``axis`` (same seed and data); write
    ``compare.png`` (curves side by side), ``compare.md`` (table) and ``compare.json`` under
    ``out`` (one sub-folder per variant). Returns ``{"axis", "runs": [{value, metrics}], ...}``."""
    from .run import train

    typed = [_typed(axis, v) for v in values]
    if axis in options:
        raise DlprepError(f"--compare {axis}=...: do not also pass --{axis.replace('_', '-')}")
    for value in typed:  # every variant's options are checked before the first one trains
        make_config(family, "", {**options, axis: value})
    data = load_data(dataset, cache_dir=options.get("cache_dir"),
                     offline=bool(options.get("offline")),
                     split_val=float(options.get("split_val", 0.1)),
                     seed=int(options.get("seed", 0)))
    out = Path(options.pop("out", None) or _default_out(options.get("cache_dir"), data.name,
                                                        family, axis))
    runs = []
    for raw, value in zip(values, typed, strict=True):
        m = train(family, data, **options, **{axis: value}, out=str(out / f"{axis}-{raw}"))
        runs.append({"value": raw, "metrics": m})
    if not runs or "out" not in runs[0]["metrics"]:  # not rank 0 under torchrun
        return {"axis": axis, "runs": runs}
    from .plots import plot_compare

    plot_compare([(f"{axis}={r['value']}", r["metrics"]) for r in runs], out / "compare.png",
                 title=f"{family} on {data.name}: {axis} compared (seed "
                       f"{options.get('seed', 0)})")
    table = compare_table(axis, runs)
    (out / "compare.md").write_text(table + "\n", encoding="utf-8")
    summary = {"axis": axis, "family": family, "dataset": data.name, "out": str(out),
               "table": table, "runs": [{"value": r["value"], "final": r["metrics"]["final"],
                                         "out": r["metrics"]["out"]} for r in runs]}
    (out / "compare.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {**summary, "runs": runs}


def compare_table(axis: str, runs: list[dict[str, Any]]) -> str:
    """A Markdown table: variant, test metric, last train/eval loss, epochs, seconds."""
    metric = runs[0]["metrics"]["metric"]
    lines = [f"| {axis} | test {metric} | train loss (last) | eval loss (last) | epochs "
             f"| seconds |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        m = r["metrics"]
        last = m["epochs"][-1] if m["epochs"] else {}
        ev = last.get(f"{m['eval_split']}_loss", float("nan"))
        lines.append(f"| {r['value']} | {m['final'][metric]:.4f} | "
                     f"{last.get('train_loss', float('nan')):.4f} | {ev:.4f} | "
                     f"{len(m['epochs'])} | {m['train_seconds']:.1f} |")
    return "\n".join(lines)


def _default_out(cache_dir: str | None, name: str, family: str, axis: str) -> Path:
    from ..cache import Cache

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "._+-" else "_" for ch in Path(name).stem)
    return Cache.open(cache_dir).runs_dir / f"{safe}-{family}-compare-{axis}-{stamp}"
