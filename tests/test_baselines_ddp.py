"""torchrun: 2 CPU processes (DDP, gloo), on one node or on two (two torchrun launchers on
loopback, as on two machines), reach the accuracy of 1 process (slow: excluded by default; run
with -m slow); the ranks' batches partition each global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlprep.baselines.runtime import shard_batches

pytest.importorskip("torch")

TRAIN = ["train-baseline", "mlp", "--epochs", "4", "--device", "cpu"]


def _torchrun(nproc: int, prepared: Path, out: Path, port: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(port), "-m", "dlprep", "-q", *TRAIN, str(prepared),
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == str(out)  # printed once, by rank 0
    return json.loads((out / "metrics.json").read_text())


def _two_nodes(prepared: Path, out: Path, port: int) -> dict:
    """Two torchrun launchers of one process each (``--nnodes 2 --node-rank 0|1``), meeting at
    127.0.0.1:port as two machines would at the first one's address (docs/SCALING.md)."""
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank",
               str(node), "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "dlprep", "-q", *TRAIN, str(prepared),
               "--out", str(out)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, stdin=subprocess.DEVNULL,
                                      env=dict(os.environ, OMP_NUM_THREADS="1")))
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert outs[0][0].strip().splitlines()[-1] == str(out)  # node 0 holds rank 0
    assert str(out) not in outs[1][0]  # the other node prints nothing
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("world", [2, 3, 4])
def test_rank_batches_partition_the_global_batches(world: int) -> None:
    """What every rank of train-baseline trains on: disjoint shards whose k-th batches together
    are the k-th batch of one process, the same number of steps on every rank."""
    n, batch = 1000, 48
    one = shard_batches(n, batch, seed=3, epoch=2)
    ranks = [shard_batches(n, batch, seed=3, epoch=2, rank=r, world_size=world)
             for r in range(world)]
    assert len({len(b) for b in ranks}) == 1
    flat = np.concatenate([np.concatenate(b) for b in ranks])
    assert len(np.unique(flat)) == len(flat)  # no sample on two ranks
    for k, global_batch in enumerate(one[:len(ranks[0])]):
        together = np.concatenate([b[k] for b in ranks])
        if batch % world == 0:
            assert sorted(together) == sorted(global_batch)
        else:  # batch // world per rank: a slightly smaller global batch
            assert len(together) == world * (batch // world)


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


@pytest.mark.slow
def test_two_nodes_match_one_process(tmp_path: Path) -> None:
    from dlprep.cache import Cache
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe

    prepared = prepare(find_recipe("mnist-sample"), Cache.open(tmp_path / "cache"),
                       fetch=FetchOptions(offline=True))
    one = _torchrun(1, prepared, tmp_path / "one", 29633)
    two = _two_nodes(prepared, tmp_path / "two", 29634)
    assert two["world_size"] == 2 and "DDP" in two["device"]
    assert two["epochs"][0]["steps"] == one["epochs"][0]["steps"]
    assert round(100 * abs(one["final"]["accuracy"] - two["final"]["accuracy"]), 6) <= 1.0
