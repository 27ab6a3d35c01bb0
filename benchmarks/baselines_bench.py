"""Baselines on the bundled real mnist-sample (4,000 train / 1,000 test, CPU) against the bars of
DESIGN.md section 2, and 1 vs 2 torchrun processes.

Each family trains with its defaults (``--max-minutes 2`` as a guard); the bars are checked and
a simple model measured in the same run is printed beside each figure (nearest class mean for
classifiers, the mean image for reconstruction MSE) as a ratio. VAE and GAN samples (1,000) are
judged by the cnn run. Usage:

    python benchmarks/baselines_bench.py [--families cnn,mlp,...] [--no-torchrun]
        [--torchrun-family mlp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlprep.baselines import train  # noqa: E402
from dlprep.baselines.data import load_data  # noqa: E402
from dlprep.cache import Cache  # noqa: E402
from dlprep.fetch.options import FetchOptions  # noqa: E402
from dlprep.prepare.core import prepare  # noqa: E402
from dlprep.recipes import find_recipe  # noqa: E402

BARS = {  # run name -> (family, options, what is checked)
    "cnn": ("cnn", {}),
    "mlp": ("mlp", {}),
    "rnn": ("rnn", {}),
    "autoencoder": ("autoencoder", {}),
    "vae": ("autoencoder", {"variational": True}),
    "gan": ("gan", {}),
}


def nearest_mean_accuracy(path: Path) -> float:
    """Accuracy of the nearest class-mean classifier on raw pixels (the simple reference)."""
    d = load_data(path)
    tr, te = d.splits["train"], d.splits["test"]
    x = tr.x.reshape(len(tr), -1).astype(np.float32) / 255
    means = np.stack([x[tr.y == k].mean(0) for k in range(len(d.classes))])
    xt = te.x.reshape(len(te), -1).astype(np.float32) / 255
    dist = ((xt[:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == te.y).mean())


def mean_image_mse(path: Path) -> float:
    """MSE of predicting every test image by the mean train image (pixels in [0, 1])."""
    d = load_data(path)
    mean = d.splits["train"].x.astype(np.float32).mean(0) / 255
    return float(((d.splits["test"].x.astype(np.float32) / 255 - mean) ** 2).mean())


def check(name: str, m: dict) -> tuple[str, bool]:
    f = m["final"]
    if name in ("cnn", "mlp", "rnn"):
        bar = {"cnn": 0.975, "mlp": 0.935, "rnn": 0.95}[name]
        return f"test accuracy {f['accuracy']:.2%} (bar >= {bar:.1%})", f["accuracy"] >= bar
    if name == "autoencoder":
        return f"test MSE {f['mse']:.4f} (bar <= 0.015)", f["mse"] <= 0.015
    j = m.get("judged_samples") or {}
    conf, ent = j.get("confident_fraction", 0.0), j.get("label_entropy_bits", 0.0)
    ok = conf >= 0.5 and ent >= 2.5
    extra = f", test MSE {f['mse']:.4f}" if "mse" in f else ""
    return (f"samples: {conf:.1%} with cnn confidence >= 0.9 (bar >= 50%), label entropy "
            f"{ent:.2f} bits (bar >= 2.5){extra}"), ok


def torchrun_compare(prepared: Path, family: str, epochs: int | None, out: Path) -> dict:
    """Final accuracy of 1 process vs ``torchrun --nproc-per-node 2`` (gloo, CPU)."""
    results = {}
    for nproc in (1, 2):
        run_out = out / f"torchrun-{family}-{nproc}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(29500 + nproc), "-m", "dlprep", "-q", "train-baseline",
               family, str(prepared), "--device", "cpu", "--out", str(run_out),
               *(["--epochs", str(epochs)] if epochs else [])]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"torchrun with {nproc} process(es) failed:\n{r.stderr[-3000:]}")
        m = json.loads((run_out / "metrics.json").read_text())
        results[nproc] = {"accuracy": m["final"]["accuracy"], "wall_seconds": round(wall, 1),
                          "device": m["device"]}
    diff = abs(results[1]["accuracy"] - results[2]["accuracy"])
    return {"family": family, "epochs": epochs or "default", "runs": results,
            "difference_points": round(100 * diff, 2), "ok": round(100 * diff, 6) <= 1.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(BARS), help="runs, comma-separated")
    ap.add_argument("--max-minutes", type=float, default=2.0, help="guard per run")
    ap.add_argument("--no-torchrun", action="store_true")
    ap.add_argument("--torchrun-family", default="cnn")
    ap.add_argument("--torchrun-epochs", type=int, default=None,
                    help="epochs of the torchrun runs (default: the family's default)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dlprep-baselines-bench-"))
    cache = Cache.open(tmp / "cache")
    prepared = prepare(find_recipe("mnist-sample"), cache,
                       fetch=FetchOptions(offline=True, progress=False))
    reference = {"nearest_mean_accuracy": nearest_mean_accuracy(prepared),
                 "mean_image_mse": mean_image_mse(prepared)}
    print(f"mnist-sample: {prepared}\nload average at start: {os.getloadavg()}")
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    if ("vae" in names or "gan" in names) and "cnn" not in names:
        names.insert(0, "cnn")
    rows, results, all_ok = [], {}, True
    for name in names:
        family, options = BARS[name]
        if name in ("vae", "gan"):
            options = {**options, "judge": str(tmp / "runs" / "cnn")}
        t0 = time.perf_counter()
        m = train(family, prepared, out=str(tmp / "runs" / name), max_minutes=args.max_minutes,
                  progress=False, **options)
        wall = time.perf_counter() - t0
        text, ok = check(name, m)
        all_ok &= ok
        metric, value = m["metric"], m["final"][m["metric"]]
        if metric == "accuracy":
            ratio = (1 - reference["nearest_mean_accuracy"]) / max(1 - value, 1e-9)
            ref = f"error {ratio:.1f}x lower than nearest class mean"
        elif metric == "mse":
            ratio = reference["mean_image_mse"] / max(value, 1e-12)
            ref = f"MSE {ratio:.1f}x lower than the mean image"
        else:
            ref = ""
        results[name] = {"final": m["final"], "judged": m.get("judged_samples"),
                         "epochs": len(m["epochs"]), "train_seconds": m["train_seconds"],
                         "wall_seconds": round(wall, 1), "stopped_early": m["stopped_early"],
                         "threads": m["threads"], "ok": ok}
        rows.append((name, text, f"{m['train_seconds']:.0f} s train / {wall:.0f} s wall, "
                     f"{len(m['epochs'])} epochs, {m['threads']} thread(s)"
                     + (" (stopped by --max-minutes)" if m["stopped_early"] else ""), ref,
                     "PASS" if ok else "FAIL"))
        print(f"{name:<12} {rows[-1][4]}  {text}; {rows[-1][2]}; {ref}", flush=True)
    out = {"reference": reference, "runs": results, "cpu": os.cpu_count(),
           "load_average_end": os.getloadavg()}
    if not args.no_torchrun:
        tr = torchrun_compare(prepared, args.torchrun_family, args.torchrun_epochs, tmp)
        out["torchrun"] = tr
        all_ok &= tr["ok"]
        r1, r2 = tr["runs"][1], tr["runs"][2]
        print(f"torchrun {tr['family']} ({tr['epochs']} epochs): 1 process {r1['accuracy']:.2%} "
              f"({r1['wall_seconds']} s), 2 processes {r2['accuracy']:.2%} "
              f"({r2['wall_seconds']} s): difference {tr['difference_points']} points "
              f"(bar <= 1) {'PASS' if tr['ok'] else 'FAIL'}")
    print("\n| run | result | time | vs simple reference | bar |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {' | '.join(r)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nall bars met: {all_ok} (outputs under {tmp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
