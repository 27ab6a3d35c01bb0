"""dlprep import-warc (and the web connectors' shared import path)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ..errors import DlprepError
from .common import State, common_options, emit_path, scale_options

DEDUPE = ("none", "exact", "minhash")


def dedupe_options(mode: str) -> dict[str, Any]:
    """``--dedupe none|exact|minhash`` -> the builder's ``dedupe`` / ``minhash`` options."""
    return {"dedupe": mode != "none", "minhash": mode == "minhash"}


def split_extra(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Positional inputs and ``--key value`` builder options, from one unprocessed list."""
    inputs: list[str] = []
    extra: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("--"):
            extra.append(arg)
            if "=" not in arg:
                extra.append(next(it, ""))
        else:
            inputs.append(arg)
    return inputs, extra


def _spec_for(source: str):  # type: ignore[no-untyped-def]
    from ..fetch.download import FileSpec, hash_file

    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.I):
        base = Path(urlsplit(source).path).name or "download.warc.gz"
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", base)[:120]
        return FileSpec(name=name, urls=[source], checksum_optional=True), False
    path = Path(source).resolve()
    if not path.is_file():
        raise DlprepError(f"{source}: no such file (give a WARC/ARC file or an http(s) URL)")
    digest = hash_file(path, "sha256")
    # the cached copy's name carries the content hash: a changed file is a new copy/dataset
    m = re.search(r"\.(warc|arc)(\.gz)?$", path.name, re.I)
    stem, suffix = (path.name[:m.start()], m.group(0)) if m else (path.name, ".warc")
    name = f"{re.sub(r'[^A-Za-z0-9_-]+', '-', stem)[:60]}-{digest[:12]}{suffix}"
    return FileSpec(name=name, urls=[str(path)], sha256=digest), True


def import_archives(state: State, sources: list[str], name: str, options: dict[str, Any], *,
                    title: str, command: str, force: bool = False,
                    scheduler: str | None = None) -> Path:
    """Prepare the WARC/ARC ``sources`` (files or URLs) as the text dataset ``name`` (one
    shard per file: ``options["workers"]`` processes, or the Dask ``scheduler``)."""
    from ..prepare.core import prepare
    from ..recipes import Recipe

    specs, local = zip(*(_spec_for(s) for s in sources), strict=True)
    names = [s.name for s in specs]
    if len(set(names)) < len(names):
        raise DlprepError(f"{command}: two inputs share the file name {names[0]!r}")
    recipe = Recipe(name=name, title=title, version="1", kind="sequence",
                    path=Path(sources[0]), parser="warc",
                    description=f"imported with dlprep {command}", files=list(specs),
                    license="Crawled content remains (c) its owners; check each page's terms.")
    return prepare(recipe, state.cache(), options=options, name=name,
                   fetch=state.fetch_options(offline=all(local) or None, force=force),
                   scheduler=scheduler)


@click.command("import-warc", context_settings={"ignore_unknown_options": True,
                                                "allow_extra_args": True})
@click.argument("sources", nargs=-1, required=True, metavar="FILE_OR_URL...",
                type=click.UNPROCESSED)
@click.option("--name", "out_name", required=True, help="Dataset name.")
@click.option("--keep-text", is_flag=True, help="Keep text/plain responses too (not only HTML).")
@click.option("--language", default=None, metavar="CODE",
              help="Keep only pages in this language (ISO 639-1, e.g. en).")
@click.option("--dedupe", type=click.Choice(DEDUPE), default="exact", show_default=True,
              help="Drop identical pages (exact) or near-duplicates too (minhash).")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe"]), default="char",
              show_default=True, help="Token unit.")
@click.option("--force", is_flag=True, help="Rebuild even if prepared.")
@scale_options
@common_options
def import_warc_cmd(state: State, sources: tuple[str, ...], out_name: str, keep_text: bool,
                    language: str | None, dedupe: str, tokenizer: str, force: bool,
                    workers: int, scheduler: str | None) -> None:
    """Prepare the page text of WARC/ARC files (plain or gzip, local or http(s)) as a text
    dataset: HTTP 200 HTML responses, charset decoded, main text without boilerplate, with
    meta/url, meta/timestamp, meta/warc_record_id, meta/language. Prints the HDF5 path (last
    line). More text options follow as --key value (see `dlprep info gutenberg`)."""
    from ..prepare.params import parse_extra_args

    inputs, extra = split_extra(sources)
    if not inputs:
        raise DlprepError("import-warc: give at least one WARC/ARC file or URL")
    options = parse_extra_args(extra, "import-warc")
    options.update({"keep_text": keep_text, "language": language, "tokenizer": tokenizer,
                    "workers": workers, **dedupe_options(dedupe)})
    out = import_archives(state, inputs, out_name, options, force=force, scheduler=scheduler,
                          title=f"web pages imported from {len(inputs)} WARC/ARC file(s)",
                          command="import-warc")
    if not state.quiet:
        from .summary import summary_line

        click.echo(summary_line(out))
    emit_path(out)


def _write_crawl(state: State, seeds: list[str], name: str, crawler_options: dict[str, Any]
                 ) -> Path:
    """Crawl ``seeds`` into ``<cache>/raw/crawl/NAME-<UTC time>.warc.gz``; return its path."""
    import datetime
    import os

    from warcio.warcwriter import WARCWriter

    from ..sources.crawler import USER_AGENT, Crawler

    folder = state.cache().raw_dir("crawl")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{name}-{stamp}.warc.gz"
    tmp = path.with_name(f".{path.name}.part")
    crawler = Crawler(**crawler_options)
    try:
        with open(tmp, "wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            writer.write_record(writer.create_warcinfo_record(path.name, {
                "software": USER_AGENT, "format": "WARC File Format 1.0",
                "robots": "obey", "seeds": " ".join(seeds)}))
            result = crawler.crawl(seeds, writer)
        if result.pages == 0:
            reasons = "; ".join(f"{u}: {why}" for u, why in list(result.skipped.items())[:3])
            raise DlprepError(f"crawl {name}: no HTML page fetched ({reasons or 'no seeds'})")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(f"crawled {result.pages} page(s), skipped {len(result.skipped)} URL(s) -> "
               f"{path}", err=True)
    return path


@click.command("crawl", context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True})
@click.option("--seeds", "seeds_file", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Text file of start URLs, one per line (# comments).")
@click.option("--name", "out_name", required=True, help="Dataset name.")
@click.option("--max-pages", type=click.IntRange(min=1), default=100, show_default=True,
              help="Stop after this many HTML pages.")
@click.option("--depth", type=click.IntRange(min=0), default=2, show_default=True,
              help="Follow links this many hops from the seeds.")
@click.option("--same-domain/--any-domain", default=True, show_default=True,
              help="Follow links only to the seeds' hosts (and their subdomains).")
@click.option("--delay", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between two requests to one host (robots.txt Crawl-delay if "
                   "longer).")
@click.option("--language", default=None, metavar="CODE", help="Keep only this language.")
@click.option("--dedupe", type=click.Choice(DEDUPE), default="exact", show_default=True,
              help="Drop identical pages (exact) or near-duplicates too (minhash).")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe"]), default="char",
              show_default=True, help="Token unit.")
@common_options
def crawl_cmd(state: State, seeds_file: Path, out_name: str, max_pages: int, depth: int,
              same_domain: bool, delay: float, language: str | None, dedupe: str,
              tokenizer: str) -> None:
    """Crawl your own site(s) politely (robots.txt and Crawl-delay obeyed, one request at a
    time per host, redirects capped, HTML only) into a WARC file in the cache, then import it
    like `dlprep import-warc`; prints the HDF5 path (last line)."""
    from ..cache import safe_component
    from ..prepare.params import parse_extra_args
    from ..sources.crawler import read_seeds

    if state.is_offline:
        raise DlprepError("crawl: needs the network (--offline is set); re-import an earlier "
                          "crawl's WARC with `dlprep import-warc`")
    name = safe_component(out_name, "dataset name")
    seeds = read_seeds(seeds_file)
    if not seeds:
        raise DlprepError(f"{seeds_file}: no seed URLs")
    options = parse_extra_args(list(click.get_current_context().args), "crawl")
    options.update({"language": language, "tokenizer": tokenizer, **dedupe_options(dedupe)})
    warc = _write_crawl(state, seeds, name, {"max_pages": max_pages, "depth": depth,
                                             "same_domain": same_domain, "delay": delay})
    out = import_archives(state, [str(warc)], name, options, command="crawl",
                          title=f"web pages crawled from {len(seeds)} seed(s)")
    if not state.quiet:
        from .summary import summary_line

        click.echo(summary_line(out))
    emit_path(out)


COMMANDS = [import_warc_cmd, crawl_cmd]
