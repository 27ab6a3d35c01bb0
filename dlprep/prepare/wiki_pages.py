"""Dump pages -> records (title, ids, plain text, infobox, links), serially or on Dask.

Work is cut into tasks that are pure functions of their input: a multistream block (a byte
range of the dump, decoded in the worker) when an index is given, else a batch of raw
``<page>`` elements read by the main process (bz2 decoded by ``indexed_bzip2`` on several
threads when installed). Results are consumed in task order through a bounded window
(:meth:`dlprep.scale.Executor.imap`), so the output does not depend on the number of workers
and memory stays flat. The ``wikipedia`` builder shards the same functions instead
(:mod:`dlprep.prepare.wikipedia`). A page that fails to
parse or clean is counted (with its title) and skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..formats import mediawiki as mw
from ..formats.wikitext import clean_wikitext, normalize_title, template_fields, wikilinks

log = logging.getLogger("dlprep")

BATCH_PAGES = 100  # raw pages per task when there is no index (like one multistream block)
BLOCKS_PER_TASK = 1  # one multistream block (100 pages) per task: even load over workers


@dataclass(frozen=True)
class PageOptions:
    """What to do with each page (picklable: it travels to the workers)."""

    namespaces: frozenset[int] = frozenset({0})
    headings: bool = True
    template: str | None = None
    text: bool = True
    links: bool = False


@dataclass(frozen=True)
class Record:
    """One kept page. ``infobox``: JSON of the ``--template`` fields ("" without one)."""

    title: str
    page_id: int
    revision_id: int
    ns: int
    text: str = ""
    infobox: str = ""
    links: tuple[str, ...] = ()


@dataclass
class Counts:
    """What happened to the pages: kept, redirects skipped, other namespaces, without the
    template, errors (with a few examples), and why the dump ended early (if it did)."""

    pages: int = 0
    kept: int = 0
    redirects: int = 0
    other_ns: int = 0
    no_template: int = 0
    errors: int = 0
    examples: list[str] = field(default_factory=list)
    truncated: str = ""
    redirect_map: dict[str, str] = field(default_factory=dict)
    collect_redirects: bool = False

    def add(self, other: Counts) -> None:
        for k in ("pages", "kept", "redirects", "other_ns", "no_template", "errors"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])
        if self.collect_redirects:
            self.redirect_map.update(other.redirect_map)

    def summary(self) -> str:
        parts = [f"{self.kept:,} pages kept of {self.pages:,}",
                 f"{self.redirects:,} redirects skipped"]
        if self.other_ns:
            parts.append(f"{self.other_ns:,} in other namespaces")
        if self.no_template:
            parts.append(f"{self.no_template:,} without the template")
        if self.errors:
            parts.append(f"{self.errors:,} unreadable ({'; '.join(self.examples[:3])})")
        return ", ".join(parts)


_COUNT_FIELDS = ("pages", "kept", "redirects", "other_ns", "no_template", "errors")


def counts_stats(counts: Counts) -> dict[str, Any]:
    """``counts`` as plain JSON values (a shard's stats in the manifest)."""
    return {**{k: getattr(counts, k) for k in _COUNT_FIELDS},
            "examples": counts.examples[:5], "truncated": counts.truncated}


def counts_from_stats(stats: dict[str, Any]) -> Counts:
    return Counts(**{k: int(stats[k]) for k in _COUNT_FIELDS},
                  examples=list(stats["examples"]), truncated=str(stats["truncated"]))


def process_pages(raws: Sequence[bytes], opts: PageOptions,
                  redirects: bool = False) -> tuple[list[Record], Counts]:
    """Parse and clean raw ``<page>`` elements (pure: any process can run it)."""
    counts = Counts(collect_redirects=redirects)
    out: list[Record] = []
    for raw in raws:
        counts.pages += 1
        title = "?"
        try:
            page = mw.parse_page(raw)
            title = page.title
            if page.redirect is not None:
                counts.redirects += 1
                if redirects and page.ns in opts.namespaces:
                    counts.redirect_map[normalize_title(page.title)] = \
                        normalize_title(page.redirect)
                continue
            if page.ns not in opts.namespaces:
                counts.other_ns += 1
                continue
            infobox = ""
            if opts.template:
                fields = template_fields(page.text, opts.template)
                if fields is None:
                    counts.no_template += 1
                    continue
                infobox = json.dumps(fields, ensure_ascii=False, sort_keys=True)
            out.append(Record(
                title=page.title, page_id=page.page_id, revision_id=page.revision_id,
                ns=page.ns,
                text=clean_wikitext(page.text, headings=opts.headings) if opts.text else "",
                infobox=infobox,
                links=tuple(wikilinks(page.text)) if opts.links else ()))
            counts.kept += 1
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            if title == "?" and (m := mw.TITLE.search(raw)) is not None:
                title = m.group(1).decode("utf-8", "replace")
            counts.errors += 1
            if len(counts.examples) < 5:
                counts.examples.append(f"{title}: {exc}")
    return out, counts


def process_block(path: str, start: int, end: int, opts: PageOptions,
                  redirects: bool = False) -> tuple[list[Record], Counts]:
    """Decode the multistream block(s) in ``[start, end)`` and process their pages."""
    try:
        data = mw.read_block(path, start, end)
    except FormatError as exc:
        counts = Counts(errors=1, examples=[str(exc)], truncated=str(exc))
        return [], counts
    return process_pages(mw.split_pages(data), opts, redirects)


@dataclass(frozen=True)
class DumpPart:
    """One dump file and, optionally, its multistream index."""

    dump: Path
    index: Path | None = None


def block_tasks(part: DumpPart) -> Iterator[tuple[int, int]]:
    assert part.index is not None
    distinct: set[int] = set()  # one per block (100 pages): small even for enwiki
    for e in mw.read_index(part.index):
        distinct.add(e.offset)
    offsets = sorted(distinct)
    if not offsets:
        raise FormatError(part.index, -1, "the index lists no pages")
    size = part.dump.stat().st_size
    if max(offsets) >= size:
        raise FormatError(part.index, -1, f"offset {max(offsets):,} is past the end of "
                                          f"{part.dump.name} ({size:,} bytes); does the index "
                                          f"belong to this dump?")
    ranges = mw.block_ranges(offsets, size)
    mw.check_root(mw.read_block(part.dump, 0)[:1 << 16], str(part.dump))  # header stream
    for i in range(0, len(ranges), BLOCKS_PER_TASK):
        group = ranges[i:i + BLOCKS_PER_TASK]
        yield group[0][0], group[-1][1]


def raw_batches(part: DumpPart, counts: Counts, workers: int) -> Iterator[list[bytes]]:
    report = mw.ReadReport()
    batch: list[bytes] = []
    with mw.open_dump(part.dump, workers=workers) as stream:
        for raw in mw.iter_raw_pages(stream, str(part.dump), report):
            batch.append(raw)
            if len(batch) >= BATCH_PAGES:
                yield batch
                batch = []
    if batch:
        yield batch
    if report.truncated:
        counts.truncated = f"{part.dump.name}: {report.truncated}"


def _block_item(args: tuple[str, int, int, PageOptions, bool]) -> tuple[list[Record], Counts]:
    return process_block(*args)


def _pages_item(args: tuple[list[bytes], PageOptions, bool]) -> tuple[list[Record], Counts]:
    return process_pages(*args)


def iter_records(parts: Sequence[DumpPart], opts: PageOptions, counts: Counts, *,
                 workers: int = 1, scheduler: str | None = None,
                 max_pages: int = 0) -> Iterator[Record]:
    """Every kept page of ``parts`` in dump order; ``counts`` is filled as they go (the
    truncation warning, if any, is logged once at the end). ``max_pages``: stop after this
    many kept pages (0: all). ``workers`` > 1 or ``scheduler``: the blocks (or, without an
    index, batches of raw pages) are parsed on Dask (:meth:`dlprep.scale.Executor.imap`)."""
    from ..scale import Executor

    redirects = counts.collect_redirects
    kept = 0
    try:
        with Executor(workers, scheduler) as ex:
            for part in parts:
                if part.index is not None:
                    results = ex.imap(_block_item, ((str(part.dump), s, e, opts, redirects)
                                                    for s, e in block_tasks(part)),
                                      what=f"{part.dump.name} block")
                else:
                    results = ex.imap(_pages_item, ((batch, opts, redirects) for batch in
                                                    raw_batches(part, counts, workers)),
                                      what=f"{part.dump.name} batch")
                for records, c in results:
                    counts.add(c)
                    if c.truncated and not counts.truncated:
                        counts.truncated = c.truncated
                    for rec in records:
                        yield rec
                        kept += 1
                        if max_pages and kept >= max_pages:
                            results.close()  # type: ignore[attr-defined]
                            return
    finally:
        if counts.truncated:
            log.warning("%s: the dump ends early (%s); kept every complete page before the "
                        "cut", parts[-1].dump.name if parts else "dump", counts.truncated)
