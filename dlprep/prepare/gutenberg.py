"""The ``gutenberg`` connector: books chosen by id or by a catalog search -> token sequences.

``dlprep fetch gutenberg --ids 100,1342 --name two-books`` or ``dlprep fetch gutenberg --author
Nietzsche --language en --limit 5 --name nietzsche-pg``; ``--mirror BASE`` is tried first (main
layout, then mirror tree). One document per book (or per ``--chunk-chars`` piece) with
``meta/id``, ``title``, ``author``, ``language``, ``license``; split by book.

Downloads stay in ``collect`` (one at a time, polite). The rest is a sharded builder
(:mod:`dlprep.scale`): shards are ranges of the chosen book ids, in the order ``collect`` chose
them; each reads its books from the raw cache, strips the Project Gutenberg header and footer
and writes a text part; ``--workers N`` runs them on a Dask LocalCluster of N processes and
``--scheduler`` on an existing cluster (N = 1: in this process, without Dask). The output does
not depend on either, and an interrupted run resumes from the shards it finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DlprepError
from ..scale import ShardJob, ShardSpec, ranges
from ..scale.text import TextPart, assemble_text, text_options
from ..sources.gutenberg import (
    DEFAULT_BASE,
    GutenbergClient,
    parse_ids,
    read_book,
    read_catalog,
    search_catalog,
)
from ..text.clean import strip_gutenberg
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS

PARAMS: tuple[Param, ...] = (
    Param("ids", "int-list", None, "book numbers, e.g. 100,1342"),
    Param("author", "str", None, "catalog search: author contains this (case-insensitive)"),
    Param("title", "str", None, "catalog search: title contains this"),
    Param("subject", "str", None, "catalog search: a subject or bookshelf contains this"),
    Param("language", "str", None, "catalog search: language code, e.g. en"),
    Param("limit", "int", 20, "catalog search: at most this many books (0: all)"),
    Param("base_url", "str", DEFAULT_BASE, "Project Gutenberg site (main layout)"),
    Param("workers", "int", 1, "processes stripping and encoding the books: a Dask "
                               "LocalCluster when > 1 (output does not depend on it)"),
) + TEXT_PARAMS
# options that change how, not what, is built: kept out of the config hash (prepare.core)
RUNTIME_OPTIONS = ("workers",)
#: per-book meta, in the order the file stores it
META = {"id": "int", "title": "str", "author": "str", "language": "str", "license": "str"}
#: about this many shards (fewer books: one a shard), at most :data:`MAX_BOOKS` books each:
#: a book is ~0.4 MB, ~20 ms to strip and clean, while each part costs every stage (parts,
#: counts, encoding) a file, an fsync and, on Dask, a task: on 64 books (load 2.8), 64
#: one-book shards took 1.1x the time of 16 four-book ones in one process, 1.8x on 2 workers
TARGET_SHARDS = 16
MAX_BOOKS = 32


def _client(ctx: PrepareContext) -> GutenbergClient:
    return GutenbergClient(ctx.raw_dir, ctx.fetch_options, base_url=ctx.options["base_url"])


def select_ids(ctx: PrepareContext, client: GutenbergClient) -> list[int]:
    """The book ids the options select (``--ids``, and/or a catalog search)."""
    o = ctx.options
    ids = parse_ids(o["ids"]) if o["ids"] else []
    search = {k: o[k] for k in ("author", "title", "subject", "language") if o[k]}
    if not ids and not search:
        raise DlprepError(f"dataset {ctx.name}: choose books with --ids 100,1342 or a catalog "
                          f"search (--author, --title, --subject, --language)")
    if not search:
        return ids
    entries = search_catalog(read_catalog(client.fetch_catalog()), ids=ids or None,
                             limit=o["limit"] or None, **search)
    if not entries:
        shown = ", ".join(f"--{k} {v!r}" for k, v in search.items())
        raise DlprepError(f"dataset {ctx.name}: no Project Gutenberg text matches {shown}")
    return [e.id for e in entries]


@dataclass
class Books:
    """What ``collect`` chose: the book ids, in order."""

    ids: list[int]


def collect(ctx: PrepareContext) -> Books:
    client = _client(ctx)
    ids = select_ids(ctx, client)
    ctx.inputs["gutenberg_ids"] = ids
    for book_id in ids:
        path = client.fetch_book(book_id)
        rel = path.relative_to(ctx.raw_dir).as_posix()
        ctx.files[str(book_id)] = path
        ctx.add_source(rel, client.urls_used.get(str(path), ""), path)
    return Books(ids)


def books_per_shard(n_books: int) -> int:
    """About :data:`TARGET_SHARDS` shards, 1 to :data:`MAX_BOOKS` books each; never a
    function of the number of workers (a resumed run may use others)."""
    return min(MAX_BOOKS, max(1, -(-n_books // TARGET_SHARDS)))


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    """Shards: consecutive ranges of the chosen book ids (in ``collect``'s order), each
    naming its books' cached files (absolute paths) and the options its parsing needs."""
    ids = ctx.collected_as(Books).ids
    shared = {"text": text_options(ctx.options), "license": ctx.recipe.license}
    return [ShardSpec.make(f"pg-{k:06d}", [ctx.files[str(i)].absolute() for i in ids[a:b]],
                           a, b, options={**shared, "ids": ids[a:b]})
            for k, (a, b) in enumerate(ranges(len(ids), books_per_shard(len(ids))))]


def run_shard(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """Read, strip (header, footer, credits) and clean the shard's books into a
    :class:`TextPart` at ``part`` with their meta."""
    assert part is not None
    text = TextPart(spec.option("text"), META)
    for book_id, path in zip(spec.option("ids"), spec.paths, strict=True):
        pg = strip_gutenberg(read_book(Path(path)))
        text.add(pg.body, {"id": book_id, "title": pg.title, "author": pg.author,
                           "language": pg.language,
                           "license": pg.license or spec.option("license")})
    return text.write(part)


def assemble(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    """The sequence file from the parts: the bytes one process writes with
    ``write_text_dataset`` over the stripped books."""
    assemble_text(ctx, out, job, META)
