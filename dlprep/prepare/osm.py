"""The ``osm`` connector: OpenStreetMap extracts or Overpass queries -> map tiles or way sequences.

``dlprep fetch osm --pbf andorra-latest.osm.pbf`` (a path or URL; ``.osm``/``.osm.bz2`` too),
``--region europe/monaco`` (Geofabrik, ``--base-url`` for a mirror) or ``--bbox S,W,N,E
--overpass [URL]``; ``--format tiles`` (default: one channel per layer, labelled by the dominant
``landuse``) or ``--format ways`` (each way as float32 (T, 2) metre offsets, labelled by
``--label-key highway``). docs/OSM.md has the details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError, FetchError
from ..fetch.download import FileSpec, fetch_file, hash_file, local_source
from ..fetch.http import RetryPolicy
from ..fetch.options import DEFAULT_MAX_BYTES
from ..formats.osm import (
    Feature,
    ReadStats,
    header_box,
    read_feature_batches,
    sniff_osm,
    warn_skipped,
)
from ..formats.osm_batch import FeatureBatch, batches_of
from ..formats.osm_layers import load_layers
from ..redact import redact_url
from ..sources.osm import (
    ATTRIBUTION,
    DEFAULT_OVERPASS,
    GEOFABRIK,
    OverpassClient,
    overpass_query,
    parse_bbox,
    parse_md5,
    region_url,
)
from .core import PrepareContext
from .params import Param

log = logging.getLogger("dlprep")

PARAMS: tuple[Param, ...] = (
    Param("pbf", "str", None, "OSM extract: a path or URL (.osm.pbf, .osm, .osm.bz2; told apart "
                              "by content); a URL's .md5 is verified"),
    Param("region", "str", None, "Geofabrik region, e.g. europe/monaco (builds the .pbf URL)"),
    Param("base_url", "str", GEOFABRIK, "base URL for --region (a Geofabrik mirror)"),
    Param("overpass", "str", None, "query the Overpass API (URL, or no value for "
                                   f"{DEFAULT_OVERPASS}) for --bbox instead of a file"),
    Param("overpass_format", "str", "json", "Overpass reply format", ("json", "xml")),
    Param("overpass_timeout", "int", 180, "Overpass [timeout:] in seconds"),
    Param("bbox", "str", None, "area S,W,N,E in degrees (default: the data's extent)"),
    Param("format", "str", "tiles", "tiles: map images; ways: coordinate sequences",
          ("tiles", "ways")),
    Param("tile_size", "int", 64, "tiles: side in pixels"),
    Param("meters_per_pixel", "float", 2.0, "tiles: ground resolution"),
    Param("layers", "str", None, "tiles: a TOML file mapping tags to layers (channels); "
                                 "default highway, building, water, green"),
    Param("label_key", "str", None, "label tag key (tiles: dominant value by area, default "
                                    "landuse; ways: the way's value, default highway)"),
    Param("min_coverage", "float", 0.02, "tiles: drop tiles with less than this share of "
                                         "drawn pixels"),
    Param("min_count", "int", 10, "classes with fewer samples are folded into 'other'"),
    Param("normalize", "bool", False, "ways: scale each way to unit extent (meta/scale_m)"),
    Param("test_fraction", "float", 0.1, "share of each class in the test split"),
    Param("seed", "int", 0, "seed of the stratified split"),
    Param("node_index", "str", "auto", "node locations: memory, disk (sparse file), or auto "
                                       "(disk from 64 MiB)", ("auto", "memory", "disk")),
    Param("workers", "int", 1, "> 1: a Dask LocalCluster reading a sorted PBF extract of "
                               "32 MiB or more in blob-range shards ($DLPREP_OSM_SHARDS; "
                               "output bytes do not depend on it)"),
)
RUNTIME_OPTIONS = ("workers",)


@dataclass(frozen=True)
class OsmCollected:
    """What ``collect`` hands to ``build``: the OSM file or cached Overpass reply, and how to
    keep node locations (a runtime choice, taken out of the config hash); after blob-range
    shards ran, their feature parts and stats (read instead of the file)."""

    path: Path
    overpass: bool
    node_index: str = "auto"
    parts: tuple[str, ...] = ()  # feature parts of blob-range shards (dlprep.prepare.osm_shards)
    part_stats: tuple[dict[str, Any], ...] = ()


def _bbox(ctx: PrepareContext) -> tuple[float, float, float, float] | None:
    try:
        return parse_bbox(ctx.options["bbox"])
    except FetchError as exc:
        raise DlprepError(f"dataset {ctx.name}: {exc}") from None


def filter_keys(ctx: PrepareContext) -> list[str]:
    """The tag keys libosmium (or Overpass) filters on for the chosen format."""
    o = ctx.options
    if o["format"] == "ways":
        return [o["label_key"] or "highway"]
    spec = load_layers(o["layers"])
    return sorted(set(spec.keys()) | {o["label_key"] or "landuse"})


def collect(ctx: PrepareContext) -> OsmCollected:
    o = ctx.options
    # how node locations are kept changes nothing in the output: not part of the config hash
    node_index = str(o.pop("node_index", "auto") or "auto")
    bbox = _bbox(ctx)
    chosen = [k for k in ("pbf", "region", "overpass") if o[k]]
    if len(chosen) != 1:
        raise DlprepError(f"dataset {ctx.name}: choose one source: --pbf PATH_OR_URL, "
                          f"--region europe/monaco or --bbox S,W,N,E --overpass [URL]"
                          + (f" (got {', '.join('--' + c for c in chosen)})" if chosen else ""))
    if o["format"] == "tiles":  # the layer map's content, not the --layers path, is hashed
        ctx.inputs["osm_layers"] = json.dumps(load_layers(o["layers"]).to_dict(),
                                              sort_keys=True)
        if isinstance(o["layers"], str):
            o["layers"] = None if not o["layers"] else str(Path(o["layers"]).expanduser())
    if o["overpass"]:
        return OsmCollected(_collect_overpass(ctx, bbox), True, node_index)
    url = region_url(o["region"], o["base_url"] or GEOFABRIK) if o["region"] else o["pbf"]
    path = _collect_file(ctx, url)
    sniff_osm(path)
    box = header_box(path)
    if bbox and box and (bbox[0] > box[2] or bbox[2] < box[0] or bbox[1] > box[3]
                         or bbox[3] < box[1]):
        raise DlprepError(f"--bbox {o['bbox']}: outside the area of {path.name} "
                          f"(S,W,N,E {box[0]:.5f},{box[1]:.5f},{box[2]:.5f},{box[3]:.5f})")
    return OsmCollected(path, False, node_index)


def _collect_file(ctx: PrepareContext, url: str) -> Path:
    src = local_source(url)
    if src is not None and not url.startswith("file://"):
        if not src.is_file():
            raise DlprepError(f"--pbf {src}: no such file")
        ctx.files["osm"] = src
        ctx.sources.append({"name": src.name, "url": str(src), "sha256": hash_file(src)})
        return src
    name = url.rstrip("/").rsplit("/", 1)[-1] or "extract.osm.pbf"
    md5 = None
    if src is None:
        md5 = _published_md5(ctx, url, name)
    spec = FileSpec(name=name, urls=[url], md5=md5, checksum_optional=True)
    path = ctx.fetch(spec, subdir="pbf")
    ctx.files["osm"] = path
    return path


def _published_md5(ctx: PrepareContext, url: str, name: str) -> str | None:
    """The md5 in ``<url>.md5`` (Geofabrik and planet mirrors publish one). A server without
    that file (HTTP 404) gets a warning and an unverified download; other errors stop."""
    md5_spec = FileSpec(name=name + ".md5", urls=[url + ".md5"], checksum_optional=True)
    try:
        md5_path = fetch_file(md5_spec, ctx.raw_dir / "pbf",
                              ctx.fetch_options.with_(mirrors=(), progress=False))
    except FetchError as exc:
        if "HTTP 404" not in str(exc):
            raise
        log.warning("%s.md5: not found (HTTP 404); %s is downloaded without a checksum",
                    redact_url(url), name)
        return None
    return parse_md5(md5_path.read_text("utf-8", "replace"), redact_url(url + ".md5"))


def _collect_overpass(ctx: PrepareContext, bbox: tuple[float, float, float, float] | None
                      ) -> Path:
    o = ctx.options
    if bbox is None:
        raise DlprepError(f"dataset {ctx.name}: --overpass needs --bbox S,W,N,E (Overpass "
                          f"serves areas; use --pbf or --region for whole extracts)")
    url = DEFAULT_OVERPASS if str(o["overpass"]).lower() == "true" else str(o["overpass"])
    query = overpass_query(filter_keys(ctx), bbox, timeout=o["overpass_timeout"],
                           fmt=o["overpass_format"])
    fo = ctx.fetch_options
    client = OverpassClient(url, ctx.raw_dir / "overpass", offline=fo.offline, force=fo.force,
                            retry=fo.retry or RetryPolicy(),
                            max_bytes=fo.max_bytes or DEFAULT_MAX_BYTES)
    path = client.run(query)
    ctx.files["osm"] = path
    ctx.sources.append({"name": f"overpass/{path.name}", "url": client.last_url,
                        "sha256": hash_file(path)})
    return path


def iter_features(ctx: PrepareContext, keys: list[str], *, areas: bool, lines: bool,
                  stats: ReadStats, index_dir: Path | None) -> Iterator[Feature]:
    """The features of the collected source carrying one of ``keys``, within ``--bbox``
    (their ``tags``: the values of ``keys`` they have)."""
    for batch in iter_feature_batches(ctx, keys, areas=areas, lines=lines, stats=stats,
                                      index_dir=index_dir):
        yield from batch.features()


def iter_feature_batches(ctx: PrepareContext, keys: list[str], *, areas: bool, lines: bool,
                         stats: ReadStats, index_dir: Path | None) -> Iterator[FeatureBatch]:
    """:func:`iter_features` a :class:`FeatureBatch` at a time (values of ``keys``)."""
    got = ctx.collected_as(OsmCollected)
    path = got.path
    bbox = _bbox(ctx)
    if got.parts:
        from .osm_shards import iter_parts

        add_part_stats(ctx, stats)
        source = batches_of(iter_parts(got.parts), keys)
    elif got.overpass:
        from ..formats.osm_overpass import read_overpass

        wanted = set(keys)
        source = batches_of((
            f for f in read_overpass(path, stats)
            if (f.area and areas or not f.area and lines) and wanted & f.tags.keys()), keys)
    else:
        source = read_feature_batches(path, keys, areas=areas, lines=lines,
                                      node_index=got.node_index, index_dir=index_dir,
                                      stats=stats)
    if bbox is None:
        yield from source
        return
    s, w, n, e = (round(v * 1e7) for v in bbox)
    for batch in source:
        b = batch.bounds().astype(np.int64)
        keep = (b[:, 2] >= w) & (b[:, 0] <= e) & (b[:, 3] >= s) & (b[:, 1] <= n)
        yield batch if keep.all() else batch.take(np.flatnonzero(keep))


def within(source: Iterable[Feature], bbox: tuple[float, float, float, float] | None
           ) -> Iterator[Feature]:
    """The features of ``source`` whose bounds meet ``bbox`` (S, W, N, E degrees; None: all)."""
    if bbox is None:
        yield from source
        return
    s, w, n, e = (round(v * 1e7) for v in bbox)
    for feat in source:
        x0, y0, x1, y1 = feat.bounds()
        if x1 >= w and x0 <= e and y1 >= s and y0 <= n:
            yield feat


def add_part_stats(ctx: PrepareContext, stats: ReadStats) -> None:
    """Add what the shards of the collected source read (their stats) to ``stats``, and
    warn once about skipped ways."""
    from .osm_shards import merged_stats

    got = ctx.collected_as(OsmCollected)
    done = merged_stats(list(got.part_stats))
    for name in ("ways", "areas", "skipped_ways"):
        setattr(stats, name, getattr(stats, name) + getattr(done, name))
    stats.skipped_ids.extend(done.skipped_ids[:20 - len(stats.skipped_ids)])
    warn_skipped(got.path, stats)


def osm_attrs(ctx: PrepareContext, stats: ReadStats, **more: Any) -> dict[str, Any]:
    """Root attributes every OSM dataset carries (attribution, source, skipped ways)."""
    return {"attribution": ATTRIBUTION, "osm_skipped_ways": int(stats.skipped_ways),
            "osm_bbox": json.dumps(_bbox(ctx)), **more}


# sharded (dlprep.scale): a sorted PBF extract is read in blob-range shards
def plan_shards(ctx: PrepareContext) -> list[Any]:
    from .osm_shards import plan_shards as plan

    return plan(ctx)


def run_shard(spec: Any, part: Path | None) -> dict[str, Any]:
    from .osm_shards import run_shard as run

    return run(spec, part)


def assemble(ctx: PrepareContext, out: Path, job: Any) -> None:
    from .osm_shards import assemble as join

    join(ctx, out, job)


def build(ctx: PrepareContext, out: Path) -> None:
    if ctx.options["format"] == "ways":
        from .osm_ways import build_ways

        build_ways(ctx, out)
    else:
        from .osm_tiles import build_tiles

        build_tiles(ctx, out)
