"""The web builders on shards (:mod:`dlprep.scale`): one shard per WARC/ARC file, or per group
of small record files (``commoncrawl``: one file per CDX row).

A shard reads its files, keeps the pages (:func:`.web.page_of`), cleans and chunks their text
into a :class:`~dlprep.scale.text.TextPart` with the page meta, and, with ``--minhash``, adds
the pages' MinHash signatures to the part. :func:`assemble_pages` logs the readers' warnings
and the skip counts in input order, drops near-duplicates by running the LSH over the
signatures in page order (the first of each group kept, as one process does), and hands the
rest to the shared text assembly: the arrays equal the one-process build's whatever the
number of workers or the cluster.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from ..errors import DlprepError
from ..scale.shards import ShardSpec, ranges
from ..scale.text import TextPart, assemble_text, text_options

if TYPE_CHECKING:
    from ..scale import ShardJob
    from .core import PrepareContext

log = logging.getLogger("dlprep")

#: page meta, in the order the one-process builder writes it
META = {"url": "str", "timestamp": "str", "warc_record_id": "str", "language": "str",
        "title": "str", "file": "str"}
PAGE_OPTIONS = ("keep_text", "language", "min_chars", "max_page_bytes", "minhash")


def web_plan(ctx: PrepareContext, inputs: Sequence[tuple[str, Path]],
             per_shard: int = 1) -> list[ShardSpec]:
    """Shards of ``per_shard`` consecutive inputs (``(shown name, path)``), in input order."""
    o = ctx.options
    options = {**text_options(o), **{k: o[k] for k in PAGE_OPTIONS}}
    return [ShardSpec.make(f"web-{k:06d}", [p for _, p in inputs[a:b]], a, b, options={
        **options, "names": [n for n, _ in inputs[a:b]]})
        for k, (a, b) in enumerate(ranges(len(inputs), per_shard))]


def run_pages(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """A shard function: the kept pages of the spec's files, as a TextPart at ``part``;
    returns ``pages``, ``skipped`` (reason -> count) and the readers' ``warnings``."""
    from ..formats.warc import ReadReport, read_records
    from ..text.extract import require_web_extra
    from .web import page_of

    assert part is not None
    require_web_extra()
    o = dict(spec.options)
    text_part = TextPart(o, META)
    skipped: Counter = Counter()
    warnings: list[str] = []
    texts: list[str] = []
    for name, path in zip(spec.option("names"), spec.paths, strict=True):
        report = ReadReport()
        for rec in read_records(Path(path), report):
            page = page_of(rec, o, skipped)
            if page is None:
                continue
            page.file = name
            text_part.add(page.text, {"url": page.url, "timestamp": page.timestamp,
                                      "warc_record_id": page.record_id,
                                      "language": page.language, "title": page.title,
                                      "file": page.file})
            if o["minhash"]:
                texts.append(page.text)
        warnings += report.warnings(name)
    text_part.write(part)
    if o["minhash"]:
        from .web_dedupe import signatures

        with h5py.File(part, "a") as f:
            f.create_dataset("minhash", data=signatures(texts))
    return {"pages": text_part.n_texts, "skipped": dict(skipped), "warnings": warnings}


def assemble_pages(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    """The text dataset of the job's parts (see the module docstring)."""
    skipped: Counter = Counter()
    pages = 0
    for stats in job.stats:
        for line in stats["warnings"]:
            log.warning("%s", line)
        skipped.update(stats["skipped"])
        pages += stats["pages"]
    if skipped:
        log.info("skipped records: %s", ", ".join(f"{k}: {v}" for k, v in skipped.most_common()))
    drop: list[set[int]] = [set() for _ in job.parts]
    if ctx.options["minhash"] and pages:
        from .web_dedupe import near_duplicates_of

        def blocks():  # type: ignore[no-untyped-def]
            for part in job.parts:
                with h5py.File(part, "r") as f:
                    yield f["minhash"][()]

        dropped = near_duplicates_of(blocks(), ctx.options["minhash_threshold"])
        if dropped:
            log.info("dropped %d near-duplicate pages (MinHash)", len(dropped))
        start = 0
        for k, stats in enumerate(job.stats):
            drop[k] = {i - start for i in dropped if start <= i < start + stats["pages"]}
            start += stats["pages"]
        pages -= len(dropped)
    if not pages:
        names = [n for spec in job.specs for n in spec.option("names")]
        why = ", ".join(f"{k}: {v}" for k, v in skipped.most_common(4)) or "no response records"
        raise DlprepError(f"dataset {ctx.name}: no page text in {', '.join(names)} ({why})")
    log.info("%d pages kept", pages)
    assemble_text(ctx, out, job, META, drop_texts=drop)

