"""The ``flickr`` connector: photos by tag -> a labelled image dataset (one class per tag).

``dlprep fetch flickr --tags cat,dog --per-class 500 --size 64 [--license 4,5,9]``: searches
each tag (``dlprep.sources.flickr``; replies cached, ``--offline`` replays them without a key),
drops the photos found under two tags (``--keep-shared`` keeps them under the first tag),
downloads the photos 4 at a time per host (``download_many``: stored once by content hash; a
404, an HTML page or a body that is no image is skipped and counted), and writes the dataset
through the shared image pipeline: ``meta/ids`` (photo id), ``meta/owner``, ``meta/owner_name``,
``meta/license``, ``meta/url`` (the photo page, the link back Flickr asks for), ``meta/title``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DlprepError
from ..fetch.api import ApiClient, DownloadReport, download_many
from ..formats.images import DecodeJob, ImageRef
from ..secrets import require_secret
from ..sources import flickr
from .core import PrepareContext
from .images import IMAGE_PARAMS, decode_to_writer, image_spec
from .params import Param
from .splits import stratified_split

log = logging.getLogger("dlprep")

PARAMS = (
    Param("tags", "list", None, "comma-separated tags, one class each (e.g. cat,dog)"),
    Param("per_class", "int", 100, "photos searched per tag"),
    Param("license", "list", [], "Flickr licence ids to keep (e.g. 4,5,9; default: any)"),
    Param("photo_size", "str", "n", "which url_* extra to download (n = 320 px)",
          tuple(flickr.SIZES)),
    Param("keep_shared", "bool", False, "keep photos found under two tags (first tag wins)"),
    Param("api_base", "str", flickr.DEFAULT_API, "Flickr REST endpoint (or a mirror)"),
    Param("max_date", "int", 0, "newest upload date searched (Unix time; 0: no limit)"),
    *IMAGE_PARAMS,
    Param("test_fraction", "float", 0.2, "share of each class in the test split"),
    Param("seed", "int", 0, "seed of the stratified split"),
)
RUNTIME_OPTIONS = ("workers",)


@dataclass(frozen=True)
class FlickrPhotos:
    """What ``collect`` hands to ``build``: (tag, photo) samples and their image refs."""

    samples: list[tuple[str, flickr.Photo]]
    refs: list[ImageRef]
    shared_dropped: int
    report: DownloadReport


def client(ctx: PrepareContext) -> ApiClient:
    """The Flickr API client of this run (no key needed offline: replies come from the cache)."""
    secret = {} if ctx.offline else {"api_key": require_secret(flickr.KEY_VARIABLE,
                                                               source="Flickr")}
    return ApiClient("Flickr", ctx.options["api_base"], cache_dir=ctx.cache.api_dir("flickr"),
                     options=ctx.fetch_options, policy=flickr.API_POLICY, secret_params=secret)


def _search(ctx: PrepareContext, tags: list[str]) -> tuple[list[tuple[str, flickr.Photo]], int]:
    o = ctx.options
    if o["per_class"] < 1:
        raise DlprepError(f"--per-class: must be at least 1, got {o['per_class']}")
    search = flickr.FlickrSearch(client(ctx), size=o["photo_size"],
                                 licenses=flickr.check_licenses(o["license"] or []),
                                 max_date=o["max_date"] or None)
    found: dict[str, list[flickr.Photo]] = {}
    for tag in tags:
        found[tag] = list(search.photos(tag, o["per_class"]))
        if not found[tag]:
            raise DlprepError(f"flickr: the search for tag {tag!r} found no photos (check the "
                              f"tag and --license)")
        log.info("Flickr: %d photos for tag %r", len(found[tag]), tag)
    owners: dict[str, list[str]] = {}
    for tag in tags:
        for p in found[tag]:
            owners.setdefault(p.id, []).append(tag)
    shared = {pid for pid, ts in owners.items() if len(ts) > 1}
    samples: list[tuple[str, flickr.Photo]] = []
    taken: set[str] = set()
    for tag in tags:
        for p in found[tag]:
            if p.id in taken or (p.id in shared and not o["keep_shared"]):
                continue
            taken.add(p.id)
            samples.append((tag, p))
    if shared:
        log.warning("Flickr: %d photo(s) found under two or more tags were %s", len(shared),
                    "kept under the first tag" if o["keep_shared"] else
                    "dropped (--keep-shared keeps them)")
    return samples, len(shared) if not o["keep_shared"] else 0


def collect(ctx: PrepareContext) -> FlickrPhotos:
    tags = flickr.check_tags(ctx.options["tags"] or [])
    samples, dropped = _search(ctx, tags)
    report = download_many([(p.id, p.url) for _, p in samples], ctx.raw_dir / "photos",
                           options=ctx.fetch_options, policy=flickr.PHOTO_POLICY)
    if report.skipped:
        log.warning("Flickr: %d photo(s) skipped: %s", sum(report.skipped.values()),
                    ", ".join(f"{n} {r}" for r, n in sorted(report.skipped.items())))
    refs = [ImageRef(name=p.id, path=str(report.paths[p.id])) if p.id in report.paths
            else ImageRef(name=p.id, missing=f"download skipped: {report.reasons.get(p.id)}")
            for _, p in samples]
    listing = hashlib.sha256("\n".join(f"{t}\t{p.id}\t{p.url}" for t, p in samples)
                             .encode()).hexdigest()
    ctx.inputs["photos"] = listing
    ctx.sources.append({"name": "flickr.photos.search", "url": ctx.options["api_base"],
                        "sha256": listing})
    return FlickrPhotos(samples, refs, dropped, report)


def build(ctx: PrepareContext, out: Path) -> None:
    got = ctx.collected_as(FlickrPhotos)
    tags = [t for t in flickr.check_tags(ctx.options["tags"])
            if any(s[0] == t for s in got.samples)]
    index = {t: i for i, t in enumerate(tags)}
    labels = np.array([index[t] for t, _ in got.samples], np.int64)
    result = decode_to_writer(out, [DecodeJob(r) for r in got.refs], labels,
                              image_spec(ctx.options), workers=ctx.workers,
                              dedupe=ctx.options["dedupe"], progress=ctx.progress)
    try:
        kept = result.kept
        photos = [got.samples[i][1] for i in kept]
        meta = {"ids": [p.id for p in photos], "owner": [p.owner for p in photos],
                "owner_name": [p.owner_name or "unknown" for p in photos],
                "license": [p.license for p in photos], "url": [p.page for p in photos],
                "title": [p.title for p in photos]}
        splits = stratified_split(labels[kept], {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        attrs = dict(result.report_attrs())
        attrs["download_skipped"] = json.dumps(dict(sorted(got.report.skipped.items())))
        attrs["shared_dropped"] = got.shared_dropped
        result.writer.finish(splits=splits, classes=tags, meta=meta, extra_attrs=attrs,
                             **ctx.finish_kwargs())
    finally:
        result.writer.close()
