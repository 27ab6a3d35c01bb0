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

from ..errors import DlprepError
from ..formats.warc import ReadReport, Record, read_records
from ..redact import redact_url
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS, write_text_dataset

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
)
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


def _page(rec: Record, o: dict, skipped: Counter) -> Page | None:
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
            page = _page(rec, o, skipped)
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


def build(ctx: PrepareContext, out: Path) -> None:
    names = [_shown(spec.urls[0] if spec.urls else spec.name) for spec in ctx.recipe.files]
    write_pages(ctx, out, [(shown, ctx.files[spec.name]) for shown, spec in
                           zip(names, ctx.recipe.files, strict=True)])


def write_pages(ctx: PrepareContext, out: Path, inputs: Sequence[tuple[str, Path]]) -> None:
    """The text dataset of the archive files ``inputs`` (``(shown name, path)``)."""
    names = [name for name, _ in inputs]
    pages, skipped = read_pages(inputs, ctx.options)
    if skipped:
        log.info("skipped records: %s", ", ".join(f"{k}: {v}" for k, v in skipped.most_common()))
    if ctx.options["minhash"]:
        from .web_dedupe import near_duplicates

        drop = near_duplicates([p.text for p in pages], ctx.options["minhash_threshold"])
        if drop:
            log.info("dropped %d near-duplicate pages (MinHash)", len(drop))
        pages = [p for i, p in enumerate(pages) if i not in drop]
    if not pages:
        why = ", ".join(f"{k}: {v}" for k, v in skipped.most_common(4)) or "no response records"
        raise DlprepError(f"dataset {ctx.name}: no page text in {', '.join(names)} ({why})")
    log.info("%d pages kept", len(pages))
    meta = {"url": [p.url for p in pages], "timestamp": [p.timestamp for p in pages],
            "warc_record_id": [p.record_id for p in pages],
            "language": [p.language for p in pages], "title": [p.title for p in pages],
            "file": [p.file for p in pages]}
    write_text_dataset(ctx, out, [p.text for p in pages], meta)
