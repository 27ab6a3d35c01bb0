"""OpenStreetMap connector on the real samples: content sniffing, tiles, ways, identical output
from .pbf and .osm.bz2, hand-computed pixels, holes, bad input, info and preview."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli

from dlprep.errors import FormatError
from dlprep.formats.osm import ReadStats, read_features, sniff_osm

osmium = pytest.importorskip("osmium")  # the `osm` extra (in `all`, which CI installs)

R = 6378137.0
AGUAS = "aguascalientes.osm.pbf"


def _fetch(cache_dir: Path, *args: str) -> Path:
    proc = invoke_cli("fetch", "osm", *args, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    out = Path(proc.stdout.strip().splitlines()[-1])
    assert out.is_file()
    return out


def _fails(cache_dir: Path, *args: str) -> str:
    """Run a fetch that must fail: one ``error:`` line, non-zero exit, no new or partial file."""
    before = set((cache_dir / "prepared").rglob("*.h5"))
    proc = invoke_cli("fetch", "osm", *args, cache_dir=cache_dir)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert set((cache_dir / "prepared").rglob("*.h5")) == before, "a file was left"
    assert not list(cache_dir.rglob(".tmp-*")) and not list(cache_dir.rglob(".osm-*"))
    return err


def _to_px(lon: float, lat: float, w: float, n: float, mid_lat: float, mpp: float = 2.0
           ) -> tuple[float, float]:
    """The projection of docs/OSM.md, written out by hand."""
    k = math.pi * R / 180.0 / mpp
    return (lon - w) * k * math.cos(math.radians(mid_lat)), (n - lat) * k


def test_formats_are_told_apart_by_content_not_name(realdata: Path, tmp_path: Path) -> None:
    src = realdata / "osm"
    disguised = {"a.osm": src / AGUAS, "b.pbf": src / "aguascalientes.osm.bz2",
                 "c.osm.bz2": src / "planet_10.068,48.135_10.071,48.137.osm"}
    for name, orig in disguised.items():
        shutil.copy(orig, tmp_path / name)
    assert sniff_osm(tmp_path / "a.osm") == "pbf"
    assert sniff_osm(tmp_path / "b.pbf") == "osm.bz2"
    assert sniff_osm(tmp_path / "c.osm.bz2") == "osm"
    counts = [sum(1 for _ in read_features(tmp_path / n, ["highway"], areas=False))
              for n in ("a.osm", "b.pbf")]
    assert counts[0] == counts[1] == 674
    shutil.copy(src / "example-test.osc", tmp_path / "changes.osm")
    with pytest.raises(FormatError, match="osmChange"):
        sniff_osm(tmp_path / "changes.osm")


def test_pbf_and_bz2_of_the_same_area_give_identical_tiles_and_ways(
        realdata: Path, tmp_path: Path) -> None:
    pbf, bz2 = realdata / "osm" / AGUAS, realdata / "osm" / "aguascalientes.osm.bz2"
    for fmt, keys in (("tiles", ("images", "labels", "classes", "meta/col", "meta/row",
                                 "splits/train", "splits/test")),
                      ("ways", ("values", "offsets", "labels", "classes", "meta/osm_id"))):
        a = _fetch(tmp_path / "c1", "--pbf", str(pbf), "--format", fmt)
        b = _fetch(tmp_path / "c2", "--pbf", str(bz2), "--format", fmt)
        with h5py.File(a) as fa, h5py.File(b) as fb:
            assert fa[keys[0]].shape[0] > 100
            for key in keys:
                assert np.array_equal(fa[key][()], fb[key][()]), key


def test_tiles_layout_labels_attribution_info_and_preview(realdata: Path, cache_dir: Path,
                                                          tmp_path: Path) -> None:
    out = _fetch(cache_dir, "--pbf", str(realdata / "osm" / AGUAS))
    with h5py.File(out) as f:
        images = f["images"]
        assert images.dtype == np.uint8 and images.shape[1:] == (64, 64, 4)
        assert set(np.unique(images[()])) <= {0, 255}
        layers = json.loads(f.attrs["osm_layers"])
        assert list(layers) == ["highway", "building", "water", "green"]
        assert f.attrs["attribution"] == "© OpenStreetMap contributors, ODbL 1.0"
        assert f.attrs["kind"] == "image" and "ODbL" in f.attrs["license"]
        classes = [c.decode() for c in f["classes"][()]]
        assert "none" in classes and "meadow" in classes  # dominant landuse per tile
        drawn = (images[()] > 0).any(axis=-1).mean(axis=(1, 2))
        assert drawn.min() >= 0.02  # --min-coverage default drops the (near) empty tiles
        n = images.shape[0]
        assert len(f["splits/train"]) + len(f["splits/test"]) == n
        assert f["meta/lon"].shape == (n,) and f["meta/col"].dtype == np.int64
    info = invoke_cli("info", str(out), cache_dir=cache_dir)
    assert info.returncode == 0 and "© OpenStreetMap contributors, ODbL 1.0" in info.stdout
    png = tmp_path / "tiles.png"
    prev = invoke_cli("preview", str(out), "--out", str(png), "--count", "12", cache_dir=cache_dir)
    assert prev.returncode == 0, prev.stderr
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    colors = {tuple(c) for c in img.reshape(-1, 3)[::7].tolist()}
    assert (70, 70, 70) in colors  # highway layer in its colour
    assert img.shape[0] > 64


def test_tile_pixels_match_hand_computed_positions_of_real_ways(realdata: Path,
                                                                cache_dir: Path) -> None:
    path = realdata / "osm" / AGUAS
    s, w, n, e = 21.8625789, -102.2799068, 21.8752057, -102.2634632  # the file's header box
    mid = (s + n) / 2
    building, road = None, None
    for way in osmium.FileProcessor(str(path)).with_locations().with_filter(
            osmium.filter.EntityFilter(osmium.osm.WAY)).with_filter(
            osmium.filter.KeyFilter("building", "highway")):
        pts = [(nd.lon, nd.lat) for nd in way.nodes]
        if "building" in way.tags and len(pts) == 5:  # a closed four-corner building
            size = (max(p[0] for p in pts) - min(p[0] for p in pts))
            if building is None or size > building[0]:
                building = (size, pts)
        if way.tags.get("highway") == "residential":
            for a, b in zip(pts, pts[1:], strict=False):
                length = math.hypot(a[0] - b[0], a[1] - b[1])
                if road is None or length > road[0]:
                    road = (length, a, b)
    assert building and road
    out = _fetch(cache_dir, "--pbf", str(path), "--bbox", f"{s},{w},{n},{e}")
    with h5py.File(out) as f:
        where = {(int(c), int(r)): i for i, (c, r) in
                 enumerate(zip(f["meta/col"][()], f["meta/row"][()], strict=True))}
        grid = json.loads(f.attrs["osm_grid"])
        assert grid["west"] == w and grid["north"] == n

        def pixel(lon: float, lat: float, channel: int) -> int:
            x, y = _to_px(lon, lat, w, n, mid)
            i = where[(int(x // 64), int(y // 64))]
            return int(f["images"][i, int(y) % 64, int(x) % 64, channel])

        corners = building[1][:4]
        cx, cy = sum(p[0] for p in corners) / 4, sum(p[1] for p in corners) / 4
        assert pixel(cx, cy, 1) == 255  # building channel at the building's middle
        assert pixel(cx, cy, 2) == 0  # no water there
        a, b = road[1], road[2]
        for t in (0.3, 0.5, 0.7):  # along the longest straight residential segment (6 m = 3 px)
            assert pixel(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), 0) == 255


def test_multipolygon_holes_are_cut_out(realdata: Path, cache_dir: Path) -> None:
    """Andorra's Estany de l'Isla (relation 1477177, natural=water) has an island (inner
    ring): the lake is drawn in the water layer, the island is not."""
    path = realdata / "osm" / "example-test.pbf"
    lake = None
    for area in osmium.FileProcessor(str(path)).with_areas().with_filter(
            osmium.filter.EntityFilter(osmium.osm.AREA)):
        if not area.from_way() and area.orig_id() == 1477177:
            outer = next(iter(area.outer_rings()))
            lake = ([(nd.lon, nd.lat) for nd in outer],
                    [[(nd.lon, nd.lat) for nd in inner] for inner in area.inner_rings(outer)])
            break
    assert lake is not None and len(lake[1]) == 1
    ring, island = lake[0], lake[1][0]
    s, n = min(p[1] for p in ring), max(p[1] for p in ring)
    w, e = min(p[0] for p in ring), max(p[0] for p in ring)
    out = _fetch(cache_dir, "--pbf", str(path), "--bbox", f"{s},{w},{n},{e}",
                 "--meters-per-pixel", "1", "--min-coverage", "0")
    with h5py.File(out) as f:
        where = {(int(c), int(r)): i for i, (c, r) in
                 enumerate(zip(f["meta/col"][()], f["meta/row"][()], strict=True))}

        def water(lon: float, lat: float) -> int:
            x, y = _to_px(lon, lat, w, n, (s + n) / 2, mpp=1.0)
            return int(f["images"][where[(int(x // 64), int(y // 64))], int(y) % 64,
                                   int(x) % 64, 2])

        ix = sum(p[0] for p in island[:-1]) / (len(island) - 1)
        iy = sum(p[1] for p in island[:-1]) / (len(island) - 1)
        assert water(ix, iy) == 0  # inside the hole
        # a point between the island and the shore, on the segment to the farthest vertex
        far = max(ring, key=lambda p: (p[0] - ix) ** 2 + (p[1] - iy) ** 2)
        assert water(ix + 0.5 * (far[0] - ix), iy + 0.5 * (far[1] - iy)) == 255
        assert f["images"][..., 2].mean() > 50  # the lake fills a good part of its box


def test_ways_are_metre_offsets_with_folded_labels_and_ids(realdata: Path,
                                                           cache_dir: Path) -> None:
    out = _fetch(cache_dir, "--pbf", str(realdata / "osm" / AGUAS), "--format", "ways",
                 "--min-count", "50")
    first = None
    for way in osmium.FileProcessor(str(realdata / "osm" / AGUAS)).with_locations() \
            .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY)) \
            .with_filter(osmium.filter.KeyFilter("highway")):
        first = (way.id, [(nd.lon, nd.lat) for nd in way.nodes], way.tags["highway"])
        break
    assert first is not None
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "sequence" and f["values"].dtype == np.float32
        assert f["values"].shape[1] == 2
        off = f["offsets"][()]
        assert off[0] == 0 and off[-1] == f["values"].shape[0] and len(off) == 675
        classes = [c.decode() for c in f["classes"][()]]
        counts = np.bincount(f["labels"][()], minlength=len(classes))
        assert classes[-1] == "other"
        assert all(k >= 50 for c, k in zip(classes, counts, strict=True) if c != "other")
        assert f["meta/osm_id"][0] == first[0]
        seq = f["values"][off[0]:off[1]]
        lon0, lat0 = first[1][0]
        lon1, lat1 = first[1][-1]
        k = math.pi * R / 180.0
        assert np.allclose(seq[0], 0.0)
        assert seq[-1][0] == pytest.approx((lon1 - lon0) * k * math.cos(math.radians(lat0)),
                                           abs=0.01)
        assert seq[-1][1] == pytest.approx((lat1 - lat0) * k, abs=0.01)
        label = classes[f["labels"][0]]
        assert label == (first[2] if first[2] in classes else "other")
        assert f.attrs["attribution"].startswith("© OpenStreetMap contributors")


def test_ways_with_missing_nodes_are_skipped_and_counted(realdata: Path,
                                                         cache_dir: Path) -> None:
    path = realdata / "osm" / "planet_10.068,48.135_10.071,48.137.osm"  # a clipped extract
    stats = ReadStats()
    kept = [f.osm_id for f in read_features(path, ["building", "highway"], areas=False,
                                            stats=stats)]
    assert stats.skipped_ways == 6 and 25129578 in stats.skipped_ids
    assert not set(kept) & set(stats.skipped_ids)
    out = _fetch(cache_dir, "--pbf", str(path), "--format", "ways", "--label-key", "building",
                 "--min-count", "1")
    with h5py.File(out) as f:
        skipped = int(f.attrs["osm_skipped_ways"])
        assert skipped > 0
        assert not set(f["meta/osm_id"][()].tolist()) & set(stats.skipped_ids)


def test_layers_file_and_min_coverage(realdata: Path, cache_dir: Path, tmp_path: Path) -> None:
    layers = tmp_path / "layers.toml"
    layers.write_text('[roads]\ncolor = [0, 0, 0]\nlines = ["highway=residential|primary"]\n'
                      'widths = {primary = 10, "*" = 4}\n'
                      '[houses]\nareas = ["building"]\n')
    src = str(realdata / "osm" / AGUAS)
    out = _fetch(cache_dir, "--pbf", src, "--layers", str(layers))
    with h5py.File(out) as f:
        assert f["images"].shape[-1] == 2
        assert list(json.loads(f.attrs["osm_layers"])) == ["roads", "houses"]
        few = f["images"].shape[0]
    every = _fetch(cache_dir, "--pbf", src, "--layers", str(layers), "--min-coverage", "0")
    with h5py.File(every) as f:
        grid = json.loads(f.attrs["osm_grid"])
        assert f["images"].shape[0] == grid["cols"] * grid["rows"] > few
    layers.write_text('[roads]\nlines = "highway"\n')
    err = _fails(cache_dir, "--pbf", src, "--layers", str(layers), "--name", "bad")
    assert str(layers) in err and "lines" in err


def test_bad_input_is_one_clear_line(realdata: Path, cache_dir: Path, tmp_path: Path) -> None:
    osm = realdata / "osm"
    err = _fails(cache_dir, "--pbf", str(osm / "example-test.osc"))
    assert "example-test.osc" in err and "osmChange" in err
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes((osm / AGUAS).read_bytes()[:30_000])
    err = _fails(cache_dir, "--pbf", str(cut))
    assert "cut.osm.pbf" in err and "truncated" in err
    err = _fails(cache_dir, "--pbf", str(osm / AGUAS), "--bbox", "21.9,-102.28,21.86,-102.26")
    assert "--bbox" in err and "south" in err
    err = _fails(cache_dir, "--pbf", str(osm / AGUAS), "--bbox", "40,10,41,11")
    assert "outside the area of aguascalientes.osm.pbf" in err
    err = _fails(cache_dir, "--pbf", str(osm / AGUAS), "--format", "ways", "--label-key",
                 "no-such-key")
    assert "empty area" in err
    err = _fails(cache_dir, "--pbf", str(tmp_path / "missing.osm.pbf"))
    assert "missing.osm.pbf" in err
    err = _fails(cache_dir)
    assert "--pbf" in err and "--overpass" in err


@pytest.mark.parametrize("module", ["osmium", "cv2"])
def test_missing_osmium_says_how_to_install(realdata: Path, cache_dir: Path, module: str) -> None:
    """Both libraries of the ``osm`` extra: pyosmium reads, OpenCV draws the tiles."""
    import subprocess
    import sys

    code = (f"import sys; sys.modules['{module}'] = None; "
            "from dlprep.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "--cache-dir", str(cache_dir), "fetch",
                           "osm", "--pbf", str(realdata / "osm" / AGUAS)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "pip install 'dlprep[osm]'" in proc.stderr


def test_normalized_ways_and_preview_of_ways(realdata: Path, cache_dir: Path,
                                             tmp_path: Path) -> None:
    src = str(realdata / "osm" / AGUAS)
    raw = _fetch(cache_dir, "--pbf", src, "--format", "ways")
    out = _fetch(cache_dir, "--pbf", src, "--format", "ways", "--normalize", "true")
    with h5py.File(raw) as fr, h5py.File(out) as fn:
        assert np.abs(fn["values"][()]).max() == pytest.approx(1.0)
        scale = fn["meta/scale_m"][()]
        off = fn["offsets"][()]
        for i in (0, 10, 100):
            seq = fr["values"][off[i]:off[i + 1]]
            assert np.allclose(fn["values"][off[i]:off[i + 1]] * scale[i], seq, atol=1e-3)
            assert scale[i] == pytest.approx(float(np.abs(seq).max()))
    png = tmp_path / "ways.png"
    prev = invoke_cli("preview", str(out), "--out", str(png), "--count", "8", cache_dir=cache_dir)
    assert prev.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recipe_can_carry_its_own_layer_table(realdata: Path, cache_dir: Path,
                                              tmp_path: Path) -> None:
    recipe = (Path(__file__).resolve().parent.parent / "recipes" / "osm.toml").read_text()
    recipe += ('\n[options]\nmin_count = 1\n[options.layers.roads]\ncolor = [1, 2, 3]\n'
               'lines = ["highway"]\n')
    path = tmp_path / "osm.toml"
    path.write_text(recipe)
    proc = invoke_cli("fetch", "osm", "--recipe", str(path), "--pbf",
                      str(realdata / "osm" / AGUAS), cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(proc.stdout.strip().splitlines()[-1]) as f:
        assert f["images"].shape[-1] == 1
        assert json.loads(f.attrs["osm_layers"]) == {
            "roads": {"color": [1, 2, 3], "lines": ["highway"], "widths": {"*": 4.0}}}


def test_on_disk_node_index_gives_the_same_tiles(realdata: Path, cache_dir: Path) -> None:
    src = str(realdata / "osm" / AGUAS)
    mem = _fetch(cache_dir, "--pbf", src, "--node-index", "memory")
    disk = _fetch(cache_dir, "--pbf", src, "--node-index", "disk", "--force")
    assert mem == disk  # how locations are kept is not part of the config hash
    stats = ReadStats()
    index_dir = cache_dir / "idx"
    disk_feats = list(read_features(realdata / "osm" / AGUAS, ["highway", "building"],
                                    areas=True, node_index="disk", index_dir=index_dir,
                                    stats=stats))
    mem_feats = list(read_features(realdata / "osm" / AGUAS, ["highway", "building"],
                                   areas=True, node_index="memory"))
    assert len(disk_feats) == len(mem_feats) > 700
    assert all(np.array_equal(a.rings[0], b.rings[0]) for a, b in zip(disk_feats, mem_feats,
                                                                       strict=True))
    assert not list(index_dir.iterdir())  # the on-disk index is removed after the read
