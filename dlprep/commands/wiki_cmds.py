"""dlprep wiki get / wiki links / wikidata query / wikidata entities."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options, scheduler_option


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


@wiki_group.command("index")
@click.option("--dump", "dump", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="pages-articles-multistream.xml.bz2 file.")
@click.option("--index", "index", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Its multistream-index.txt.bz2 file.")
@click.option("--pages", is_flag=True, help="Also decode every block into the page cache, so "
              "that `wiki get` never decodes bz2 (about the dump's size again, zlib).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Decoding processes (--pages): N > 1 a local Dask cluster.")
@scheduler_option
@common_options
def wiki_index(state: State, dump: Path, index: Path, pages: bool, workers: int,
               scheduler: str | None) -> None:
    """Build the title lookup of a multistream index in the cache (the first `wiki get` does
    it too) and, with --pages, the page cache for the whole dump."""
    from ..prepare.wiki_access import TitleIndex, warm_cache

    for p, what in ((dump, "--dump"), (index, "--index")):
        if not p.is_file():
            raise DlprepError(f"{what}: {p} does not exist")
    cache_root = state.cache().root
    if pages:
        n_pages, n_blocks = warm_cache(dump, index, cache_root, workers=workers,
                                       scheduler=scheduler)
        click.echo(f"{n_pages:,} pages of {n_blocks:,} blocks cached", err=True)
    else:
        TitleIndex(index, cache_root).close()
    click.echo(str(cache_root / "wiki-index"))


@wiki_group.command("links")
@click.option("--dump", "dumps", required=True, multiple=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Dump file (repeatable).")
@click.option("--index", "indexes", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Multistream index per dump (optional; enables parallel blocks).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write (source, target, target_in_dump).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Parsing processes: N > 1 a local Dask cluster.")
@scheduler_option
@common_options
def wiki_links(state: State, dumps: tuple[Path, ...], indexes: tuple[Path, ...], out: Path,
               workers: int, scheduler: str | None) -> None:
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
    counts = write_links(parts, out, workers=workers, scheduler=scheduler)
    if not state.quiet:
        click.echo(f"{counts.summary()}; {len(counts.redirect_map):,} redirects resolved",
                   err=True)
    click.echo(str(out))


@click.group("wikidata")
def wikidata_group() -> None:
    """Wikidata: SPARQL queries to tables, the JSON entity dump to a table."""


@wikidata_group.command("query")
@click.argument("query_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--endpoint", default=None, help="SPARQL endpoint (default: query.wikidata.org).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="results.csv, .tsv or .parquet (default: CSV on stdout).")
@click.option("--timeout", default=65.0, show_default=True, help="Seconds to wait for results.")
@click.option("--refresh", is_flag=True, help="Ask the endpoint again even if cached.")
@common_options
def wikidata_query(state: State, query_file: Path, endpoint: str | None, out: Path | None,
                   timeout: float, refresh: bool) -> None:
    """Run the SPARQL query in QUERY_FILE; one column per variable, entity URIs shortened to
    Q-ids. Results are cached by query, so --offline replays them."""
    import csv
    import sys

    from ..sources.wikidata import DEFAULT_ENDPOINT, SparqlClient, write_table

    if not query_file.is_file():
        raise DlprepError(f"{query_file} does not exist")
    client = SparqlClient(state.cache().api_dir("wikidata"), endpoint=endpoint or DEFAULT_ENDPOINT,
                          offline=state.is_offline, timeout=timeout, refresh=refresh)
    result = client.query(query_file.read_text("utf-8"))
    if out is None:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(result.variables)
        w.writerows([["" if v is None else v for v in row] for row in result.rows])
        return
    write_table(result, out)
    if not state.quiet:
        click.echo(f"{len(result.rows):,} rows x {len(result.variables)} columns"
                   f"{' (cached)' if result.cached else ''}", err=True)
    click.echo(str(out))


@wikidata_group.command("entities")
@click.argument("dump", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--where", "where", multiple=True, help="Keep entities with this claim: P31 or "
              "P31=Q5 (repeatable, all must hold).")
@click.option("--props", default="", help="Comma-separated properties to add as columns.")
@click.option("--lang", default="en", show_default=True, help="Language of label/description.")
@click.option("--limit", default=0, show_default=True, help="Stop after this many rows (0: all).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="table.csv, .tsv or .parquet")
@common_options
def wikidata_entities(state: State, dump: Path, where: tuple[str, ...], props: str, lang: str,
                      limit: int, out: Path) -> None:
    """Stream a Wikidata JSON entity dump (latest-all.json.gz|bz2) into a table of the
    entities matching --where: id, label, description and the --props values."""
    import itertools
    import logging

    from ..sources.wikidata import (
        EntityReport,
        PropertyFilter,
        entity_rows,
        iter_entities,
        write_table,
    )

    if not dump.is_file():
        raise DlprepError(f"{dump} does not exist")
    filters = [PropertyFilter.parse(w) for w in where]
    plist = [p.strip() for p in props.split(",") if p.strip()]
    for p in plist:
        PropertyFilter.parse(p)
    report = EntityReport()
    columns, rows = entity_rows(iter_entities(dump, report), where=filters, props=plist,
                                lang=lang, report=report)
    table = list(itertools.islice(rows, limit) if limit else rows)
    if report.truncated:
        logging.getLogger("dlprep").warning("%s: the dump ends early (%s); kept every complete "
                                            "entity before the cut", dump.name, report.truncated)
    write_table((columns, table), out)
    if not state.quiet:
        click.echo(f"{report.matched:,} of {report.entities:,} entities matched", err=True)
    click.echo(str(out))


COMMANDS = [wiki_group, wikidata_group]
