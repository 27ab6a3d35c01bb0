"""dlprep wiki get / wiki links / wikidata query / wikidata entities."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options


@click.group("wiki")
def wiki_group() -> None:
    """Wikipedia dumps: one article by title, the article link graph."""


@wiki_group.command("get")
@click.argument("title")
@click.option("--dump", "dump", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="pages-articles-multistream.xml.bz2 file.")
@click.option("--index", "index", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Its multistream-index.txt.bz2 file.")
@click.option("--raw", is_flag=True, help="Print the wikitext instead of plain text.")
@click.option("--no-headings", is_flag=True, help="Drop section headings.")
@click.option("--no-follow", is_flag=True, help="Do not follow a redirect.")
@common_options
def wiki_get(state: State, title: str, dump: Path, index: Path, raw: bool, no_headings: bool,
             no_follow: bool) -> None:
    """Print the plain text of the article TITLE, decoding only its bz2 block (the first
    call builds a title lookup from the index in the cache; later calls take milliseconds)."""
    from ..formats.wikitext import clean_wikitext
    from ..prepare.wiki_access import get_page

    for p, what in ((dump, "--dump"), (index, "--index")):
        if not p.is_file():
            raise DlprepError(f"{what}: {p} does not exist")
    page, redirected = get_page(title, dump, index, state.cache().root,
                                follow_redirects=not no_follow)
    if redirected:
        click.echo(f"({redirected} redirects to {page.title})", err=True)
    if page.redirect is not None:
        click.echo(f"#REDIRECT {page.redirect}")
        return
    click.echo(page.text if raw else clean_wikitext(page.text, headings=not no_headings))


@wiki_group.command("links")
@click.option("--dump", "dumps", required=True, multiple=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Dump file (repeatable).")
@click.option("--index", "indexes", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Multistream index per dump (optional; enables parallel blocks).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write (source, target, target_in_dump).")
@click.option("--workers", default=1, show_default=True, help="Parsing processes.")
@common_options
def wiki_links(state: State, dumps: tuple[Path, ...], indexes: tuple[Path, ...], out: Path,
               workers: int) -> None:
    """Write the article-to-article links of a dump as (source, target) title pairs, link
    targets through redirects resolved, to a parquet file."""
    from ..prepare.wiki_access import write_links
    from ..prepare.wiki_pages import DumpPart

    if indexes and len(indexes) != len(dumps):
        raise DlprepError(f"--index: give one index per --dump ({len(dumps)} dumps, "
                          f"{len(indexes)} indexes)")
    for p in (*dumps, *indexes):
        if not p.is_file():
            raise DlprepError(f"{p} does not exist")
    if out.suffix.lower() != ".parquet":
        raise DlprepError(f"--out: {out} should end in .parquet")
    parts = [DumpPart(d, indexes[i] if indexes else None) for i, d in enumerate(dumps)]
    counts = write_links(parts, out, workers=workers)
    if not state.quiet:
        click.echo(f"{counts.summary()}; {len(counts.redirect_map):,} redirects resolved",
                   err=True)
    click.echo(str(out))


COMMANDS = [wiki_group]
