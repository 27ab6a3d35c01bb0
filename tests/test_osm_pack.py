"""The packing of drawn canvases into the tiles written (dlprep.formats.osm_pack): the
compiled kernels (``_osmpack``, built with the package) against the NumPy/OpenCV path and
against counts written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dlprep.formats import osm_pack


def _both(monkeypatch: pytest.MonkeyPatch, call) -> tuple:  # noqa: ANN001
    """``call()`` with the compiled kernels, then without them."""
    lib = osm_pack.compiled()
    assert lib is not None, "the _osmpack extension was not built (pip install -e . builds it)"
    got = call()
    monkeypatch.setattr(osm_pack, "compiled", lambda: None)
    ref = call()
    monkeypatch.setattr(osm_pack, "compiled", lambda: lib)
    return got, ref


@pytest.mark.parametrize("channels", [1, 3, 4, 5])
@pytest.mark.parametrize("size", [4, 16, 40, 64])
def test_compiled_pack_equals_the_numpy_path_and_the_truth(
        monkeypatch: pytest.MonkeyPatch, channels: int, size: int) -> None:
    rng = np.random.default_rng(size * 10 + channels)
    m, value = 2, 3
    canvas = rng.integers(0, 6, (channels, 6 * size + 2 * m, 5 * size + 2 * m)).astype(np.uint8)
    canvas[:, m:m + size, m:m + size] = value  # a tile drawn all over
    rows, cols = np.nonzero(rng.random((6, 5)) < 0.6)
    rows, cols = np.r_[0, rows], np.r_[0, cols]
    k = len(rows)

    def call() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = np.full((k, size, size, channels), 7, np.uint8)
        per, union = np.full((k, channels), -1, np.int64), np.full(k, -1, np.int64)
        osm_pack.pack_tiles(canvas, m, value, rows, cols, size, out, per, union)
        return out, per, union

    got, ref = _both(monkeypatch, call)
    for a, b in zip(got, ref, strict=True):
        assert np.array_equal(a, b)
    out, per, union = got
    hit = np.stack([canvas[:, m + r * size:m + (r + 1) * size, m + c * size:m + (c + 1) * size]
                    for r, c in zip(rows, cols, strict=True)]) == value  # (k, C, s, s)
    assert np.array_equal(out, np.where(hit, 255, 0).transpose(0, 2, 3, 1))
    assert np.array_equal(per, hit.sum(axis=(2, 3)))
    assert np.array_equal(union, hit.any(axis=1).sum(axis=(1, 2)))
    assert per[0].tolist() == [size * size] * channels


@pytest.mark.parametrize("dtype,ids", [(np.uint8, [1, 2, 7, 255]),
                                       (np.uint16, [1, 300, 301, 65535])])
def test_compiled_labels_take_the_majority_ties_to_the_smaller_id(
        monkeypatch: pytest.MonkeyPatch, dtype: type, ids: list[int]) -> None:
    size, m = 8, 2
    lab = np.zeros((size + 2 * m, 8 * size + 2 * m), dtype)
    tiles = [lab[m:m + size, m + i * size:m + (i + 1) * size] for i in range(8)]
    a, b, c, d = ids
    tiles[1][:] = d  # one id all over
    tiles[2][:3] = b
    tiles[2][3:] = c  # c covers more
    tiles[3][:4] = c
    tiles[3][4:] = b  # a tie: the smaller id
    tiles[4][:1] = d  # mostly unlabelled: the labelled id still wins
    tiles[5][0, 0], tiles[5][0, 1], tiles[5][1, 0] = a, d, d
    tiles[6][:4], tiles[6][4:6] = a, b  # several ids and none
    rows, cols = np.zeros(8, np.int64), np.arange(8)

    def call() -> np.ndarray:
        out = np.full(8, -1, np.int64)
        osm_pack.pack_labels(lab, m, rows, cols, size, out)
        return out

    got, ref = _both(monkeypatch, call)
    assert np.array_equal(got, ref)
    assert got.tolist() == [0, d, c, b, d, d, a, 0]


def test_the_kernels_refuse_tiles_beyond_the_canvas_and_short_buffers() -> None:
    lib = osm_pack.compiled()
    assert lib is not None
    canvas = np.zeros((4, 20, 20), np.uint8)
    out = np.zeros((1, 8, 8, 4), np.uint8)
    per, union = np.zeros((1, 4), np.int64), np.zeros(1, np.int64)
    one = np.ones(1, np.int64)
    with pytest.raises(ValueError, match="beyond the canvas"):
        lib.pack(canvas, 4, 20, 20, 2, 1, one * 2, one * 0, 8, out, per, union)
    with pytest.raises(ValueError, match="out has"):
        lib.pack(canvas, 4, 20, 20, 2, 1, one * 0, one * 0, 16, out, per, union)
    with pytest.raises(ValueError, match="beyond the canvas"):
        lib.labels(np.zeros((20, 20), np.uint8), 1, 20, 20, 2, one * 0, one * 3, 8, union)


def test_without_the_extension_or_when_switched_off_the_numpy_path_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osm_pack, "_LOADED", {})
    monkeypatch.setenv("DLPREP_OSM_COMPILED", "0")
    assert osm_pack.compiled() is None
    monkeypatch.delenv("DLPREP_OSM_COMPILED")
    assert osm_pack.compiled() is None  # read once
    monkeypatch.setattr(osm_pack, "_LOADED", {})
    assert osm_pack.compiled() is not None


def test_compiled_ring_parity_equals_the_numpy_one() -> None:
    """The tile centres inside a ring (clean tiles' values): the compiled even-odd pass gives
    the NumPy one's cells, for open and closed rings, rings beyond the range, and centres
    met exactly."""
    from dlprep.formats import osm_cover

    assert osm_pack.compiled() is not None
    rng = np.random.default_rng(11)
    checked = 0
    for n in (0, 1, 2, 3, 7, 60, 500):
        for size in (16.0, 64.0):
            ring = rng.uniform(-200, 1400, (n, 2))
            if n > 3 and n % 2:
                ring[-1] = ring[0]  # closed
            if n == 7:
                ring = np.round(ring / size - 0.5) * size + size / 2  # on centres exactly
            for r_lo, r_hi, c_lo, c_hi in ((0, 20, 0, 25), (3, 9, 5, 6), (0, 0, 0, 4)):
                got = osm_cover._ring_parity(ring, r_lo, r_hi, c_lo, c_hi, size)
                want = osm_cover._ring_parity_numpy(ring, r_lo, r_hi, c_lo, c_hi, size)
                assert got.dtype == bool and np.array_equal(got, want), (n, size, r_lo)
                checked += int(want.sum())
    assert checked > 100  # centres were inside


def test_compiled_chunk_assembly_writes_the_chunks_of_run_by_run_writing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``ChunkEncoder.add_block`` (kept tiles assembled into chunks by the compiled kernel,
    whole chunks of one value or of neighbouring drawn tiles taken as before) hands on the
    same deflated chunks, tile counts and CRC as writing run by run."""
    from dlprep.prepare.osm_store import ChunkEncoder

    class Collect(ChunkEncoder):
        def __init__(self) -> None:
            super().__init__((4, 4, 3), chunk_rows=4)
            self.chunks: list[tuple[bytes, int]] = []

        def _write_chunk(self, data: bytes, rows: int) -> None:
            self.chunks.append((data, rows))
            self.n += rows

    rng = np.random.default_rng(2)
    blocks = []
    for _ in range(40):
        m = int(rng.integers(0, 30))
        tiles = rng.integers(0, 2, (m, 4, 4, 3)).astype(np.uint8) * 255
        n = int(rng.integers(0, 40))
        code = np.where(rng.random(n) < 0.5, -1, rng.choice([0, 5, 7], n))
        code[: n // 3] = code[0] if n else 0  # long runs too
        drawn = np.flatnonzero(code < 0)
        at = np.full(n, -1, np.int64)
        at[drawn] = np.sort(rng.choice(max(m, 1), len(drawn))) if m else -1
        code[(code < 0) & (at < 0)] = 3
        blocks.append((code.astype(np.int64), at, tiles if m else None))

    def write() -> Collect:
        enc = Collect()
        for code, at, tiles in blocks:
            enc.add_block(code, at, tiles)
        enc.flush()
        return enc

    got, ref = _both(monkeypatch, write)
    assert got.chunks == ref.chunks and got.crc == ref.crc and got.n == ref.n > 100
    assert len({data for data, _ in got.chunks}) > 10
