"""The web (WARC) builders and image decoding on Dask: a real LocalCluster of 2 worker processes
(started once for the module, reached with its scheduler address as ``--scheduler`` /
``DLPREP_SCHEDULER`` reach a cluster) and ``--workers 2`` (dlprep's own LocalCluster), on the
real samples; output identical to serial. (``import-images --workers 2`` end to end:
tests/test_images_import.py; ``fetch pets --workers 2``: tests/test_pets.py.)"""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli
from scale_shards import finished_shards, run_and_kill, same_prepared
from test_images_import import datasets, photo_tree  # noqa: F401 (a fixture)
from test_images_pipeline import png_bomb_header

from dlprep.formats.images import DecodeJob, ImageRef, ImageSpec, decode_many
from dlprep.prepare.image_shards import decode_plan, run_decode, shard_size
from dlprep.scale.manifest import part_path

pytest.importorskip("distributed")

WARCS = ("iana.warc.gz", "example.warc.gz", "example-wget-1-14.warc.gz", "example-wpull.warc.gz",
         "CC-MAIN-20250804083340-20250804113340-00340.offset667474763.warc.gz")


def _import(kind: str, cache: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    proc = invoke_cli(f"import-{kind}", *args, cache_dir=cache, env=env)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _same(a: Path, b: Path) -> None:
    same_prepared(a, b, ("skipped", "duplicates", "tokenizer", "config"))


def _executor() -> str:
    from dlprep.scale import last_timings

    return str(last_timings()["executor"])


def test_warc_import_on_a_cluster_matches_serial(tmp_path: Path, realdata: Path,
                                                 scheduler: str) -> None:
    pytest.importorskip("resiliparse")
    files = [str(realdata / "warc" / n) for n in WARCS]
    args = (*files, "--name", "web", "--dedupe", "minhash", "--tokenizer", "word")
    serial = _import("warc", tmp_path / "c1", *args)
    assert _executor() == "this process"
    cluster = _import("warc", tmp_path / "c2", *args, env={"DLPREP_SCHEDULER": scheduler})
    assert _executor() == f"the Dask scheduler {scheduler}"
    assert serial.name == cluster.name  # the scheduler is not part of the configuration
    _same(serial, cluster)
    with h5py.File(serial, "r") as f:
        files_seen = {v.decode() for v in f["meta/file"][()]}
        assert len(files_seen) >= 3 and len(f["offsets"]) > 10


def test_image_import_on_a_cluster_matches_serial(tmp_path: Path, photo_tree: Path,  # noqa: F811
                                                  scheduler: str) -> None:
    for i in range(14):  # 20 listed files: 1 per shard, several shards per worker
        shutil.copy(photo_tree / "space" / "rocket.jpg", photo_tree / "space" / f"r{i:02d}.jpg")
    assert shard_size(20) == 1
    args = ("--name", "photos", "--size", "24", "--dedupe", "exact")
    serial = _import("images", tmp_path / "c1", str(photo_tree), *args)
    cluster = _import("images", tmp_path / "c2", str(photo_tree), *args, "--scheduler",
                      scheduler)
    assert _executor() == f"the Dask scheduler {scheduler}"
    _same(serial, cluster)
    with h5py.File(serial, "r") as f:
        assert f["images"].shape == (6, 24, 24, 3)  # 14 copies dropped as duplicates, 2 skipped
        assert len(f.attrs["skipped"]) > 2 and "r13.jpg" in f.attrs["duplicates"]
    # a gzipped tar: its members are unpacked once into the parts folder, which every worker
    # reads
    tgz = tmp_path / "photos.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(photo_tree, "photos")
    packed = _import("images", tmp_path / "c3", str(tgz), *args, "--scheduler", scheduler)
    assert np.array_equal(h5py.File(packed, "r")["images"][()],
                          h5py.File(serial, "r")["images"][()])
    assert not [p for p in (tmp_path / "c3" / "prepared").rglob("*.parts")]


def test_decode_shards_on_a_cluster_match_one_process(tmp_path: Path, realdata: Path,
                                                       scheduler: str) -> None:
    """Inline bytes (a bomb header) travel in the spec; errors and pixels as decode_many's."""
    from dlprep.scale import run_shards

    names = sorted(p.name for p in (realdata / "images").glob("*.jpg"))
    jobs = [DecodeJob(ImageRef(n, str(realdata / "images" / n))) for n in names[:3]]
    jobs += [DecodeJob(ImageRef("bomb.png", data=png_bomb_header()))]
    jobs += [DecodeJob(ImageRef(n, str(realdata / "images" / n))) for n in names[3:]]
    spec = ImageSpec(20, 28, policy="pad")
    want = list(decode_many(jobs, spec, hash_mode="perceptual"))
    plan = decode_plan(jobs, spec, hash_mode="perceptual")
    assert len(plan) == len(jobs)
    run = run_shards(plan, run_decode, scheduler=scheduler, parts_dir=tmp_path)
    errors = [e for s in run.stats for e in s["errors"]]
    hashes = [h for s in run.stats for h in s["hashes"]]
    got = []
    for s in plan:
        with open(part_path(tmp_path, s.id), "rb") as fh:
            got += list(np.load(fh, allow_pickle=False))
    assert errors == [w.error for w in want] and errors[3] and not errors[0]
    assert hashes == [w.content_hash for w in want]
    assert [g.tobytes() for g in got] == [w.image.tobytes() for w in want if w.image is not None]


def test_decode_to_writer_with_two_workers_uses_dask(tmp_path: Path, realdata: Path,
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper pets and wikidata-images decode through: --workers 2 really starts 2
    processes on a handful of files (shards of 1 image), and gives the same bytes."""
    from dlprep.prepare.images import decode_to_writer

    monkeypatch.setattr(logging.getLogger("dlprep"), "propagate", True)
    refs = [ImageRef(p.name, str(p)) for p in sorted((realdata / "images").glob("*.jpg"))]
    jobs = [DecodeJob(r, r) for r in refs]  # the photo as its own "mask"
    labels = np.arange(len(jobs)) % 2
    spec, mask = ImageSpec(16, 16), ImageSpec(16, 16, channels=1)
    out = {}
    for workers in (1, 2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dlprep"):
            res = decode_to_writer(tmp_path / f"w{workers}.h5", jobs, labels, spec,
                                   workers=workers, mask_spec=mask)
        try:
            res.writer.finish(recipe="t", recipe_version="1", classes=["a", "b"],
                              splits={"train": np.arange(len(jobs))})
        finally:
            res.writer.close()
        out[workers] = datasets(tmp_path / f"w{workers}.h5")
        used = "LocalCluster of 2 processes" in caplog.text
        assert used == (workers == 2), caplog.text
    assert out[1].keys() == out[2].keys() and "trimaps" in out[1]
    for key in out[1]:
        assert out[1][key] == out[2][key], key
    assert not list(tmp_path.glob("*.parts"))


def test_image_import_killed_mid_run_resumes_without_redoing_shards(tmp_path: Path,
                                                                    realdata: Path) -> None:
    """kill -9 after a few shards: the rerun takes the recorded shards from the manifest (their
    parts intact), runs only the others, and gives the bytes of an uninterrupted run."""
    import os

    from dlprep.scale import last_timings

    tree = tmp_path / "tree"
    photos = sorted((realdata / "images").glob("*.jpg"))
    for i in range(240):  # 30 shards of 8
        (tree / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        os.link(photos[i % len(photos)], tree / f"c{i % 2}" / f"{i:03d}.jpg")
    args = ["import-images", str(tree), "--name", "big", "--size", "96"]
    cache = tmp_path / "cache"
    manifest = run_and_kill(args, cache, "big", shards=3)
    assert manifest is not None, "the import finished before it could be killed"
    done = finished_shards(manifest)
    parts = sorted(manifest.parent.glob("img-*.shard"))
    assert len(done) >= 3 and len(parts) >= len(done)
    assert not [p for p in cache.glob("prepared/big/*.h5") if not p.name.startswith(".")]
    resumed = _import("images", cache, *args[1:])
    timings = last_timings()
    assert timings["shards_resumed"] >= len(done) and timings["shards_run"] < 30
    assert timings["shards_resumed"] + timings["shards_run"] == 30
    fresh = _import("images", tmp_path / "fresh", *args[1:])
    _same(resumed, fresh)
    assert not manifest.parent.exists()  # removed once the file is complete
