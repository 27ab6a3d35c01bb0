"""torchrun: 2 CPU processes (DDP, gloo) reach the accuracy of 1 process (slow: excluded by
default; run with -m slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def _torchrun(nproc: int, prepared: Path, out: Path, port: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(port), "-m", "dlprep", "-q", "train-baseline", "mlp",
           str(prepared), "--epochs", "4", "--device", "cpu", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == str(out)  # printed once, by rank 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one_within_a_point(tmp_path: Path) -> None:
    from dlprep.cache import Cache
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe

    prepared = prepare(find_recipe("mnist-sample"), Cache.open(tmp_path / "cache"),
                       fetch=FetchOptions(offline=True))
    one = _torchrun(1, prepared, tmp_path / "one", 29631)
    two = _torchrun(2, prepared, tmp_path / "two", 29632)
    assert one["world_size"] == 1 and two["world_size"] == 2 and "DDP" in two["device"]
    assert two["epochs"][0]["steps"] == one["epochs"][0]["steps"]  # same global batches
    assert round(100 * abs(one["final"]["accuracy"] - two["final"]["accuracy"]), 6) <= 1.0
