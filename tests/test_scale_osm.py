"""The OSM builder in PBF blob-range shards (issue 15) on the real Andorra extract: the node
locations decoded with NumPy equal libosmium's, and tiles and ways from shards run in this
process, on ``--workers 2`` and on a cluster reached with ``--scheduler`` are byte-identical to
a one-pass read; a ``kill -9`` run resumes without redoing finished shards."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli
from scale_shards import finished_shards, run_and_kill, same_prepared

from dlprep.errors import FormatError
from dlprep.formats.osm_pbf import blob_index, iter_blob_data, node_locations, shardable
from dlprep.formats.osm_sharded import (
    MIN_INDEX_RECORDS,
    NODE_RECORD,
    node_part,
    write_node_index,
)
from dlprep.prepare.osm_shards import SHARDS_ENV
from dlprep.scale import last_timings

osmium = pytest.importorskip("osmium")
pytest.importorskip("cv2")

ANDORRA = "example-test.pbf"
AGUAS = "aguascalientes.osm.pbf"
SHARDED = {SHARDS_ENV: "always"}  # the samples are small: shard them anyway
TILES = ("--meters-per-pixel", "8", "--min-coverage", "0.01")


def _fetch(cache: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    proc = invoke_cli("fetch", "osm", *args, cache_dir=cache, env=env)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _same(a: Path, b: Path) -> None:
    same_prepared(a, b, ("osm_skipped_ways", "osm_grid", "osm_layers", "osm_bbox"))


def _libosmium_nodes(path: Path, tmp: Path) -> np.ndarray:
    """Every node location as libosmium stores it (its own sparse_file_array index)."""
    index = tmp / "libosmium.idx"
    table = osmium.index.create_map(f"sparse_file_array,{index}")
    for _ in osmium.FileProcessor(str(path), osmium.osm.NODE).with_locations(table) \
            .with_filter(osmium.filter.EntityFilter(osmium.osm.NOTHING)):
        pass
    del table
    rec = np.fromfile(index, NODE_RECORD)
    return rec[rec["id"] != 0]


@pytest.mark.parametrize("name", [ANDORRA, AGUAS])
def test_node_blobs_decoded_with_numpy_equal_libosmium(realdata: Path, tmp_path: Path,
                                                       name: str) -> None:
    path = realdata / "osm" / name
    blobs = blob_index(path)
    assert shardable(blobs) and blobs[0].kind == "header"
    nodes = [b for b in blobs if b.kind == "nodes"]
    parts = []
    for i, b in enumerate(nodes):  # one part per blob, joined as the assembly does
        parts.append(tmp_path / f"n{i}")
        node_part(path, b.offset, b.offset + b.length, parts[-1])
    n = write_node_index(parts, tmp_path / "nodes.idx")
    ours = np.fromfile(tmp_path / "nodes.idx", NODE_RECORD)
    theirs = _libosmium_nodes(path, tmp_path)
    assert n == len(theirs) > 1000
    assert np.array_equal(ours[:n], theirs)
    assert len(ours) == max(n, MIN_INDEX_RECORDS)
    if len(parts) > 1:  # parts out of id order (an unsorted file) are merged by a sort
        assert write_node_index(parts[::-1], tmp_path / "merged.idx") == n
        assert np.array_equal(np.fromfile(tmp_path / "merged.idx", NODE_RECORD), ours)
    assert (ours["id"][n:] == np.iinfo(np.uint64).max).all()  # padding sorts last
    _, first = next(iter_blob_data(path, nodes[0].offset, nodes[0].offset + nodes[0].length))
    ids, lon, lat = node_locations(first)
    assert ids.dtype == np.int64 and lon.dtype == lat.dtype == np.int32
    assert np.array_equal(ids, theirs["id"][:len(ids)].astype(np.int64))


def test_blob_index_kinds_and_a_truncated_file(realdata: Path, tmp_path: Path) -> None:
    path = realdata / "osm" / ANDORRA
    kinds = [b.kind for b in blob_index(path)]
    assert kinds == ["header"] + ["nodes"] * 27 + ["ways"] * 2 + ["relations"]
    data = path.read_bytes()
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(FormatError, match=r"cut\.osm\.pbf.*truncated PBF"):
        blob_index(cut)
    # a layout the shards cannot take (ways before nodes) is read in one pass
    blobs = blob_index(path)
    assert not shardable([blobs[0], blobs[-2], *blobs[1:-2], blobs[-1]])


def test_shards_in_process_on_workers_and_on_a_cluster_match_one_pass(
        realdata: Path, tmp_path: Path, scheduler: str) -> None:
    """Tiles (with multipolygon lakes, holes and labels) and ways of Andorra: one pass, 13 node
    shards then 2 way shards and the relation pass in this process, on ``--workers 2``, and
    on a scheduler: the same bytes."""
    pbf = str(realdata / "osm" / ANDORRA)
    one = _fetch(tmp_path / "one", "--pbf", pbf, *TILES, "--workers", "2")
    assert last_timings()["n_shards"] == 0  # under 32 MiB: one pass (and no Dask started)
    assert last_timings()["executor"] == "a Dask LocalCluster of 2 processes"
    assert last_timings()["startup"] == 0
    here = _fetch(tmp_path / "here", "--pbf", pbf, *TILES, env=SHARDED)
    t = last_timings()
    assert t["executor"] == "this process" and t["n_shards"] == 13 and t["shards_run"] == 13
    _same(one, here)
    two = _fetch(tmp_path / "two", "--pbf", pbf, *TILES, "--workers", "2", env=SHARDED)
    assert last_timings()["executor"] == "a Dask LocalCluster of 2 processes"
    _same(one, two)
    far = _fetch(tmp_path / "far", "--pbf", pbf, *TILES, "--scheduler", scheduler,
                 env=SHARDED)
    assert last_timings()["executor"] == f"the Dask scheduler {scheduler}"
    _same(one, far)
    with h5py.File(one, "r") as f:
        assert len(f["images"]) > 1000 and len(f["classes"]) > 3
        assert json.loads(f.attrs["osm_grid"])["cols"] > 10
    ways_one = _fetch(tmp_path / "one", "--pbf", pbf, "--format", "ways")
    ways_far = _fetch(tmp_path / "far", "--pbf", pbf, "--format", "ways", "--scheduler",
                      scheduler, env=SHARDED)
    assert last_timings()["n_shards"] == 13
    _same(ways_one, ways_far)


def test_one_pass_and_sharded_reads_agree_on_the_bz2_twin(realdata: Path,
                                                          tmp_path: Path) -> None:
    """Aguascalientes as .osm.bz2 (libosmium's XML reader, one pass) and as PBF in shards."""
    bz2 = _fetch(tmp_path / "a", "--pbf", str(realdata / "osm" / "aguascalientes.osm.bz2"),
                 "--min-coverage", "0")
    pbf = _fetch(tmp_path / "b", "--pbf", str(realdata / "osm" / AGUAS), "--min-coverage", "0",
                 env=SHARDED)
    assert last_timings()["n_shards"] == 1
    _same(bz2, pbf)


def test_killed_run_resumes_without_redoing_finished_shards(realdata: Path,
                                                           tmp_path: Path) -> None:
    """SIGKILL once a way shard is recorded: the rerun takes the 13 node shards and the
    finished way shard from the manifests (their parts untouched), runs the rest, and writes
    the bytes of an uninterrupted run."""
    cache = tmp_path / "cache"
    args = ["fetch", "osm", "--pbf", str(realdata / "osm" / ANDORRA), *TILES]
    manifest = run_and_kill(args, cache, "osm", shards=1, stage="features", env=SHARDED)
    assert manifest is not None, "the run ended before it could be killed"
    done = finished_shards(manifest)
    assert 1 <= len(done) < 3 and done[0] == "w000000"
    first = manifest.parent.parent / "manifest.jsonl"
    assert len(finished_shards(first)) == 13
    resumed = _fetch(cache, *args[2:], env=SHARDED)
    t = last_timings()
    assert t["shards_resumed"] == 13 and t["shards_run"] == 0
    assert t["maps_resumed"] == len(done) and t["maps_run"] == 3 - len(done)
    fresh = _fetch(tmp_path / "fresh", *args[2:], env=SHARDED)
    assert last_timings()["maps_resumed"] == 0
    _same(resumed, fresh)


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def _field(num: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _blob(kind: bytes, message: bytes, zlib_it: bool) -> bytes:
    import zlib

    blob = _field(2, len(message)) + _field(3, zlib.compress(message)) if zlib_it \
        else _field(1, message)
    head = _field(1, kind) + _field(3, len(blob))
    return len(head).to_bytes(4, "big") + head + blob


def test_node_decoder_follows_libosmium_on_granularity_offsets_and_plain_nodes(
        tmp_path: Path) -> None:
    """A PBF written field by field (the PBF .proto): dense nodes with a coarse granularity,
    negative offsets and negative coordinates (libosmium truncates toward zero), and plain
    Node messages; decoded with NumPy as libosmium decodes them."""
    zz = lambda v: (v << 1) ^ (v >> 63)  # noqa: E731 - zigzag
    header = _field(4, b"OsmSchema-V0.6") + _field(4, b"DenseNodes")
    ids, lats, lons = [5, 7, 100, 101], [-899_999_123, 12_345, -1, 450_000_001], \
        [1_799_999_999, -3, -1_234_567, 0]

    def packed(vals: list[int]) -> bytes:
        deltas = [vals[0]] + [b - a for a, b in zip(vals, vals[1:], strict=False)]
        return b"".join(_varint(zz(d)) for d in deltas)

    dense = _field(1, packed(ids)) + _field(8, packed(lats)) + _field(9, packed(lons))
    plain = b"".join(_field(1, _field(1, zz(i)) + _field(8, zz(la)) + _field(9, zz(lo)))
                     for i, la, lo in ((200, -70_001, 33), (201, 9, -2_000_000_001)))
    block1 = _field(1, _field(1, b"")) + _field(2, _field(2, dense)) + _field(17, 1000) \
        + _field(19, -77) + _field(20, 55)
    block2 = _field(1, _field(1, b"")) + _field(2, plain) + _field(17, 3) + _field(20, -9)
    path = tmp_path / "hand.osm.pbf"
    path.write_bytes(_blob(b"OSMHeader", header, False) + _blob(b"OSMData", block1, True)
                     + _blob(b"OSMData", block2, False))
    blobs = blob_index(path)
    assert [b.kind for b in blobs] == ["header", "nodes", "nodes"] and shardable(blobs)
    node_part(path, blobs[1].offset, blobs[-1].offset + blobs[-1].length, tmp_path / "n")
    ours = np.fromfile(tmp_path / "n", NODE_RECORD)
    theirs = _libosmium_nodes(path, tmp_path)
    assert len(theirs) == 6 and np.array_equal(ours, theirs)
    assert ours["x"][1] == (-3 * 1000 + 55) // 100 + 1  # -29.48 truncated toward zero: -29


def test_a_truncated_extract_is_one_line_and_no_file(realdata: Path, tmp_path: Path) -> None:
    data = (realdata / "osm" / ANDORRA).read_bytes()
    cut = tmp_path / "andorra-cut.osm.pbf"
    cut.write_bytes(data[:len(data) * 3 // 4])
    proc = invoke_cli("fetch", "osm", "--pbf", str(cut), cache_dir=tmp_path / "c", env=SHARDED)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "andorra-cut.osm.pbf" in lines[0] and "truncated PBF" in lines[0]
    assert not list((tmp_path / "c").rglob("*.h5"))


@pytest.mark.parametrize("normalize", [False, True])
def test_way_records_in_batches_equal_a_way_at_a_time(realdata: Path, normalize: bool) -> None:
    """The batch computation the shards and the one pass use gives the bytes of the
    way-at-a-time formula (offsets, and with --normalize the per-way scale)."""
    from dlprep.formats.osm import read_features
    from dlprep.prepare.osm_ways import way_offsets, way_records

    feats = list(read_features(realdata / "osm" / ANDORRA, ["highway"], areas=False))
    rec = way_records(feats, "highway", normalize)
    seqs, scales = [], []
    for f in feats:
        if len(f.rings[0]) < 2:
            continue
        seq = way_offsets(f.rings[0])
        if normalize:
            scale = float(np.abs(seq).max()) or 1.0
            seq = (seq / scale).astype(np.float32)
            scales.append(scale)
        seqs.append(seq)
    assert len(seqs) == len(rec.lengths) > 4000
    assert rec.data.tobytes() == np.concatenate(seqs).tobytes()
    assert rec.lengths.tolist() == [len(s) for s in seqs]
    assert rec.scales.tobytes() == np.asarray(scales, np.float32).tobytes()


def test_a_damaged_way_blob_names_the_extract_and_its_byte_range(realdata: Path,
                                                                  tmp_path: Path) -> None:
    """Bytes flipped inside a way blob's zlib data: libosmium's error from the shard, as one
    line naming the user's file (not the shard's scratch copy) and where the range starts."""
    src = realdata / "osm" / ANDORRA
    way = [b for b in blob_index(src) if b.kind == "ways"][0]
    data = bytearray(src.read_bytes())
    mid = way.offset + way.length // 2
    data[mid:mid + 64] = bytes(64)
    bad = tmp_path / "andorra-bad.osm.pbf"
    bad.write_bytes(bytes(data))
    proc = invoke_cli("fetch", "osm", "--pbf", str(bad), cache_dir=tmp_path / "c", env=SHARDED)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert f"andorra-bad.osm.pbf at byte {way.offset}" in lines[0]
    assert ".tmp" not in lines[0] and not list((tmp_path / "c").rglob("*.h5"))
