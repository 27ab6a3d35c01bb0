"""The ``csv-text`` builder: a table of texts (CSV/TSV/JSONL) with optional labels -> one token
sequence per row (``labels``/``classes`` for sequence classification). Used by the
``text-emotion`` recipe and by ``dlprep import-text``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FetchError, OfflineError, RecipeError
from ..formats.text_table import FORMATS, check_encoding, read_text_table
from ..recipes import Recipe
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS, write_text_dataset

PARAMS: tuple[Param, ...] = (
    Param("text_column", "str", "text", "column holding the text"),
    Param("label_column", "str", None, "column holding the class label (optional)"),
    Param("meta_columns", "list", [], "columns kept per row under meta/ (e.g. ids, authors)"),
    Param("format", "str", "auto", "table format (auto: from the file suffix)", FORMATS),
    Param("encoding", "str", "utf-8", "text encoding of the file (e.g. latin-1)"),
) + TEXT_PARAMS


def check_recipe(recipe: Recipe) -> None:
    """One table file (checked by ``recipes validate`` and before anything is fetched)."""
    if len(recipe.files) != 1:
        raise RecipeError(f"{recipe.path}: files: a csv-text recipe takes exactly one file, "
                          f"got {len(recipe.files)}")


def collect(ctx: PrepareContext) -> None:
    check_encoding(ctx.options["encoding"])  # before anything is fetched or copied
    spec = ctx.recipe.files[0]
    try:
        ctx.files[spec.name] = ctx.fetch(spec)
    except (FetchError, OfflineError) as exc:
        o = ctx.options
        label = f" --label-column {o['label_column']}" if o["label_column"] else ""
        raise type(exc)(f"{exc}. If upstream is gone, pass --mirror DIR with {spec.name} in "
                        f"it, or run: dlprep import-text FILE --text-column {o['text_column']}"
                        f"{label}") from exc


def build(ctx: PrepareContext, out: Path) -> None:
    o = ctx.options
    spec = ctx.recipe.files[0]
    # import-text recipes point ``path`` at the user's file: errors name it, not the copy
    shown = ctx.recipe.path if ctx.recipe.path.suffix != ".toml" else None
    table = read_text_table(ctx.files[spec.name], o["text_column"], o["label_column"] or None,
                            extra_columns=o["meta_columns"] or (), fmt=o["format"],
                            encoding=o["encoding"], shown_as=shown)
    meta = {"row": table.rows, **table.extra}
    write_text_dataset(ctx, out, table.texts, meta, labels=table.labels,
                       classes=ctx.recipe.classes)
