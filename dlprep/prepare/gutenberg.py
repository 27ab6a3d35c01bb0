"""The ``gutenberg`` connector: books chosen by id or by a catalog search -> token sequences.

``dlprep fetch gutenberg --ids 100,1342 --name two-books`` or ``dlprep fetch gutenberg --author
Nietzsche --language en --limit 5 --name nietzsche-pg``; ``--mirror BASE`` is tried first (main
layout, then mirror tree). One document per book (or per ``--chunk-chars`` piece) with
``meta/id``, ``title``, ``author``, ``language``, ``license``; split by book.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DlprepError
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
from .text import TEXT_PARAMS, write_text_dataset

PARAMS: tuple[Param, ...] = (
    Param("ids", "int-list", None, "book numbers, e.g. 100,1342"),
    Param("author", "str", None, "catalog search: author contains this (case-insensitive)"),
    Param("title", "str", None, "catalog search: title contains this"),
    Param("subject", "str", None, "catalog search: a subject or bookshelf contains this"),
    Param("language", "str", None, "catalog search: language code, e.g. en"),
    Param("limit", "int", 20, "catalog search: at most this many books (0: all)"),
    Param("base_url", "str", DEFAULT_BASE, "Project Gutenberg site (main layout)"),
) + TEXT_PARAMS


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


def build(ctx: PrepareContext, out: Path) -> None:
    ids = ctx.collected_as(Books).ids
    meta: dict[str, list] = {k: [] for k in ("id", "title", "author", "language", "license")}
    for book_id in ids:
        pg = strip_gutenberg(read_book(ctx.files[str(book_id)]))
        meta["id"].append(book_id)
        meta["title"].append(pg.title)
        meta["author"].append(pg.author)
        meta["language"].append(pg.language)
        meta["license"].append(pg.license or ctx.recipe.license)

    def bodies() -> Iterator[str]:  # re-read per pass: one book in memory at a time
        for book_id in ids:
            yield strip_gutenberg(read_book(ctx.files[str(book_id)])).body

    write_text_dataset(ctx, out, bodies, meta)
