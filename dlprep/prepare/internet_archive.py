"""The ``internet-archive`` connector: a search -> item metadata -> verified files -> a dataset.

``dlprep fetch internet-archive --query 'collection:nasa AND mediatype:image' --format JPEG
--label subject --size 64 --name nasa`` searches (scrape API, or ``--search advancedsearch``),
reads each item's metadata, takes up to ``--max-per-item`` files of ``--format`` per item
(JPEG or PNG: an image dataset through the shared image pipeline; Text or DjVuTXT: a text
dataset through the shared text pipeline), downloads them verified against the md5/sha1 of the
item metadata, and labels each by the item's ``--label`` metadata field.

Label rule (multi-valued fields such as ``subject``): a field's values are the list the
metadata holds, a ``;``-separated string split into its parts. Without ``--classes`` the label
is the first value. With ``--classes a,b`` the label is the one class that the item's values
name (compared case-insensitively); an item naming none of them, or two or more, is skipped and
counted. ``--label none`` (texts only) makes an unlabelled corpus. Skipped items and files are
counted by reason on stderr and in the ``ia_skipped`` attribute (images also list each file in
``skipped``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DlprepError
from ..formats.images import DecodeJob, ImageRef
from ..redact import redact_url
from ..sources import internet_archive as ia
from ..text.clean import strip_gutenberg
from .core import PrepareContext
from .images import IMAGE_PARAMS, decode_to_writer, image_spec
from .params import Param
from .splits import stratified_split
from .text import TEXT_PARAMS, write_text_dataset

log = logging.getLogger("dlprep")

_SHARED = {"dedupe", "test_fraction", "seed"}
_TEXT_ONLY = tuple(p for p in TEXT_PARAMS if p.name not in _SHARED)
_IMAGE_ONLY = tuple(p for p in IMAGE_PARAMS if p.name not in _SHARED | {"workers"})

PARAMS = (
    Param("query", "str", None, "Internet Archive search, e.g. 'collection:nasa AND "
                                "mediatype:image'"),
    Param("format", "str", "JPEG", "files to take: JPEG or PNG (an image dataset), Text or "
                                   "DjVuTXT (a text dataset; Text takes DjVuTXT when an item "
                                   "has no plain text)", tuple(ia.FORMATS)),
    Param("label", "str", "subject", "metadata field giving the label (first value, or the "
                                     "one in --classes); none: unlabelled (texts only)"),
    Param("classes", "list", None, "keep items whose --label values name exactly one of "
                                   "these (comma-separated)"),
    Param("max_items", "int", 100, "search results to read (0: all)"),
    Param("max_per_item", "int", 1, "files taken per item (0: all)"),
    Param("max_per_label", "int", 0, "at most this many files per label (0: all)"),
    Param("search", "str", "scrape", "search API: scrape (cursor) or advancedsearch (pages)",
          ("scrape", "advancedsearch")),
    Param("api_base", "str", ia.DEFAULT_BASE, "base URL of search, metadata and downloads "
                                              "(or a mirror)"),
    *_IMAGE_ONLY,
    Param("workers", "int", 1, "image decode processes (output bytes do not depend on it)"),
    Param("dedupe", "str", "auto", "drop duplicates: images none/exact/perceptual, texts "
                                   "exact/none (auto: images none, texts exact)",
          ("auto", "none", "exact", "perceptual")),
    *_TEXT_ONLY,
    Param("strip_gutenberg", "bool", True, "texts: remove a Project Gutenberg header/footer "
                                           "when found"),
    Param("test_fraction", "float", 0.2, "share of each class in the test split"),
    Param("seed", "int", 0, "seed of the split"),
)
RUNTIME_OPTIONS = ("workers",)


@dataclass(frozen=True)
class Sample:
    """One downloaded, verified file and its label (None: unlabelled)."""

    item: ia.IaItem
    file: ia.IaFile
    label: str | None
    path: Path


@dataclass
class Collected:
    """What ``collect`` hands to ``build``."""

    kind: str
    samples: list[Sample]
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    base: str = ia.DEFAULT_BASE


def _normalise(ctx: PrepareContext) -> str:
    """Check the options and keep only those of the dataset kind (the config hash then
    depends on what shapes the output); return the kind."""
    o = ctx.options
    if not o["query"] or not str(o["query"]).strip():
        raise DlprepError("internet-archive: give a search with --query, e.g. "
                          "--query 'collection:nasa AND mediatype:image'")
    kind = ia.FORMATS[o["format"]][0]
    if not o["label"] or (o["label"].lower() == "none" and kind == "image"):
        raise DlprepError(f"internet-archive: --format {o['format']} needs --label FIELD (a "
                          f"metadata field such as subject or collection)")
    drop = {p.name for p in (_TEXT_ONLY if kind == "image" else _IMAGE_ONLY)}
    drop |= {"strip_gutenberg"} if kind == "image" else set()
    for name in drop:
        o.pop(name, None)
    dedupe = o["dedupe"]
    if kind == "image":
        o["dedupe"] = "none" if dedupe == "auto" else dedupe
    else:
        if dedupe == "perceptual":
            raise DlprepError("internet-archive: --dedupe perceptual is for images; texts "
                              "take exact or none")
        o["dedupe"] = dedupe != "none"
    if o["label"].lower() == "none":
        o["label"], o["classes"] = "none", None
    return kind


def label_of(item: ia.IaItem, field_name: str, classes: list[str] | None) -> tuple[str | None,
                                                                                   str]:
    """(label, "") or (None, why the item has no label), by the rule in the module doc."""
    values = item.values(field_name)
    if not classes:
        return (values[0], "") if values else (None, f"no {field_name} value")
    folded = {v.casefold() for v in values}
    named = [c for c in classes if c.casefold() in folded]
    if len(named) == 1:
        return named[0], ""
    return None, (f"{field_name} names none of --classes" if not named
                  else f"{field_name} names two or more of --classes")


def _items(client: ia.InternetArchive, ids: list[str]) -> list[ia.IaItem | None]:
    with ThreadPoolExecutor(max_workers=max(1, client.policy.max_in_flight)) as pool:
        return list(pool.map(client.item, ids))


def collect(ctx: PrepareContext) -> Collected:
    kind = _normalise(ctx)
    o = ctx.options
    keys = ia.load_keys()  # before any request: one of the two alone is an error
    client = ia.InternetArchive(o["api_base"], ctx.cache.api_dir(ia.SOURCE), ctx.fetch_options,
                                keys=keys)
    ids = client.search(o["query"], limit=o["max_items"], method=o["search"])
    if not ids:
        path = ia.SCRAPE_PATH if o["search"] == "scrape" else ia.ADVANCED_PATH
        raise DlprepError(f"internet-archive: the search {o['query']!r} found no items "
                          f"({client.base}/{path})")
    skipped: dict[str, int] = {}

    def skip(reason: str, n: int = 1) -> None:
        skipped[reason] = skipped.get(reason, 0) + n

    unlabelled = o["label"] == "none"
    chosen: list[tuple[ia.IaItem, ia.IaFile, str | None]] = []
    per_label: dict[str | None, int] = {}
    for ident, item in zip(ids, _items(client, ids), strict=True):
        if item is None:
            log.info("skipped %s: the archive has no such public item (metadata {})", ident)
            skip("no such item (metadata {})")
            continue
        label, why = (None, "") if unlabelled else label_of(item, o["label"], o["classes"])
        if why:
            skip(why)
            continue
        files, unverifiable = ia.select_files(item, o["format"], o["max_per_item"])
        if unverifiable:
            skip("no md5/sha1 in the item metadata", unverifiable)
        if not files and not unverifiable:
            skip(f"no {o['format']} file")
        for f in files:
            if o["max_per_label"] and per_label.get(label, 0) >= o["max_per_label"]:
                break
            per_label[label] = per_label.get(label, 0) + 1
            chosen.append((item, f, label))
    if not chosen:
        raise DlprepError(f"internet-archive: none of the {len(ids)} items found has a "
                          f"{o['format']} file with a checksum"
                          + ("" if unlabelled else f" and a usable {o['label']!r} value")
                          + f" (skipped {ia.describe_skips(skipped)})")
    report = client.download([(item.identifier, f) for item, f, _ in chosen],
                             ctx.raw_dir / "files")
    samples: list[Sample] = []
    skipped_files: list[dict[str, str]] = []
    for item, f, label in chosen:
        key = (item.identifier, f.name)
        if key in report.paths:
            samples.append(Sample(item, f, label, report.paths[key]))
        else:
            skipped_files.append({"name": f"{item.identifier}/{f.name}",
                                  "reason": report.reasons[key]})
    for reason, n in report.skipped.items():
        skip(reason, n)
    if skipped:
        log.warning("internet-archive: skipped %s", ia.describe_skips(skipped))
    if any(r in skipped for r in ("HTTP 401", "HTTP 403")) and keys is None:
        log.warning("internet-archive: some files were refused (HTTP 401/403); restricted "
                    "items need IA_ACCESS_KEY and IA_SECRET_KEY")
    if not samples:
        raise DlprepError(f"internet-archive: no file could be downloaded and verified "
                          f"(skipped {ia.describe_skips(skipped)})")
    listing = hashlib.sha256("\n".join(
        f"{s.item.identifier}\t{s.file.name}\t{s.file.md5 or s.file.sha1}\t{s.label}"
        for s in samples).encode()).hexdigest()
    ctx.inputs["ia_files"] = listing
    ctx.sources.append({"name": "internet-archive-files", "url": redact_url(client.base),
                        "sha256": listing})
    log.info("internet-archive: %d files from %d items, verified", len(samples),
             len({s.item.identifier for s in samples}))
    return Collected(kind, samples, skipped, skipped_files, redact_url(client.base))


def _meta(samples: list[Sample], base: str) -> dict[str, list[str]]:
    return {"ids": [f"{s.item.identifier}/{s.file.name}" for s in samples],
            "identifier": [s.item.identifier for s in samples],
            "file": [s.file.name for s in samples],
            "title": [s.item.title for s in samples],
            "license": [s.item.license_url or "unknown" for s in samples],
            "url": [ia.details_url(base, s.item.identifier) for s in samples]}


def build(ctx: PrepareContext, out: Path) -> None:
    got = ctx.collected_as(Collected)
    if got.kind == "image":
        _build_images(ctx, out, got)
    else:
        _build_texts(ctx, out, got)


def _build_images(ctx: PrepareContext, out: Path, got: Collected) -> None:
    samples = got.samples
    classes = sorted({str(s.label) for s in samples})
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(s.label)] for s in samples], np.int64)
    refs = [ImageRef(name=f"{s.item.identifier}/{s.file.name}", path=str(s.path))
            for s in samples]
    result = decode_to_writer(out, [DecodeJob(r) for r in refs], labels,
                              image_spec(ctx.options), workers=ctx.workers,
                              dedupe=ctx.options["dedupe"], progress=ctx.progress,
                              skipped=got.skipped_files)
    try:
        kept = result.kept
        meta = _meta([samples[i] for i in kept], got.base)
        splits = stratified_split(labels[kept], {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        attrs = {**result.report_attrs(), "ia_skipped": ia.dumps_skips(got.skipped)}
        result.writer.finish(splits=splits, classes=classes, meta=meta, extra_attrs=attrs,
                             **ctx.finish_kwargs())
    finally:
        result.writer.close()


def _read_text(path: Path, strip: bool) -> str | None:
    """The file as UTF-8 text (a Gutenberg header/footer removed when asked and found);
    None when it is not UTF-8."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff")
    if strip:
        pg = strip_gutenberg(text)
        if pg.found_start:
            return pg.body
    return text


def _build_texts(ctx: PrepareContext, out: Path, got: Collected) -> None:
    strip = ctx.options["strip_gutenberg"]
    samples = []
    skipped = dict(got.skipped)
    for s in got.samples:  # one file in memory at a time
        if _read_text(s.path, strip) is None:
            log.warning("skipped %s/%s: not UTF-8 text", s.item.identifier, s.file.name)
            skipped["not UTF-8 text"] = skipped.get("not UTF-8 text", 0) + 1
            continue
        samples.append(s)
    if not samples:
        raise DlprepError(f"internet-archive: none of the {len(got.samples)} text files is "
                          f"UTF-8 text")

    def bodies() -> Iterator[str]:  # re-read per pass
        for s in samples:
            yield _read_text(s.path, strip) or ""

    labels = None if ctx.options["label"] == "none" else [str(s.label) for s in samples]
    write_text_dataset(ctx, out, bodies, _meta(samples, got.base), labels=labels,
                       extra_attrs={"ia_skipped": ia.dumps_skips(skipped)})
