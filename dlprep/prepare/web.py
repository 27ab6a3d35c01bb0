"""The ``warc`` builder: WARC/ARC files -> clean page text -> token sequences.

Used by ``dlprep import-warc``, ``dlprep fetch commoncrawl`` and ``dlprep crawl``. Keeps
``response`` records with HTTP 200 and an HTML type (``--keep-text``: text/plain too), decodes
the charset (header, ``<meta>``, detection), extracts the main text (Resiliparse), identifies
the language (py3langid; ``--language en`` keeps one), drops near-duplicates (``--minhash``)
and writes the shared text pipeline's dataset with ``meta/url``, ``meta/timestamp``,
``meta/warc_record_id``, ``meta/language``, ``meta/title``, ``meta/file``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..formats.warc import ReadReport, Record, read_records
from ..redact import redact_url
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS
from .web_shards import assemble_pages, run_pages, web_plan

if TYPE_CHECKING:
    from ..scale import ShardSpec

log = logging.getLogger("dlprep")

WEB_PARAMS: tuple[Param, ...] = (
    Param("keep_text", "bool", False, "keep text/plain responses too (default: HTML only)"),
    Param("language", "str", None, "keep only pages in this language (ISO 639-1, e.g. en; "
                                    "identified with py3langid)"),
    Param("minhash", "bool", False, "drop near-duplicate pages (MinHash LSH over word "
                                    "5-grams, datasketch)"),
    Param("minhash_threshold", "float", 0.8, "Jaccard similarity above which a page is a "
                                             "near-duplicate of an earlier one"),
    Param("min_chars", "int", 1, "drop pages whose main text is shorter than this"),
    Param("max_page_bytes", "int", 16 * 2**20, "skip HTTP bodies larger than this"),
    Param("workers", "int", 1, "processes reading the archives, one file per shard (output "
                               "does not depend on it)"),
)
# options that change how, not what, is built: kept out of the config hash (prepare.core)
RUNTIME_OPTIONS = ("workers",)
PARAMS: tuple[Param, ...] = WEB_PARAMS + TEXT_PARAMS


@dataclass
class Page:
    """One kept page: its clean text and metadata."""

    text: str
    url: str
    timestamp: str
    record_id: str
    language: str
    title: str
    file: str


def page_of(rec: Record, o: dict, skipped: Counter) -> Page | None:
    """The page of a record, or None (and the reason counted in ``skipped``)."""
    from ..text.extract import (
        HTML_TYPES,
        decode_page,
        extract_main_text,
        identify_language,
        looks_binary,
        parse_http,
    )

    if rec.type != "response":
        return None
    http = parse_http(rec.block, o["max_page_bytes"])
    if http is None:
        skipped["not an HTTP response"] += 1
        return None
    if http.status != 200:
        skipped[f"HTTP {http.status}"] += 1
        return None
    mime = http.mime or rec.headers.get("content-type", "").split(";")[0].strip().lower()
    is_html = mime in HTML_TYPES
    if not is_html and not (o["keep_text"] and mime == "text/plain"):
        skipped[f"type {mime or 'unknown'}"] += 1
        return None
    if not http.body:
        skipped["empty or undecodable body"] += 1
        return None
    if len(http.body) > o["max_page_bytes"]:
        skipped["body over --max-page-bytes"] += 1
        return None
    if looks_binary(http.body):
        skipped["binary body labelled as text"] += 1
        return None
    text, _how = decode_page(http.body, http.charset)
    title = ""
    if is_html:
        title, text = extract_main_text(text)
    else:
        text = text.strip()
    if len(text) < max(1, o["min_chars"]):
        skipped["no main text"] += 1
        return None
    language = identify_language(text)
    if o["language"] and language != o["language"].lower():
        skipped[f"language {language or 'unknown'}"] += 1
        return None
    return Page(text, rec.url, rec.date, rec.record_id, language, title, "")


def read_pages(paths: Sequence[tuple[str, Path]], o: dict) -> tuple[list[Page], Counter]:
    """The kept pages of the archive files ``paths`` (``(name, path)``), and why others were
    skipped. Damage is warned about in one line per kind and file."""
    from ..text.extract import require_web_extra

    require_web_extra()
    pages: list[Page] = []
    skipped: Counter = Counter()
    for name, path in paths:
        report = ReadReport()
        for rec in read_records(path, report):
            page = page_of(rec, o, skipped)
            if page is not None:
                page.file = name
                pages.append(page)
        for line in report.warnings(name):
            log.warning("%s", line)
    return pages, skipped


def _shown(source: str) -> str:
    """How an input is named in warnings and ``meta/file``: a URL (redacted) or a file name."""
    if "://" in source:
        return redact_url(source)
    return Path(source).name


def inputs_of(ctx: PrepareContext) -> list[tuple[str, Path]]:
    """``(shown name, path)`` of the recipe's archive files, in recipe order."""
    return [(_shown(spec.urls[0] if spec.urls else spec.name), ctx.files[spec.name])
            for spec in ctx.recipe.files]


# sharded (dlprep.scale): one shard per archive file; ``prepare`` runs them in this process, on
# a Dask LocalCluster (--workers N) or on a cluster (--scheduler)


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    return web_plan(ctx, inputs_of(ctx))


run_shard = run_pages
assemble = assemble_pages
