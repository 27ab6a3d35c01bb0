"""The ``text-files`` builder: each recipe file is one document (a Project Gutenberg
header/footer is stripped when present); used by ``gutenberg-sample`` and ``nietzsche``.
Files on Gutenberg hosts are fetched politely (:func:`dlprep.sources.gutenberg.fetch_politely`);
the documents go through the shared text pipeline (:func:`.text.write_text_dataset`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..sources import gutenberg
from ..text.clean import strip_gutenberg
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS, write_text_dataset

PARAMS: tuple[Param, ...] = TEXT_PARAMS + (
    Param("strip_gutenberg", "str", "auto", "remove a Project Gutenberg header/footer: auto "
                                            "(when markers are found), yes, no",
          ("auto", "yes", "no")),
)


def read_text_file(path: Path) -> str:
    """Decode a UTF-8 text file; ``FormatError`` naming the byte offset if it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(path, exc.start, f"not UTF-8 text ({exc.reason})") from exc


def document_from_text(text: str, name: str, mode: str,
                       recipe_license: str = "") -> tuple[str, dict[str, Any]]:
    """Body and metadata (id, title, author, language, license) of one text file; ``mode``
    is ``--strip-gutenberg`` (auto, yes, no)."""
    pg = strip_gutenberg(text) if mode != "no" else None
    if mode == "yes" and pg is not None and not pg.found_start:
        raise FormatError(name, -1, "no Project Gutenberg START marker found (use "
                                    "--strip-gutenberg auto or no)")
    if pg is not None and pg.found_start:
        meta = {"id": str(pg.ebook_id or name), "title": pg.title, "author": pg.author,
                "language": pg.language, "license": pg.license or recipe_license}
        return pg.body, meta
    return text, {"id": name, "title": "", "author": "", "language": "",
                  "license": recipe_license}


def collect(ctx: PrepareContext) -> None:
    for spec in ctx.recipe.files:
        cached = (ctx.raw_dir / spec.name).is_file() and not ctx.force_download
        ctx.files[spec.name] = gutenberg.fetch_politely(
            spec, ctx.fetch, cached=cached, mirrors=bool(ctx.fetch_options.mirrors))


def build(ctx: PrepareContext, out: Path) -> None:
    mode, license_ = ctx.options["strip_gutenberg"], ctx.recipe.license
    names = [spec.name for spec in ctx.recipe.files]

    def bodies() -> Iterator[str]:  # re-read per pass: one file in memory at a time
        for name in names:
            yield document_from_text(read_text_file(ctx.files[name]), name, mode, license_)[0]

    meta_rows = [document_from_text(read_text_file(ctx.files[name]), name, mode, license_)[1]
                 for name in names]
    meta = {k: [m[k] for m in meta_rows] for k in ("id", "title", "author", "language", "license")}
    meta["file"] = names
    write_text_dataset(ctx, out, bodies, meta)
