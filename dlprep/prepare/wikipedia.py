"""The ``wikipedia`` connector: a MediaWiki dump -> one document per article -> tokens.

``dlprep fetch wikipedia --wiki simplewiki --date latest`` finds the multistream dump and its
index through ``dumpstatus.json`` (``--base-url`` for a mirror) and downloads them with md5
(and size) verified; ``--dump PATH_OR_URL`` (repeatable, with ``--index``) takes files
directly. Pages are streamed (never decompressed to disk): namespace 0 by default, redirects
skipped and counted, wikitext cleaned to plain text (``formats.wikitext``), ``--template NAME``
keeps only pages using that template and stores its fields as ``meta/infobox`` JSON. One
document per page with ``meta/title``, ``meta/page_id``, ``meta/revision_id``; then the shared
text pipeline (``--tokenizer char|word|bpe``). A sharded builder (:mod:`dlprep.scale`):
shards are runs of multistream blocks (from the index; a dump without one is one shard), each
parsed, cleaned and chunked into a part; ``--workers N`` runs them on a Dask LocalCluster of N
processes and ``--scheduler`` on an existing cluster; the output does not depend on either,
and an interrupted run resumes from the parts it finished.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import DlprepError
from ..fetch.download import FileSpec, fetch_file, hash_file, local_source
from ..fetch.verify import require_sha1
from ..scale import ShardJob, ShardSpec, ranges
from ..scale.text import TextPart, assemble_text, text_options
from ..sources.wikipedia import (
    DEFAULT_BASE,
    DumpsClient,
    DumpSet,
    check_date,
    check_wiki,
    wikimedia_session,
)
from .core import PrepareContext, file_sha256
from .params import Param
from .text import TEXT_PARAMS
from .wiki_pages import (
    Counts,
    DumpPart,
    PageOptions,
    block_tasks,
    counts_from_stats,
    counts_stats,
    process_block,
    process_pages,
    raw_batches,
)

log = logging.getLogger("dlprep")

PARAMS: tuple[Param, ...] = (
    Param("wiki", "str", None, "wiki database name, e.g. simplewiki, enwiki"),
    Param("date", "str", "latest", "dump run: latest or YYYYMMDD"),
    Param("base_url", "str", DEFAULT_BASE, "dumps site or a mirror of its layout"),
    Param("dump", "list", None, "dump file(s), path or URL (instead of --wiki)"),
    Param("index", "list", None, "multistream index file(s) for --dump, same order"),
    Param("namespaces", "int-list", [0], "page namespaces to keep (0: articles)"),
    Param("headings", "bool", True, "keep section headings as lines of text"),
    Param("template", "str", None, "keep only pages using this template (e.g. 'Infobox film'); "
                                   "its fields go to meta/infobox"),
    Param("max_pages", "int", 0, "stop after this many kept pages (0: all)"),
    Param("workers", "int", 1, "processes parsing the dump: a Dask LocalCluster when > 1 "
                               "(output does not depend on it; see --scheduler)"),
) + TEXT_PARAMS
RUNTIME_OPTIONS = ("workers",)
MAX_BLOCKS = 50  # multistream blocks (100 pages each) per shard, at most


def _name_of(url: str) -> str:
    return Path(unquote(urlsplit(url).path)).name or "dump.xml.bz2"


def local_sha256(path: Path, memo_dir: Path) -> str:
    """sha256 of a user's file, memoised in ``memo_dir`` (keyed by path, size and mtime) --
    never next to the file itself, which may be read-only or someone else's folder."""
    st = path.stat()
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    memo = memo_dir / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".sha256")
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    digest = hash_file(path, "sha256")
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        memo.write_text(digest + "\n")
    except OSError:
        pass
    return digest


def _fetch_given(ctx: PrepareContext, what: str, value: str) -> Path:
    """A ``--dump``/``--index`` value: a local file (used in place) or a URL (cached)."""
    src = local_source(value)
    if src is not None:
        if not src.is_file():
            raise DlprepError(f"--{what}: {value} does not exist")
        src = src.resolve()
        digest = local_sha256(src, ctx.raw_dir / "local-hashes")
        ctx.sources.append({"name": src.name, "url": src.as_uri(), "sha256": digest})
        return src
    return _fetch_wikimedia(ctx, FileSpec(name=_name_of(value), urls=[value],
                                          checksum_optional=True), "given")


def _fetch_wikimedia(ctx: PrepareContext, spec: FileSpec, subdir: str) -> Path:
    """``ctx.fetch`` with the Wikimedia User-Agent (the dumps site blocks generic ones)."""
    path = fetch_file(spec, ctx.raw_dir / subdir, ctx.fetch_options, session=wikimedia_session())
    ctx.sources.append({"name": f"{subdir}/{spec.name}", "url": spec.urls[0],
                        "sha256": file_sha256(path)})
    return path


def _fetch_set(ctx: PrepareContext, ds: DumpSet) -> list[DumpPart]:
    parts = []
    for dump, index in zip(ds.dumps, ds.indexes, strict=True):
        paths = []
        for f in (dump, index):
            if f is None:
                paths.append(None)
                continue
            spec = FileSpec(name=f.name, urls=[f.url], size=f.size, md5=f.md5,
                            checksum_optional=True)
            path = _fetch_wikimedia(ctx, spec, f"{ds.wiki}/{ds.date}")
            if f.sha1 and not f.md5:
                require_sha1(path, f.sha1, f.url, f.name)
            paths.append(path)
        parts.append(DumpPart(paths[0], paths[1]))  # type: ignore[arg-type]
    return parts


@dataclass(frozen=True)
class DumpParts:
    """What ``collect`` hands to ``build``: the dump files, each with its index (or None)."""

    parts: tuple[DumpPart, ...]


def collect(ctx: PrepareContext) -> DumpParts:
    o = ctx.options
    if o["dump"]:
        if o["index"] and len(o["index"]) != len(o["dump"]):
            raise DlprepError(f"--index: give one index per --dump ({len(o['dump'])} dumps, "
                              f"{len(o['index'])} indexes)")
        dumps = [_fetch_given(ctx, "dump", d) for d in o["dump"]]
        indexes = [_fetch_given(ctx, "index", i) for i in o["index"]] if o["index"] else \
            [None] * len(dumps)
        parts = [DumpPart(d, i) for d, i in zip(dumps, indexes, strict=True)]
    elif o["wiki"]:
        check_wiki(o["wiki"])
        check_date(o["date"])
        client = DumpsClient(ctx.raw_dir, base_url=o["base_url"], offline=ctx.offline)
        ds = client.dump_set(o["wiki"], o["date"])
        ctx.inputs["dump"] = f"{ds.wiki}/{ds.date}"
        parts = _fetch_set(ctx, ds)
    else:
        raise DlprepError(f"dataset {ctx.name}: choose a dump with --wiki simplewiki [--date "
                          f"latest|YYYYMMDD] or --dump PATH_OR_URL")
    if not o["namespaces"]:
        raise DlprepError("--namespaces: give at least one namespace number, e.g. 0")
    return DumpParts(tuple(parts))


def page_options(o: dict) -> PageOptions:
    return PageOptions(namespaces=frozenset(o["namespaces"]), headings=o["headings"],
                       template=o["template"] or None)


def _meta_kinds(o: dict) -> dict[str, str]:
    kinds = {"title": "str", "page_id": "int", "revision_id": "int"}
    if o["template"]:
        kinds["infobox"] = "str"
    if set(o["namespaces"]) != {0}:
        kinds["ns"] = "int"
    return kinds


def _blocks_per_shard(n_blocks: int) -> int:
    """About 64 shards for a small dump, at most MAX_BLOCKS blocks (~5,000 pages) each for a
    large one; never a function of the number of workers (a resumed run may use others)."""
    return min(MAX_BLOCKS, max(1, -(-n_blocks // 64)))


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    """Shards: runs of multistream blocks of each dump (from its index); a dump without an
    index is one shard."""
    o = ctx.options
    shared = {"namespaces": sorted(o["namespaces"]), "headings": o["headings"],
              "template": o["template"] or None, "text": text_options(o)}
    specs = []
    for p, part in enumerate(ctx.collected_as(DumpParts).parts):
        if part.index is None:
            specs.append(ShardSpec.make(f"d{p:03d}-whole", [part.dump.absolute()],
                                        options=shared))
            continue
        blocks = list(block_tasks(part))
        for k, (a, b) in enumerate(ranges(len(blocks), _blocks_per_shard(len(blocks)))):
            starts = [s for s, _ in blocks[a:b]]
            specs.append(ShardSpec.make(f"d{p:03d}-{k:06d}", [part.dump.absolute()],
                                        start=starts[0],
                                        end=blocks[b - 1][1],
                                        options={**shared, "blocks": starts}))
    return specs


def run_shard(spec: ShardSpec, part: Path | None) -> dict:
    """Parse and clean the pages of one shard into a :class:`TextPart` at ``part``."""
    assert part is not None
    opts = PageOptions(namespaces=frozenset(spec.option("namespaces")),
                       headings=spec.option("headings"), template=spec.option("template"))
    o = {"template": opts.template, "namespaces": list(opts.namespaces)}
    text = TextPart(spec.option("text"), _meta_kinds(o))
    counts = Counts()
    dump = spec.paths[0]
    if spec.option("blocks") is None:
        batches: Iterator[tuple[list, Counts]] = (
            process_pages(raws, opts) for raws in raw_batches(DumpPart(Path(dump)), counts, 1))
    else:
        bounds = [*spec.option("blocks"), spec.end]
        batches = (process_block(dump, bounds[i], bounds[i + 1], opts)
                   for i in range(len(bounds) - 1))
    for records, c in batches:
        counts.add(c)
        if c.truncated and not counts.truncated:
            counts.truncated = c.truncated
        for rec in records:
            text.add(rec.text, {"title": rec.title, "page_id": rec.page_id,
                                "revision_id": rec.revision_id, "infobox": rec.infobox,
                                "ns": rec.ns})
    return {**text.write(part), **counts_stats(counts)}


def enough(ctx: PrepareContext, stats: list[dict]) -> bool | None:
    """With ``--max-pages``: stop running shards once that many pages are kept (None: no
    limit, run them all at once)."""
    n = ctx.options["max_pages"]
    return sum(s["kept"] for s in stats) >= n if n else None


def assemble(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    o = ctx.options
    counts = Counts()
    for stats in job.stats:
        c = counts_from_stats(stats)
        counts.add(c)
        if c.truncated and not counts.truncated:
            counts.truncated = c.truncated
    log.info("%s", counts.summary())
    if counts.truncated:
        log.warning("%s: the dump ends early (%s); kept every complete page before the cut",
                    Path(job.specs[-1].paths[0]).name if job.specs else "dump",
                    counts.truncated)
    if counts.errors:
        log.warning("%d page(s) could not be read and were skipped (%s)", counts.errors,
                    "; ".join(counts.examples[:3]))
    if not counts.kept:
        what = f" using template {o['template']!r}" if o["template"] else ""
        raise DlprepError(f"dataset {ctx.name}: no page{what} in namespaces "
                          f"{o['namespaces']} ({counts.summary()})")
    assemble_text(ctx, out, job, _meta_kinds(o), max_texts=o["max_pages"])
