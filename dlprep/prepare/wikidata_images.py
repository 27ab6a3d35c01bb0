"""The ``wikidata-images`` connector: a SPARQL query -> Commons thumbnails -> labelled images.

``dlprep fetch wikidata-images --query cats.rq --label-var breedLabel --image-var image
--size 64`` runs the query (cached; ``--offline`` replays it), downloads each distinct image's
thumbnail from Commons (md5 path scheme, ``--commons-base`` for a mirror, at most 2 requests
at a time), reads licence and author from the Commons API into ``meta/license``,
``meta/author`` (with ``meta/ids`` the file name and ``meta/url`` its page), and writes the
image dataset through the shared image pipeline (classes = the label values, stratified
split). Images that fail to download or decode are skipped and listed in ``skipped``.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DlprepError, FetchError
from ..fetch.download import FileSpec, fetch_file
from ..formats.images import DecodeJob, ImageRef
from ..sources import commons
from ..sources.wikidata import DEFAULT_ENDPOINT, SparqlClient
from ..sources.wikipedia import wikimedia_session
from .core import PrepareContext
from .images import IMAGE_PARAMS, decode_to_writer, image_spec
from .params import Param
from .splits import stratified_split

log = logging.getLogger("dlprep")

PARAMS = (
    Param("query", "str", None, "SPARQL query file (.rq)"),
    Param("label_var", "str", None, "query variable holding the class label"),
    Param("image_var", "str", "image", "query variable holding the Commons image (P18)"),
    Param("endpoint", "str", DEFAULT_ENDPOINT, "SPARQL endpoint"),
    Param("commons_base", "str", commons.DEFAULT_BASE, "Commons upload host (or a mirror)"),
    Param("commons_api", "str", commons.DEFAULT_API, "Commons API for licence and author"),
    Param("thumb_width", "int", 250, "width of the thumbnails downloaded, in pixels"),
    Param("max_per_label", "int", 0, "at most this many images per label (0: all)"),
    *IMAGE_PARAMS,
    Param("test_fraction", "float", 0.2, "share of each class in the test split"),
    Param("seed", "int", 0, "seed of the stratified split"),
)
RUNTIME_OPTIONS = ("workers",)


def _samples(ctx: PrepareContext) -> list[tuple[str, str]]:
    o = ctx.options
    if not o["query"] or not o["label_var"]:
        raise DlprepError("wikidata-images: give --query FILE.rq and --label-var VAR")
    path = Path(o["query"]).expanduser()
    if not path.is_file():
        raise DlprepError(f"--query: {path} does not exist")
    query = path.read_text("utf-8")
    ctx.inputs["query_sha256"] = hashlib.sha256(query.encode()).hexdigest()
    result = SparqlClient(ctx.cache.api_dir("wikidata"), endpoint=o["endpoint"],
                          offline=ctx.offline).query(query)
    for var in (o["label_var"], o["image_var"]):
        if var.lstrip("?") not in result.variables:
            raise DlprepError(f"--{'label' if var == o['label_var'] else 'image'}-var: the "
                              f"query has no variable {var!r} (it has "
                              f"{', '.join(result.variables)})")
    li = result.variables.index(o["label_var"].lstrip("?"))
    ii = result.variables.index(o["image_var"].lstrip("?"))
    seen: set[str] = set()
    per_label: dict[str, int] = {}
    samples = []
    for row in result.rows:
        label, image = row[li], row[ii]
        if not label or not image:
            continue
        name = commons.file_name(image)
        if name in seen:
            continue
        if o["max_per_label"] and per_label.get(label, 0) >= o["max_per_label"]:
            continue
        seen.add(name)
        per_label[label] = per_label.get(label, 0) + 1
        samples.append((label, name))
    if not samples:
        raise DlprepError(f"wikidata-images: the query returned no row with both "
                          f"?{o['label_var']} and ?{o['image_var']}")
    return samples


@dataclass(frozen=True)
class Thumbnails:
    """What ``collect`` hands to ``build``: (label, file name) samples, their image refs
    (missing ones carry the reason) and licence/author per file name."""

    samples: list[tuple[str, str]]
    refs: list[ImageRef]
    info: dict[str, dict[str, str]]


def collect(ctx: PrepareContext) -> Thumbnails:
    o = ctx.options
    samples = _samples(ctx)
    dest = ctx.raw_dir / f"thumbs-{o['thumb_width']}"

    def one(item: tuple[str, str]) -> ImageRef:
        _, name = item
        url = commons.thumb_url(name, o["thumb_width"], o["commons_base"])
        digest = hashlib.md5(name.encode()).hexdigest()[:16]
        spec = FileSpec(name=f"{digest}{Path(name).suffix.lower()[:5] or '.img'}", urls=[url],
                        checksum_optional=True)
        try:
            path = fetch_file(spec, dest, ctx.fetch_options.with_(progress=False),
                              session=wikimedia_session())
        except FetchError as exc:
            log.warning("skipped %s: %s", name, exc)
            return ImageRef(name=name, missing=f"download failed: {exc}")
        return ImageRef(name=name, path=str(path))

    with ThreadPoolExecutor(max_workers=commons.MAX_CONCURRENT) as pool:
        refs = list(pool.map(one, samples))
    info = commons.licences([n for _, n in samples], ctx.cache.api_dir("commons"),
                            api=o["commons_api"], offline=ctx.offline)
    listing = hashlib.sha256("\n".join(f"{label}\t{name}" for label, name in samples)
                             .encode()).hexdigest()
    ctx.inputs["images"] = listing
    ctx.sources.append({"name": "commons-thumbnails", "url": o["commons_base"],
                        "sha256": listing})
    return Thumbnails(samples, refs, info)


def build(ctx: PrepareContext, out: Path) -> None:
    got = ctx.collected_as(Thumbnails)
    samples, refs, info = got.samples, got.refs, got.info
    classes = sorted({label for label, _ in samples})
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[label] for label, _ in samples], np.int64)
    result = decode_to_writer(out, [DecodeJob(r) for r in refs], labels,
                              image_spec(ctx.options), workers=ctx.workers,
                              dedupe=ctx.options["dedupe"], progress=ctx.progress)
    try:
        kept = result.kept
        names = [samples[i][1] for i in kept]
        meta = {"ids": names,
                "license": [info[n]["license"] or "unknown" for n in names],
                "author": [info[n]["author"] or "unknown" for n in names],
                "url": [commons.file_page(n) for n in names]}
        splits = stratified_split(labels[kept], {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        result.writer.finish(splits=splits, classes=classes, meta=meta,
                             extra_attrs=result.report_attrs(), **ctx.finish_kwargs())
    finally:
        result.writer.close()
