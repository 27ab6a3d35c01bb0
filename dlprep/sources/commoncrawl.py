"""Common Crawl client: crawl list, CDX index queries, one ranged request per WARC record.

* ``collinfo.json`` (``{index_base}/collinfo.json``, newest crawl first) resolves ``latest``.
* CDX queries (pywb): ``{index_base}/{crawl}-index?url=PATTERN&output=json`` with
  ``filter==status:200`` and ``filter=~mime:html`` (or ``mime:text/`` for ``keep_text``),
  ``showNumPages=true`` first, then ``page=0..N-1`` until ``limit`` rows. PATTERN is an exact URL,
  a prefix ``example.com/*`` or a domain ``*.example.com``. Every reply is cached under
  ``index/`` by the sha256 of its query URL, so a run replays ``--offline``.
* Records: ``GET {data_base}/{filename}`` with ``Range: bytes=offset-(offset+length-1)``: the
  body must be a 206 of exactly ``length`` bytes (a server ignoring the range is stopped at
  most 64 KiB past ``length``, never read whole), one gzip member holding one WARC record
  whose payload sha1 is the CDX ``digest``. Kept under ``records/`` by filename, offset and length.
* 503 (S3 "SlowDown"), 429 and other 5xx are retried with backoff and ``Retry-After``
  (``FetchOptions.retry``); every URL shown is redacted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..errors import FetchError, FormatError, OfflineError
from ..fetch.http import _connection_problem, parse_retry_after, shared_session
from ..fetch.options import FetchOptions
from ..formats.warc import records_in
from ..redact import redact_url

log = logging.getLogger("dlprep")

INDEX_BASE = "https://index.commoncrawl.org"
DATA_BASE = "https://data.commoncrawl.org"
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_INDEX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class CdxRow:
    """One CDX index line: where a capture's WARC record lies."""

    url: str
    timestamp: str
    filename: str
    offset: int
    length: int
    digest: str
    status: str
    mime: str

    @classmethod
    def parse(cls, line: str, where: str) -> CdxRow:
        try:
            d = json.loads(line)
            return cls(url=d["url"], timestamp=d.get("timestamp", ""), filename=d["filename"],
                       offset=int(d["offset"]), length=int(d["length"]),
                       digest=d.get("digest", ""), status=str(d.get("status", "")),
                       mime=d.get("mime", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(where, -1, f"not a CDX JSON line ({exc}): {line[:80]!r}") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class CommonCrawlClient:
    """Index queries and ranged record fetches, cached under ``cache_dir``."""

    def __init__(self, cache_dir: Path, options: FetchOptions, *, index_base: str = INDEX_BASE,
                 data_base: str = DATA_BASE) -> None:
        self.cache_dir = Path(cache_dir)
        self.options = options
        self.index_base = index_base.rstrip("/")
        self.data_base = data_base.rstrip("/")
        self.bytes_downloaded = 0

    # -- HTTP with backoff -------------------------------------------------------------
    def _request(self, url: str, headers: dict[str, str] | None = None,
                 max_bytes: int = MAX_INDEX_BYTES) -> tuple[int, bytes]:
        """``(status, body)`` of a GET, retrying 429/5xx and connection errors; the body is
        read up to ``max_bytes`` (one more byte is an error for the caller to raise)."""
        import requests

        policy = self.options.retry_policy
        shown = redact_url(url)
        failures = 0
        while True:
            reason, wait = "", None
            try:
                with shared_session().get(url, headers=headers or {}, stream=True,
                                          timeout=(policy.connect_timeout,
                                                   policy.read_timeout)) as resp:
                    if resp.status_code not in RETRY_STATUS:
                        body = bytearray()
                        for chunk in resp.iter_content(1 << 16):
                            body += chunk
                            if len(body) > max_bytes:
                                break
                        self.bytes_downloaded += len(body)
                        return resp.status_code, bytes(body[:max_bytes + 1])
                    reason = f"HTTP {resp.status_code}"
                    wait = parse_retry_after(resp.headers.get("Retry-After"), policy.clock())
            except requests.RequestException as exc:
                reason, retryable = _connection_problem(exc, url)
                if not retryable:
                    raise FetchError(f"{shown}: {reason}") from exc
            failures += 1
            if failures >= policy.attempts or (wait is not None and
                                               wait > policy.max_retry_after):
                hint = (" (Common Crawl is throttling: see https://status.commoncrawl.org/)"
                        if reason in ("HTTP 429", "HTTP 503") else "")
                raise FetchError(f"{shown}: {reason} after {failures} tries{hint}")
            delay = policy.delay(failures, wait)
            log.info("%s: %s, retrying in %.1f s", shown, reason, delay)
            policy.sleep(delay)

    def _cached_get(self, url: str, what: str, missing_ok: bool = False) -> bytes:
        """A reply cached by its query URL (``index/<sha256>.json``); offline: the cache only.
        ``missing_ok``: a 404 (the index's "No Captures found") is an empty reply."""
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        path = self.cache_dir / "index" / f"{key}.json"
        if path.is_file() and not self.options.force:
            return path.read_bytes()
        if self.options.offline:
            raise OfflineError(f"offline: {what} ({redact_url(url)}) is not in the cache "
                               f"({path}); run once online")
        status, body = self._request(url)
        if status == 404 and missing_ok:
            body = b""
        elif status != 200:
            raise FetchError(f"{redact_url(url)}: HTTP {status} for {what}: "
                             f"{body[:120].decode('utf-8', 'replace').strip()!r}")
        if len(body) > MAX_INDEX_BYTES:
            raise FetchError(f"{redact_url(url)}: {what} larger than {MAX_INDEX_BYTES:,} bytes")
        _atomic_write(path, body)
        return body

    # -- index ---------------------------------------------------------------------------
    def crawls(self) -> list[dict[str, Any]]:
        url = f"{self.index_base}/collinfo.json"
        try:
            data = json.loads(self._cached_get(url, "the crawl list"))
            return [c for c in data if isinstance(c, dict) and "id" in c]
        except ValueError as exc:
            raise FormatError(redact_url(url), -1, f"not JSON ({exc})") from exc

    def resolve_crawl(self, crawl: str) -> str:
        """``latest`` -> the newest crawl id of collinfo.json; an id is checked against it."""
        ids = [c["id"] for c in self.crawls()]
        if not ids:
            raise FetchError(f"{self.index_base}/collinfo.json lists no crawls")
        if crawl == "latest":
            return ids[0]
        if crawl not in ids:
            raise FetchError(f"crawl {crawl!r} is not in collinfo.json (newest: "
                             f"{', '.join(ids[:3])}); use CC-MAIN-YYYY-WW or latest")
        return crawl

    def _query_url(self, crawl: str, pattern: str, keep_text: bool, **extra: Any) -> str:
        params: list[tuple[str, Any]] = [("url", pattern), ("output", "json"),
                                         ("filter", "=status:200"),
                                         ("filter", "~mime:text/" if keep_text else "~mime:html")]
        params += list(extra.items())
        return f"{self.index_base}/{crawl}-index?{urlencode(params)}"

    def query(self, crawl: str, pattern: str, limit: int | None,
              keep_text: bool = False) -> list[CdxRow]:
        """CDX rows for ``pattern`` (status 200, HTML or text), page by page, up to ``limit``."""
        what = f"the page count of {pattern!r} in {crawl}"
        url = self._query_url(crawl, pattern, keep_text, showNumPages="true")
        try:
            reply = self._cached_get(url, what, missing_ok=True)
            pages = int(json.loads(reply)["pages"]) if reply.strip() else 0
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(redact_url(url), -1, f"showNumPages reply is not "
                                                   f'{{"pages": N}} ({exc})') from exc
        rows: list[CdxRow] = []
        seen: set[tuple[str, int]] = set()
        for page in range(pages):
            url = self._query_url(crawl, pattern, keep_text, page=page)
            body = self._cached_get(url, f"index page {page} of {pattern!r}", missing_ok=True)
            for line in body.decode("utf-8", "replace").splitlines():
                if not line.strip():
                    continue
                row = CdxRow.parse(line, redact_url(url))
                ok_mime = "html" in row.mime or (keep_text and row.mime.startswith("text/"))
                if row.status != "200" or not ok_mime or (row.filename, row.offset) in seen:
                    continue
                seen.add((row.filename, row.offset))
                rows.append(row)
                if limit and len(rows) >= limit:
                    return rows
        return rows

    # -- records -------------------------------------------------------------------------
    def record_path(self, row: CdxRow) -> Path:
        key = hashlib.sha256(f"{row.filename}:{row.offset}:{row.length}".encode()).hexdigest()
        return self.cache_dir / "records" / f"{key[:32]}.warc.gz"

    def fetch_record(self, row: CdxRow) -> Path:
        """The record of ``row`` (one gzip member), fetched with one Range request, checked."""
        path = self.record_path(row)
        if path.is_file() and not self.options.force:
            return path
        url = f"{self.data_base}/{row.filename.lstrip('/')}"
        if self.options.offline:
            raise OfflineError(f"offline: the record of {row.url} ({redact_url(url)} at "
                               f"{row.offset}) is not in the cache; run once online")
        headers = {"Range": f"bytes={row.offset}-{row.offset + row.length - 1}"}
        status, body = self._request(url, headers, max_bytes=row.length)
        where = f"{redact_url(url)} bytes {row.offset}+{row.length}"
        if status != 206:
            raise FetchError(f"{where}: HTTP {status} (expected 206 Partial Content; the data "
                             f"host must honour Range)")
        if len(body) != row.length:
            raise FetchError(f"{where}: got {len(body):,} bytes, the index says {row.length:,}")
        check_record(body, row, where)
        _atomic_write(path, body)
        return path


def check_record(data: bytes, row: CdxRow, where: str) -> None:
    """Raise ``FormatError`` unless ``data`` is one gzip member holding one complete WARC
    record (block digest checked) whose payload sha1 is the CDX digest (when given)."""
    import zlib

    d = zlib.decompressobj(31)
    try:
        raw = d.decompress(data, 64 * 2**20)
    except zlib.error as exc:
        raise FormatError(where, 0, f"not a gzip member ({exc})") from exc
    if not d.eof or d.unused_data.strip(b"\x00"):
        raise FormatError(where, 0, "not exactly one gzip member (offset or length wrong?)")
    if not raw.startswith(b"WARC/"):
        raise FormatError(where, 0, "no WARC header at the offset")
    records, report = records_in(raw)
    if len(records) != 1 or report.warnings(where):
        raise FormatError(where, 0, "not one complete WARC record with a matching block digest")
    block = records[0].block
    if row.digest:
        end = block.find(b"\r\n\r\n")
        payload = block[end + 4:] if end >= 0 else block
        got = base64.b32encode(hashlib.sha1(payload).digest()).decode()
        if got != row.digest:
            raise FormatError(where, 0, f"payload digest sha1:{got} is not the index's "
                                        f"{row.digest}")
