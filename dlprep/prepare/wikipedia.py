"""The ``wikipedia`` connector: a MediaWiki dump -> one document per article -> tokens.

``dlprep fetch wikipedia --wiki simplewiki --date latest`` finds the multistream dump and its
index through ``dumpstatus.json`` (``--base-url`` for a mirror) and downloads them with md5
(and size) verified; ``--dump PATH_OR_URL`` (repeatable, with ``--index``) takes files
directly. Pages are streamed (never decompressed to disk): namespace 0 by default, redirects
skipped and counted, wikitext cleaned to plain text (``formats.wikitext``), ``--template NAME``
keeps only pages using that template and stores its fields as ``meta/infobox`` JSON. One
document per page with ``meta/title``, ``meta/page_id``, ``meta/revision_id``; then the shared
text pipeline (``--tokenizer char|word|bpe``). ``--workers N`` parses blocks on N processes;
the output does not depend on N.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ChecksumError, DlprepError
from ..fetch.download import FileSpec, fetch_file, hash_file, local_source
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
from .text import TEXT_PARAMS, write_text_dataset
from .wiki_pages import Counts, DumpPart, PageOptions, iter_records

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
    Param("workers", "int", 1, "processes parsing the dump (output does not depend on it)"),
) + TEXT_PARAMS
RUNTIME_OPTIONS = ("workers",)


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
                actual = hash_file(path, "sha1")
                if actual != f.sha1:
                    path.unlink(missing_ok=True)
                    raise ChecksumError(f"{f.url}: sha1 mismatch for {f.name}: expected "
                                        f"{f.sha1}, got {actual}")
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


def _spool_write(fh, text: str) -> None:  # type: ignore[no-untyped-def]
    data = text.encode("utf-8", "surrogatepass")
    fh.write(struct.pack("<Q", len(data)))
    fh.write(data)


def _spool_read(path: Path) -> Iterator[str]:
    with open(path, "rb") as fh:
        while head := fh.read(8):
            (n,) = struct.unpack("<Q", head)
            yield fh.read(n).decode("utf-8", "surrogatepass")


def build(ctx: PrepareContext, out: Path) -> None:
    o = ctx.options
    parts = ctx.collected_as(DumpParts).parts
    counts = Counts()
    meta: dict[str, list] = {"title": [], "page_id": [], "revision_id": []}
    if o["template"]:
        meta["infobox"] = []
    if set(o["namespaces"]) != {0}:
        meta["ns"] = []
    spool = out.with_name(out.name + ".pages")
    try:
        with open(spool, "wb") as fh:  # cleaned text, read back by each pass of the pipeline
            for rec in iter_records(parts, page_options(o), counts,
                                    workers=ctx.workers,
                                    max_pages=o["max_pages"]):
                _spool_write(fh, rec.text)
                meta["title"].append(rec.title)
                meta["page_id"].append(rec.page_id)
                meta["revision_id"].append(rec.revision_id)
                if "infobox" in meta:
                    meta["infobox"].append(rec.infobox)
                if "ns" in meta:
                    meta["ns"].append(rec.ns)
        log.info("%s", counts.summary())
        if counts.errors:
            log.warning("%d page(s) could not be read and were skipped (%s)", counts.errors,
                        "; ".join(counts.examples[:3]))
        if not counts.kept:
            what = f" using template {o['template']!r}" if o["template"] else ""
            raise DlprepError(f"dataset {ctx.name}: no page{what} in namespaces "
                              f"{o['namespaces']} ({counts.summary()})")
        write_text_dataset(ctx, out, lambda: _spool_read(spool), meta)
    finally:
        spool.unlink(missing_ok=True)
