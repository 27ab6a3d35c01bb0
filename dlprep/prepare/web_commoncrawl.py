"""The ``commoncrawl`` connector: CDX index query -> one ranged request per record -> page text.

``dlprep fetch commoncrawl --crawl CC-MAIN-2025-33 --url 'example.com/*' --limit 50 --name ex``
(``--crawl latest`` by default; ``--index-base``/``--data-base`` for mirrors). The records go
through the same import path as ``dlprep import-warc`` (:mod:`.web`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DlprepError
from ..redact import redact_url
from ..sources.commoncrawl import DATA_BASE, INDEX_BASE, CommonCrawlClient
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS
from .web import WEB_PARAMS
from .web_shards import assemble_pages, run_pages, web_plan

if TYPE_CHECKING:
    from ..scale import ShardSpec

log = logging.getLogger("dlprep")

PARAMS: tuple[Param, ...] = (
    Param("crawl", "str", "latest", "crawl id CC-MAIN-YYYY-WW, or latest (from collinfo.json)"),
    Param("url", "str", None, "URL pattern: an exact URL, a prefix example.com/* or a domain "
                              "*.example.com"),
    Param("limit", "int", 100, "at most this many records (0: every match)"),
    Param("index_base", "str", INDEX_BASE, "CDX index server (a mirror)"),
    Param("data_base", "str", DATA_BASE, "WARC data host (a mirror)"),
) + WEB_PARAMS + TEXT_PARAMS
RUNTIME_OPTIONS = ("workers",)


@dataclass
class Records:
    """What ``collect`` fetched: ``(shown name, record file)`` per CDX row, in index order."""

    inputs: list[tuple[str, Path]]


def collect(ctx: PrepareContext) -> Records:
    o = ctx.options
    if not o["url"]:
        raise DlprepError(f"dataset {ctx.name}: give --url PATTERN (example.com/*, "
                          f"*.example.com or an exact URL)")
    client = CommonCrawlClient(ctx.raw_dir, ctx.fetch_options, index_base=o["index_base"],
                               data_base=o["data_base"])
    crawl = client.resolve_crawl(o["crawl"])
    ctx.inputs["crawl"] = crawl
    rows = client.query(crawl, o["url"], o["limit"] or None, keep_text=o["keep_text"])
    if not rows:
        raise DlprepError(f"dataset {ctx.name}: no status-200 HTML captures of {o['url']!r} "
                          f"in {crawl}")
    ctx.inputs["cdx"] = hashlib.sha256("\n".join(
        f"{r.filename} {r.offset} {r.length} {r.digest}" for r in rows).encode()).hexdigest()
    inputs = []
    for row in rows:
        path = client.fetch_record(row)
        url = f"{client.data_base}/{row.filename}"
        ctx.add_source(path.relative_to(ctx.raw_dir).as_posix(), url, path, checksum=True)
        inputs.append((f"{redact_url(url)}@{row.offset}", path))
    total = sum(r.length for r in rows)
    log.info("%d records from %s (%s bytes downloaded for %s bytes of records)", len(rows),
             crawl, f"{client.bytes_downloaded:,}", f"{total:,}")
    return Records(inputs)


# sharded (dlprep.scale): the record files (one per CDX row) in groups of RECORDS_PER_SHARD


RECORDS_PER_SHARD = 64


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    return web_plan(ctx, ctx.collected_as(Records).inputs, RECORDS_PER_SHARD)


run_shard = run_pages
assemble = assemble_pages
