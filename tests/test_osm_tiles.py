"""OpenStreetMap tiles, fast path: whole-tile values found at tile resolution give the same
bytes as drawing every tile; the rasteriser draws hand-made features where expected; the
compressed, chunked layout verifies and reads back; compressed XML keeps to the
decompression budget."""

from __future__ import annotations

import functools
import itertools
import lzma
import os
import signal
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli

from dlprep.errors import ExtractionError
from dlprep.formats.osm import check_inflated_size, read_features

pytest.importorskip("osmium")  # the `osm` extra (in `all`, which CI installs)

ANDORRA = "example-test.pbf"
# a part of Andorra with roads, buildings and large forests (whole-tile green interiors)
FOREST = {"bbox": "42.44,1.42,42.50,1.50"}
AGUAS = "aguascalientes.osm.pbf"


def _prepare(cache_dir: Path, options: dict[str, str]) -> Path:
    from dlprep.cache import Cache
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe

    return prepare(find_recipe("osm"), Cache.open(cache_dir), options=dict(options),
                   fetch=FetchOptions(offline=True, progress=False))


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {k: f[k][()] for k in ("images", "labels", "classes", "meta/col", "meta/row",
                                      "mean", "std", "splits/train", "splits/test")}


@pytest.mark.parametrize("sample,extra", [
    (ANDORRA, FOREST),
    (AGUAS, {"min_coverage": "0", "tile_size": "32", "layers": "roads-houses"})],
    ids=["andorra-forest", "aguascalientes-every-tile-2-layers"])
def test_whole_tile_shortcut_gives_the_bytes_of_drawing_every_tile(
        realdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: str,
        extra: dict[str, str]) -> None:
    from dlprep.prepare import osm_tiles

    options = {"pbf": str(realdata / "osm" / sample), **extra}
    if extra.get("layers"):
        layers = tmp_path / "layers.toml"
        layers.write_text('[roads]\nlines = ["highway"]\n[houses]\nareas = ["building", '
                          '"landuse"]\n')
        options["layers"] = str(layers)
    drawn: dict[str, int] = {"tiles": 0}

    def counting(name: str, at: int) -> None:  # a spy on a block's drawing: the real one
        real = getattr(osm_tiles, name)

        def draw(*args: object, **kwargs: object) -> object:
            drawn["tiles"] += int(np.count_nonzero(args[at]))  # the block's dirty tiles
            return real(*args, **kwargs)

        monkeypatch.setattr(osm_tiles, name, draw)

    counting("_draw_dirty", 3)  # packed here
    counting("_draw_into_slot", 5)  # drawn into shared memory, packed by the child
    monkeypatch.setattr(osm_tiles, "_child_draws", lambda stage: False)  # all drawn here
    fast = _read(_prepare(tmp_path / "fast", options))
    fast_drawn, drawn["tiles"] = drawn["tiles"], 0
    monkeypatch.setattr(osm_tiles, "build_tiles",
                        functools.partial(osm_tiles.build_tiles, exhaustive=True))
    slow = _read(_prepare(tmp_path / "slow", options))
    n = len(fast["images"])
    assert n > 300 and drawn["tiles"] >= n  # every tile of the grid was drawn
    assert n - fast_drawn > 200  # many tiles came from the shortcut...
    for key in fast:  # ...and they are the same bytes, labels, order and statistics
        assert np.array_equal(fast[key], slow[key]), key
    images = fast["images"]
    if sample == ANDORRA:  # whole-tile forest interiors exist in this area
        assert ((images.min(axis=(1, 2)) == 255).any(axis=-1)).sum() > 100
    else:  # --min-coverage 0: the empty tiles of the grid too
        assert (images.max(axis=(1, 2, 3)) == 0).sum() > 200
    assert set(np.unique(images[:200])) <= {0, 255}


def _spill_of(grid: object, tmp_path: Path, items: list[tuple[list[list[tuple[int, int]]],
                                                               list[bool], int, int, float]]):
    """A spill holding ``items`` (rings in whole grid pixels, outer flags, layer, label,
    width in metres), their points turned into fixed-point lon/lat on ``grid``."""
    from dlprep.formats.osm_raster import GeometrySpill

    spill = GeometrySpill(tmp_path)
    for rings, outer, layer, label, width in items:
        fixed = [np.array([(round((grid.west + x / grid.px_per_deg_lon) * 1e7),
                            round((grid.north - y / grid.px_per_deg_lat) * 1e7))
                           for x, y in ring], np.int32) for ring in rings]
        spill.add(fixed, outer, layer=layer, label=label, width=width)
    spill.finish()
    return spill


def test_rasteriser_fills_holes_and_draws_line_widths(tmp_path: Path) -> None:
    """The OpenCV rasteriser on hand-made features with known pixels: a square with a hole
    (even-odd over the rings), lines 1, 3 and 4 pixels wide. Odd widths are exact; OpenCV
    draws a thick line symmetric about its centre pixels, so an even width is drawn one
    pixel wider (4 -> 5; Pillow, the rasteriser before, drew 4 rows, not centred). Here a
    block drawn at an offset holds the same pixels as that part of a block drawn whole (in
    general OpenCV's clipping may move an outline pixel that crosses the canvas edge by one:
    each tile is drawn on its block's fixed canvas)."""
    from dlprep.formats.osm_draw import pixel_rings, render_block
    from dlprep.formats.osm_raster import Grid

    grid = Grid(42.40, 1.40, 42.50, 1.50, meters_per_pixel=2.0, tile_size=64)
    square = [(10, 10), (50, 10), (50, 50), (10, 50), (10, 10)]
    hole = [(20, 20), (40, 20), (40, 40), (20, 40), (20, 20)]
    spill = _spill_of(grid, tmp_path, [
        ([square, hole], [True, False], 1, 3, 0.0),
        ([[(70, 20), (120, 20)]], [True], 0, 0, 2.0),  # 1 px
        ([[(70, 40), (120, 40)]], [True], 0, 0, 6.0),  # 3 px
        ([[(70, 60), (120, 60)]], [True], 0, 0, 8.0)])  # 4 px, drawn 5
    try:
        assert pixel_rings(grid, spill, 0)[0][0].tolist() == [list(p) for p in square]
        items = np.arange(4)
        planes, label = render_block(grid, spill, items, 0, 0, 128, 128, 2)
        assert planes.shape == (2, 128, 128) and set(np.unique(planes)) == {0, 255}
        area = planes[1]
        assert area[10, 10] == area[50, 50] == area[15, 30] == area[20, 20] == 255
        assert area[30, 30] == area[25, 35] == 0 and area[9, 30] == area[51, 30] == 0
        assert (area[:, 30] > 0).sum() == (41 - 19) and (area > 0).sum() == 41 * 41 - 19 * 19
        assert label is not None and np.array_equal(label > 0, area > 0)
        assert set(np.unique(label)) == {0, 3}
        roads = planes[0]
        assert np.flatnonzero(roads[:, 95]).tolist() == [20, 39, 40, 41, 58, 59, 60, 61, 62]
        part, _ = render_block(grid, spill, items, 64, 0, 64, 64, 2)
        assert np.array_equal(part, planes[:, 0:64, 64:128])
    finally:
        spill.close()


def test_polygons_beyond_the_canvas_edge_leave_no_stray_pixels(tmp_path: Path) -> None:
    """OpenCV clamps fill spans that lie beyond the canvas onto its last column (on a 20 px
    canvas this polygon paints column 19 from row 0 to 29; only (19, 0) is inside it): the
    block is drawn with a margin that is cut off, so only the true pixel is left."""
    from dlprep.formats.osm_draw import render_block
    from dlprep.formats.osm_raster import Grid

    grid = Grid(42.40, 1.40, 42.50, 1.50, meters_per_pixel=2.0, tile_size=4)
    spill = _spill_of(grid, tmp_path, [
        ([[(19, 0), (60, 10), (80, 39), (40, 30), (19, 0)]], [True], 0, 1, 0.0)])
    try:
        planes, label = render_block(grid, spill, np.arange(1), 0, 0, 20, 40, 1)
        assert np.argwhere(planes[0]).tolist() == [[0, 19]]
        assert label is not None and np.argwhere(label).tolist() == [[0, 19]]
    finally:
        spill.close()


def test_far_off_polygon_points_change_no_pixel(realdata: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks are drawn with the points of runs beyond the canvas edge cut out
    (``cut_outside``); drawing with every point gives the same tiles, byte for byte."""
    from dlprep.formats import osm_draw

    options = {"pbf": str(realdata / "osm" / ANDORRA), **FOREST, "meters_per_pixel": "4",
               "min_coverage": "0"}
    cuts = {"points": 0}
    real_cut = osm_draw.cut_outside

    def counting_cut(px: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
        kept = real_cut(px, size, margin)
        cuts["points"] += len(px) - len(kept)
        return kept

    monkeypatch.setattr(osm_draw, "cut_outside", counting_cut)
    cut = _read(_prepare(tmp_path / "cut", options))
    assert cuts["points"] > 10_000  # many far-off points were dropped
    monkeypatch.setattr(osm_draw, "cut_outside", lambda px, size, margin: px)
    every = _read(_prepare(tmp_path / "every", options))
    for key in cut:
        assert np.array_equal(cut[key], every[key]), key


def test_outside_runs_keeps_run_ends_and_everything_near_the_canvas() -> None:
    from dlprep.formats.osm_draw import outside_runs

    px = np.array([[5, 5], [5, -10], [50, -20], [90, -30], [95, 5], [95, 200], [96, 300],
                   [5, 300], [5, 5]])
    keep = outside_runs(px, (100, 100), 2)
    # above: [5,-10] .. [90,-30] keeps both ends, drops [50,-20]; below: [95,200] .. [5,300]
    assert keep.tolist() == [True, True, False, True, True, True, False, True, True]


def test_compiled_cut_keeps_the_points_outside_runs_keeps() -> None:
    from dlprep.formats.osm_draw import cut_outside, outside_runs
    from dlprep.formats.osm_pack import compiled

    assert compiled() is not None
    px = np.array([[5, 5], [5, -10], [50, -20], [90, -30], [95, 5], [95, 200], [96, 300],
                   [5, 300], [5, 5]], np.int32)
    assert cut_outside(px, (100, 100), 2).tolist() == px[[0, 1, 3, 4, 5, 7, 8]].tolist()
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 50, 400):
        for margin in (0.0, 2.0, 3.5):
            walk = np.cumsum(rng.integers(-40, 41, (n, 2)), axis=0).astype(np.int32) + 50
            want = walk[outside_runs(walk, (100, 80), margin)]
            assert np.array_equal(cut_outside(walk, (100, 80), margin), want), (n, margin)


def test_tiles_are_chunked_deflate_written_once_and_verify(realdata: Path,
                                                           tmp_path: Path) -> None:
    from dlprep.data.prepared import PreparedFile
    from dlprep.store.reader import verify_prepared

    out = _prepare(tmp_path, {"pbf": str(realdata / "osm" / ANDORRA), **FOREST,
                              "meters_per_pixel": "4"})
    with h5py.File(out) as f:
        images = f["images"]
        n = images.shape[0]
        assert images.chunks == (16, 64, 64, 4) and images.compression == "gzip"
        raw = images[()]
        assert f["labels"].shape == (n,) and f["meta/col"].shape == (n,)
        counts = (raw[f["splits/train"][()]] > 0).sum(axis=(0, 1, 2))
        pixels = len(f["splits/train"]) * 64 * 64
        assert np.allclose(f["mean"][()], counts / pixels, atol=1e-6)  # from the counts
    assert out.stat().st_size < raw.nbytes / 10  # 0/255 masks deflate well
    problems, checked = verify_prepared(out)
    assert not problems and checked  # the CRC of the pixels was computed while writing
    loaded = PreparedFile(out)
    rows = np.array([n - 1, 0, n // 2, 0])
    assert np.array_equal(loaded.take(rows), raw[rows])


def test_compressed_xml_keeps_to_the_decompression_budget(realdata: Path, tmp_path: Path,
                                                          cache_dir: Path) -> None:
    from dlprep.limits import ExtractLimits

    bz2 = realdata / "osm" / "aguascalientes.osm.bz2"
    assert check_inflated_size(bz2) > 10 * bz2.stat().st_size
    with pytest.raises(ExtractionError, match="aguascalientes.osm.bz2.*limit of 100,000"):
        list(read_features(bz2, ["highway"], areas=False,
                           limits=ExtractLimits(max_total_bytes=100_000)))
    # xz is told apart by the shared magic table (dlprep.magic) and refused in one line
    xz = tmp_path / "area.osm.xz"
    xz.write_bytes(lzma.compress((realdata / "osm" /
                                  "planet_10.068,48.135_10.071,48.137.osm").read_bytes()))
    proc = invoke_cli("fetch", "osm", "--pbf", str(xz), cache_dir=cache_dir)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "area.osm.xz" in err and "xz" in err


def test_one_byte_and_four_byte_label_rasters_agree(realdata: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dlprep.prepare import osm_tiles

    options = {"pbf": str(realdata / "osm" / AGUAS), "min_count": "1"}
    small = _read(_prepare(tmp_path / "l", options))
    monkeypatch.setattr(osm_tiles, "LABEL_L_MAX", -1)  # every id in a 32-bit raster
    wide = _read(_prepare(tmp_path / "i", options))
    assert len(small["classes"]) > 3
    for key in small:
        assert np.array_equal(small[key], wide[key]), key


def test_spill_keeps_item_records_on_disk_until_the_read_is_over(tmp_path: Path) -> None:
    from dlprep.formats import osm_raster

    spill = osm_raster.GeometrySpill(tmp_path)
    try:
        ring = np.array([[10, 20], [30, 20], [30, 50], [10, 20]], np.int32)
        hole = np.array([[12, 22], [14, 22], [14, 24], [12, 22]], np.int32)
        n = osm_raster.FLUSH_POINTS // 4 + 3  # more than one flush
        for i in range(n):
            spill.add([ring + i, hole + i], [True, False], layer=i % 3 - 1, label=i % 7,
                      width=0.0 if i % 2 else 2.5)
        assert len(spill) == n and len(spill.layer) == 0  # records not in memory yet
        spill.finish()
        assert len(spill.layer) == n and not list(tmp_path.iterdir())  # unlinked files
        k = n - 1
        assert spill.bounds_array()[k].tolist() == [10 + k, 20 + k, 30 + k, 50 + k]
        assert (int(spill.layer[k]), int(spill.label[k]), float(spill.width[k])) == \
            (k % 3 - 1, k % 7, 0.0 if k % 2 else 2.5)
        (a, outer_a), (b, outer_b) = spill.rings(k)
        assert outer_a and not outer_b
        assert np.array_equal(a, ring + k) and np.array_equal(b, hole + k)
    finally:
        spill.close()


def test_compiled_layer_matchers_agree_with_the_layer_rules() -> None:
    """The read loop matches tags with rules looked up once (``LayerSpec.line_matcher`` and
    ``area_matcher``): the same layers and widths as ``Layer.line_width``/``takes_area``, on
    every combination of these tag values, for the defaults and a table with overlapping
    rules."""
    import itertools

    from dlprep.formats.osm_layers import load_layers, parse_layers

    overlapping = parse_layers({
        "a": {"lines": ["highway=primary", "highway", "waterway"], "widths": {"primary": 9},
              "areas": ["building=yes", "building", "landuse"]},
        "b": {"lines": ["highway"], "areas": ["building"]}}, "test")
    values = {"highway": ["primary", "residential", "footway", None],
              "waterway": ["river", "stream", "riverbank", None],
              "building": ["yes", "house", None], "landuse": ["forest", "reservoir", None],
              "natural": ["water", "wood", None], "leisure": ["park", None]}
    matched = 0
    for spec in (load_layers(None), overlapping):
        lines_of, areas_of = spec.line_matcher(), spec.area_matcher()
        for combo in itertools.product(*values.values()):
            tags = {k: v for k, v in zip(values, combo, strict=True) if v is not None}
            want = [(li, w) for li, la in enumerate(spec.layers)
                    if (w := la.line_width(tags)) is not None]
            assert lines_of(tags) == want
            assert areas_of(tags) == [li for li, la in enumerate(spec.layers)
                                      if la.takes_area(tags)]
            matched += bool(want)
    assert matched > 100


def test_large_tiles_are_drawn_on_bounded_canvases(realdata: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles of 256 px: a block (16 x 16 tiles) is drawn as fixed canvases of 4 x 4 tiles
    (at most ``CANVAS_PX`` wide), not one 4096 px canvas per layer; the whole-tile shortcut
    still gives the bytes of drawing every tile."""
    from dlprep.formats import osm_draw
    from dlprep.prepare import osm_tiles

    options = {"pbf": str(realdata / "osm" / AGUAS), "tile_size": "256",
               "meters_per_pixel": "0.5", "min_coverage": "0"}
    widest = {"px": 0, "canvases": 0}
    real_render = osm_draw.render_block

    def measuring_render(grid, spill, items, x0, y0, width, height, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        widest["px"] = max(widest["px"], width, height)
        widest["canvases"] += 1
        return real_render(grid, spill, items, x0, y0, width, height, *args, **kwargs)

    monkeypatch.setattr(osm_tiles, "render_block", measuring_render)
    fast = _read(_prepare(tmp_path / "fast", options))
    assert widest["px"] == osm_tiles.CANVAS_PX and widest["canvases"] > 4
    monkeypatch.setattr(osm_tiles, "build_tiles",
                        functools.partial(osm_tiles.build_tiles, exhaustive=True))
    slow = _read(_prepare(tmp_path / "slow", options))
    assert len(fast["images"]) > 100 and fast["images"].shape[1:] == (256, 256, 4)
    for key in fast:
        assert np.array_equal(fast[key], slow[key]), key


def test_kept_canvases_drawn_with_cycling_values_give_the_same_bytes(
        realdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Block canvases are reused without zeroing: each is drawn with the next value of a
    cycle (its pixels are those equal to it; the canvas is zeroed when the cycle starts
    again), and only the tile rows read back of the label raster are zeroed. The default
    cycle, a cycle of 2 (every other canvas zeroed, stale values in the others) with the
    writing stage inline (one thread), and a cycle of 1 (every canvas zeroed) give the same
    bytes; so do the writing stage's three places (a child process by default on Linux, the
    cycle of 2 inline, the cycle of 1 on a thread). In the child process's shared-memory
    slots (one cycle per slot, blocks of the grid's edges drawn into part of a slot's
    canvas) a cycle of 2 gives the same bytes too, also with every third block packed in the
    parent (as when the child is behind), some drawn by the child itself (as when it has
    caught up) and the others packed in the child, and with the dirty-tile grid handed to
    the child in many pieces through the same slots."""
    from dlprep.formats import osm_draw
    from dlprep.prepare import osm_tiles

    options = {"pbf": str(realdata / "osm" / ANDORRA), **FOREST, "meters_per_pixel": "4",
               "tile_size": "16", "min_coverage": "0"}
    default = _read(_prepare(tmp_path / "default", options))
    monkeypatch.setattr(osm_draw, "LAYER_CYCLE", 2)
    slots = _read(_prepare(tmp_path / "slots", options))
    turns = itertools.count()  # blocks handed to the child as canvases and packed here, in
    # turn (a slot used for packed tiles starts its value cycle again)
    monkeypatch.setattr(osm_tiles, "_hand_canvas", lambda stage: next(turns) % 3 != 1)
    monkeypatch.setattr(osm_tiles, "DIRTY_PIECE_BYTES", 500)  # the grid in many pieces
    blocks, child_drew = itertools.count(), itertools.count()
    monkeypatch.setattr(osm_tiles, "_child_draws",  # every fourth block drawn by the child
                        lambda stage: next(blocks) % 4 == 3 and next(child_drew) >= 0)
    mixed = _read(_prepare(tmp_path / "mixed", options))
    assert next(turns) > 30 and next(child_drew) > 10
    values: list[int] = []
    real_pack = osm_tiles.pack_block

    def spying_pack(planes: np.ndarray, label: np.ndarray | None, value: int,
                    *args: object, **kwargs: object) -> tuple:
        values.append(value)
        return real_pack(planes, label, value, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(osm_tiles, "pack_block", spying_pack)
    monkeypatch.setattr(osm_tiles, "STAGE", "inline")
    short = _read(_prepare(tmp_path / "short", options))
    assert values[:4] == [1, 2, 1, 2] and len(values) > 20  # many canvases, reused
    monkeypatch.setattr(osm_draw, "LAYER_CYCLE", 1)
    monkeypatch.setattr(osm_tiles, "STAGE", "thread")
    zeroed = _read(_prepare(tmp_path / "zeroed", options))
    assert len(default["images"]) > 1000
    for key in default:
        assert np.array_equal(default[key], short[key]), key
        assert np.array_equal(default[key], zeroed[key]), key
        assert np.array_equal(default[key], slots[key]), key
        assert np.array_equal(default[key], mixed[key]), key


def _stage_pids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the writing-stage child processes started from now on (recorded as each
    ``ProcessStage`` is made; the stage itself runs unchanged)."""
    from dlprep.prepare import osm_stage

    pids: list[int] = []
    real_init = osm_stage.ProcessStage.__init__

    def spying_init(self: osm_stage.ProcessStage, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        pids.append(self.pid)

    monkeypatch.setattr(osm_stage.ProcessStage, "__init__", spying_init)
    return pids


@pytest.mark.parametrize("fail_in", ["writing", "counting", "killed", "drawing"])
def test_a_failure_on_either_side_ends_the_run_in_one_line_leaving_nothing(
        realdata: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str) -> None:
    """The writing stage runs beside the drawing (a child process on Linux): an error while
    chunks are written (a full disk), while a block is counted (in the child), the child
    killed, or an error while drawing: the command ends with one line, nothing is left (no
    file, no child process, no thread) and the GIL switch interval is restored."""
    from dlprep.prepare import osm_stage, osm_tiles
    from dlprep.prepare.osm_store import TileWriter

    switch = sys.getswitchinterval()
    calls = {"n": 0}
    pids = _stage_pids(monkeypatch)
    if fail_in == "writing":
        real = TileWriter.store_chunk

        def failing(self: TileWriter, *args: object) -> None:
            calls["n"] += 1
            if calls["n"] == 40:
                raise OSError(28, "No space left on device")
            real(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(TileWriter, "store_chunk", failing)
    elif fail_in in ("counting", "killed"):
        real_keep = osm_tiles._Keeper._keep

        def failing_keep(*args: object) -> None:  # runs in the child: keeps blocks there
            calls["n"] += 1
            if calls["n"] == 5:
                if fail_in == "killed":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("counting failed")
            real_keep(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(osm_tiles._Keeper, "_keep", failing_keep)
    else:
        real_draw = osm_tiles._draw_canvas

        def failing_draw(*args: object, **kwargs: object) -> tuple:
            calls["n"] += 1
            if calls["n"] == 10:
                raise MemoryError("drawing failed")
            return real_draw(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(osm_tiles, "_draw_canvas", failing_draw)
        monkeypatch.setattr(osm_tiles, "_child_draws", lambda stage: False)  # drawn here
    proc = invoke_cli("fetch", "osm", "--pbf", str(realdata / "osm" / ANDORRA), "--bbox",
                      FOREST["bbox"], cache_dir=cache_dir)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert {"writing": "disk full", "counting": "counting failed", "killed": "signal 9",
            "drawing": "drawing failed"}[fail_in] in err
    if fail_in in ("writing", "drawing"):
        assert calls["n"] == (40 if fail_in == "writing" else 10)  # stopped there
    assert not list(cache_dir.rglob("*.h5"))
    assert not [t for t in threading.enumerate() if t.name == "dlprep-osm-tiles"]
    assert sys.getswitchinterval() == switch  # the GIL switch interval is restored
    if osm_stage.can_fork():
        assert len(pids) == 1
        with pytest.raises(ChildProcessError):
            os.waitpid(pids[0], os.WNOHANG)  # the child was reaped


def test_planar_counts_are_exact_where_the_threshold_needs_them() -> None:
    from dlprep.formats.osm_draw import planar_counts

    rng = np.random.default_rng(7)
    tiles = ((rng.random((3, 60, 8, 8)) < rng.random((3, 60, 1, 1)) * 0.6) * 255).astype(
        np.uint8)
    truth_per = (tiles > 0).sum(axis=(2, 3)).T
    truth_union = (tiles > 0).any(axis=0).sum(axis=(1, 2))
    per, union = planar_counts(tiles)
    assert np.array_equal(per, truth_per) and np.array_equal(union, truth_union)
    need = 20
    per, union = planar_counts(tiles, need)
    assert np.array_equal(per, truth_per)
    assert np.array_equal(union >= need, truth_union >= need)
    below = truth_per.max(axis=1) < need
    assert below.any() and (~below).any()
    assert np.array_equal(union[below], truth_union[below])


def test_without_fork_the_writing_stage_is_a_thread_and_the_bytes_are_the_same(
        realdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlprep.prepare import osm_stage, osm_tiles

    options = {"pbf": str(realdata / "osm" / ANDORRA), **FOREST, "meters_per_pixel": "4"}
    default = _read(_prepare(tmp_path / "default", options))
    modes: list[str] = []
    real_stage = osm_tiles.Stage

    def spying_stage(*args: object, **kwargs: object) -> object:
        modes.append("thread" if kwargs.get("thread") else "inline")
        return real_stage(*args, **kwargs)  # type: ignore[arg-type]

    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(osm_tiles, "Stage", spying_stage)
    monkeypatch.setattr(osm_stage.os, "fork", no_fork)
    threaded = _read(_prepare(tmp_path / "threaded", options))
    assert modes == ["thread"]
    for key in default:
        assert np.array_equal(default[key], threaded[key]), key


def test_process_stage_hands_back_messages_in_order_and_the_last_after_the_child_exited(
        ) -> None:
    """The child's messages reach ``on_message`` in order and its last one reaches
    ``close``, also when the child has already exited by then (its end of the pipe is
    closed: the end-of-file after the last message is not an error)."""
    import time

    from dlprep.prepare.osm_stage import ProcessStage, can_fork

    if not can_fork():
        pytest.skip("no fork on this platform (the thread is used)")
    got: list[bytes] = []

    def child(get, send):  # noqa: ANN001, ANN202
        total = 0
        while (item := get()) is not None:
            total += int(item[0].sum())
            send(b"M" + str(total).encode())
        return b"%d" % total

    stage = ProcessStage(child, got.append, slot_bytes=4096, slots=2)
    real_send = stage._send

    def send_then_wait(msg: bytes) -> None:
        real_send(msg)
        if not msg:  # the end: let the child send its last message and exit first
            time.sleep(0.3)

    stage._send = send_then_wait  # type: ignore[method-assign]
    for i in range(6):
        stage.put([np.arange(10, dtype=np.int64) * i])
    assert stage.close() == b"675"
    assert got == [b"M%d" % (45 * sum(range(i + 1))) for i in range(6)]
    with pytest.raises(ChildProcessError):
        os.waitpid(stage.pid, os.WNOHANG)


def test_large_tiles_of_one_layer_go_through_the_process_stage_with_the_same_bytes(
        realdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """128 px tiles of one layer: small enough for a shared-memory slot (so the child process
    takes them), drawn on fixed canvases of 8 x 8 tiles: the same bytes as inline."""
    from dlprep.prepare import osm_stage, osm_tiles

    layers = tmp_path / "roads.toml"
    layers.write_text('[roads]\nlines = ["highway"]\n')
    options = {"pbf": str(realdata / "osm" / ANDORRA), **FOREST, "tile_size": "128",
               "layers": str(layers), "min_coverage": "0"}
    forks = _stage_pids(monkeypatch)
    child = _read(_prepare(tmp_path / "child", options))
    assert len(forks) == (1 if osm_stage.can_fork() else 0)
    monkeypatch.setattr(osm_tiles, "STAGE", "inline")
    inline = _read(_prepare(tmp_path / "inline", options))
    assert child["images"].shape[1:] == (128, 128, 1) and len(child["images"]) > 500
    for key in child:
        assert np.array_equal(child[key], inline[key]), key


def test_compiled_dirty_marking_equals_the_numpy_one(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The dirty tiles marked by the compiled pass (_osmpack.mark) are the NumPy pass's, for
    random lines of several widths, rings with holes, single points and long segments that
    are cut into pieces, partly beyond the grid."""
    from dlprep.formats import osm_cover, osm_pack
    from dlprep.formats.osm_raster import Grid

    grid = Grid(42.40, 1.40, 42.43, 1.44, meters_per_pixel=4.0, tile_size=16)
    rng = np.random.default_rng(5)
    items = []
    for k in range(120):
        n = int(rng.integers(1, 30))
        pts = np.cumsum(rng.normal(0, 40 if k % 3 else 400, (n, 2)), axis=0) + \
            rng.uniform(-100, 900, 2)
        ring = [(float(x), float(y)) for x, y in pts]
        if k % 4 == 0:
            items.append(([ring + ring[:1], ring[::-1] + ring[-1:]], [True, False], 0, 1, 0.0))
        else:
            items.append(([ring], [True], 1, 0, float(rng.choice([0.0, 2.0, 9.0, 30.0]))))
    spill = _spill_of(grid, tmp_path, items)
    lib = osm_pack.compiled()
    assert lib is not None
    got = osm_cover.dirty_tiles(grid, spill, max_points=200)  # several batches
    monkeypatch.setattr(osm_cover, "compiled", lambda: None)
    want = osm_cover.dirty_tiles(grid, spill, max_points=200)
    assert 100 < int(want.sum()) < want.size and np.array_equal(got, want)
