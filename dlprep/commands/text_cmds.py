"""dlprep import-text / gutenberg-search."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options, echo_json, emit_path


def _dataset_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")
    return name or "imported-text"


@click.command("import-text", context_settings={"ignore_unknown_options": True,
                                                "allow_extra_args": True})
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.option("--text-column", required=True, help="Column holding the text.")
@click.option("--label-column", default=None, help="Column holding the class label (optional).")
@click.option("--name", "out_name", default=None,
              help="Dataset name (default: the file name without suffix).")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe"]), default="word",
              show_default=True, help="Token unit.")
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "tsv", "jsonl"]),
              default="auto", show_default=True, help="Table format (auto: from the suffix).")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of FILE.")
@click.option("--force", is_flag=True, help="Rebuild even if prepared.")
@common_options
def import_text_cmd(state: State, file: Path, extra: tuple[str, ...], text_column: str,
                    label_column: str | None, out_name: str | None, tokenizer: str, fmt: str,
                    encoding: str, force: bool) -> None:
    """Prepare a table of texts (CSV/TSV/JSONL, e.g. your own tweets export) as a sequence
    dataset; print the prepared HDF5 path (last line).

    More text options follow as --key value (see `dlprep info gutenberg-sample`), e.g.
    `--lowercase true --min-freq 2 --max-vocab 20000 --meta-columns id,author`.
    """
    from ..fetch.download import FileSpec, hash_file
    from ..prepare.core import prepare
    from ..prepare.params import parse_extra_args
    from ..recipes import Recipe

    file = file.resolve()
    name = out_name or _dataset_name(file)
    digest = hash_file(file, "sha256")
    # The cached copy's name carries the content hash: editing FILE gives a new copy/dataset.
    cached_name = f"{file.stem[:60]}-{digest[:12]}{file.suffix}"
    recipe = Recipe(name=name, title=f"texts imported from {file.name}", version="2",
                    kind="sequence", path=file, parser="csv-text",
                    description=f"imported with dlprep import-text from {file}",
                    files=[FileSpec(name=cached_name, urls=[str(file)], sha256=digest)])
    options = parse_extra_args(list(extra), f"import-text {file.name}")
    options.update({"text_column": text_column, "label_column": label_column,
                    "tokenizer": tokenizer, "format": fmt, "encoding": encoding})
    out = prepare(recipe, state.cache(), options=options, name=name,
                  fetch=state.fetch_options(offline=True, force=force))
    if not state.quiet:
        from .summary import summary_line

        click.echo(summary_line(out))
    emit_path(out)


@click.command("gutenberg-search")
@click.option("--ids", default=None, help="Book numbers, e.g. 100,1342.")
@click.option("--author", default=None, help="Author contains this (case-insensitive).")
@click.option("--title", default=None, help="Title contains this.")
@click.option("--subject", default=None, help="A subject or bookshelf contains this.")
@click.option("--language", default=None, help="Language code, e.g. en.")
@click.option("--limit", default=20, show_default=True, help="At most this many (0: all).")
@click.option("--mirror", "mirrors", multiple=True, metavar="BASE",
              help="Gutenberg mirror tried before www.gutenberg.org for the catalog.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def gutenberg_search_cmd(state: State, ids: str | None, author: str | None, title: str | None,
                         subject: str | None, language: str | None, limit: int,
                         mirrors: tuple[str, ...], as_json: bool) -> None:
    """Search the Project Gutenberg catalog (pg_catalog.csv.gz, cached, refreshed at most
    daily); then `dlprep fetch gutenberg --ids ... --name NAME`."""
    from ..sources.gutenberg import GutenbergClient, parse_ids, read_catalog, search_catalog

    if not any((ids, author, title, subject, language)):
        raise DlprepError("gutenberg-search: give --ids, --author, --title, --subject or "
                          "--language")
    cache = state.cache()
    client = GutenbergClient(cache.raw_dir("gutenberg"),
                             state.fetch_options(mirrors=mirrors, lock_dir=cache.locks_dir))
    entries = search_catalog(read_catalog(client.fetch_catalog()),
                             ids=parse_ids(ids) if ids else None, author=author, title=title,
                             subject=subject, language=language, limit=limit or None)
    if as_json:
        echo_json([{"id": e.id, "title": e.title, "authors": e.authors,
                    "language": list(e.language), "issued": e.issued} for e in entries])
        return
    for e in entries:
        click.echo(f"{e.id:>6}  {e.title[:70]}  ({e.authors[:40] or 'anonymous'}; "
                   f"{','.join(e.language)})")
    if not entries:
        click.echo("no match", err=True)


COMMANDS = [import_text_cmd, gutenberg_search_cmd]
