"""Wikimedia dumps: find a wiki's multistream dump and index through ``dumpstatus.json``.

``{base}/{wiki}/{YYYYMMDD}/dumpstatus.json`` lists every job of a dump run with its files
(``url``, ``size``, ``md5``, ``sha1``); the ``articlesmultistreamdump`` job holds
``{wiki}-{date}-pages-articles-multistream.xml.bz2`` and its ``-index.txt.bz2`` (or, for the
largest wikis, numbered parts ``multistream1.xml-p1p41242.bz2`` with matching indexes).
``--date latest`` reads the date from the ``latest/`` RSS feed of the index file. Every
request carries a descriptive User-Agent (Wikimedia blocks generic ones) and honours
429/503 ``Retry-After`` through the shared retry policy (``fetch.http``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DlprepError, FetchError, FormatError, OfflineError
from ..fetch.http import (
    USER_AGENT,
    RetryPolicy,
    _connection_problem,
    parse_retry_after,
    shared_session,
)
from ..redact import redact_url

log = logging.getLogger("dlprep")

DEFAULT_BASE = "https://dumps.wikimedia.org/"
JOB = "articlesmultistreamdump"
_WIKI = re.compile(r"^[a-z][a-z0-9_-]{1,60}$")
_DATE = re.compile(r"^\d{8}$")
_DUMP_FILE = re.compile(r"-pages-articles-multistream(\d*)\.xml(-p\d+p\d+)?\.bz2$")
_INDEX_FILE = re.compile(r"-pages-articles-multistream-index(\d*)\.txt(-p\d+p\d+)?\.bz2$")
_RSS_DATE = re.compile(r"<link>[^<]*?/(\d{8})/?\s*</link>")
RETRY_STATUS = (429, 500, 502, 503, 504)


def user_agent() -> str:
    """The User-Agent for Wikimedia hosts: dlprep's, plus ``$DLPREP_CONTACT`` (an e-mail or
    page the operators can reach you at) when set, and the HTTP library."""
    import requests

    contact = os.environ.get("DLPREP_CONTACT", "").strip()
    base = USER_AGENT if not contact else USER_AGENT[:-1] + f"; {contact})"
    return f"{base} python-requests/{requests.__version__}"


_SESSION: Any = None


def wikimedia_session() -> Any:
    """A session configured like ``fetch.http.shared_session`` but sending
    :func:`user_agent` (for downloads through the fetch layer from Wikimedia hosts)."""
    global _SESSION
    if _SESSION is None:
        from ..fetch.http import new_session

        session = new_session(pool_size=8)
        session.headers["User-Agent"] = user_agent()
        _SESSION = session
    return _SESSION


@dataclass
class Response:
    """A finished HTTP exchange (body read)."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes


def polite_get(url: str, *, params: dict[str, str] | None = None,
               headers: dict[str, str] | None = None, retry: RetryPolicy | None = None,
               timeout: float | None = None, what: str = "") -> Response:
    """GET ``url`` with the Wikimedia User-Agent; 429/5xx and connection errors are retried
    (``Retry-After`` honoured, ``retry.attempts`` tries). Returns the last response (any
    status); raises ``FetchError`` when no response came (timeout, refused)."""
    import requests

    retry = retry or RetryPolicy()
    hdrs = {"User-Agent": user_agent(), **(headers or {})}
    shown = redact_url(url)
    failures = 0
    while True:
        try:
            resp = shared_session().get(
                url, params=params, headers=hdrs,
                timeout=(retry.connect_timeout, timeout or retry.read_timeout))
            status, body = resp.status_code, resp.content
            rheaders = {k: v for k, v in resp.headers.items()}
        except requests.exceptions.Timeout as exc:
            raise FetchError(f"{what or shown}: no answer within "
                             f"{timeout or retry.read_timeout:g} s ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:
            problem, retryable = _connection_problem(exc, url)
            failures += 1
            if not retryable or failures >= retry.attempts:
                raise FetchError(f"{what or shown}: {problem}") from exc
            retry.sleep(retry.delay(failures))
            continue
        if status not in RETRY_STATUS:
            return Response(resp.url, status, rheaders, body)
        failures += 1
        wait = parse_retry_after(rheaders.get("Retry-After"), retry.clock())
        if failures >= retry.attempts or (wait is not None and wait > retry.max_retry_after):
            return Response(resp.url, status, rheaders, body)
        delay = retry.delay(failures, wait)
        log.info("%s: HTTP %d, retrying in %.1f s", what or shown, status, delay)
        retry.sleep(delay)


@dataclass(frozen=True)
class DumpFile:
    """One file of a dump run, as ``dumpstatus.json`` lists it."""

    name: str
    url: str
    size: int | None = None
    md5: str | None = None
    sha1: str | None = None


@dataclass(frozen=True)
class DumpSet:
    """The multistream dump file(s) of one run, each with its index (same order)."""

    wiki: str
    date: str
    dumps: tuple[DumpFile, ...]
    indexes: tuple[DumpFile | None, ...]


def check_wiki(wiki: str) -> str:
    if not _WIKI.match(wiki or ""):
        raise DlprepError(f"--wiki: {wiki!r} is not a wiki database name (e.g. enwiki, "
                          f"simplewiki, dewiktionary)")
    return wiki


def check_date(date: str) -> str:
    date = str(date).strip()
    if date != "latest" and not _DATE.match(date):
        raise DlprepError(f"--date: {date!r} is not 'latest' or YYYYMMDD")
    return date


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel.lstrip("/")


def parse_dumpstatus(data: bytes, *, wiki: str, date: str, base_url: str,
                     where: str) -> DumpSet:
    """The multistream files (and indexes) that ``dumpstatus.json`` lists. Raises
    ``FormatError`` for a body that is not the manifest, ``DlprepError`` when the job is
    missing or not finished."""
    try:
        status = json.loads(data)
        jobs = status["jobs"]
    except (ValueError, KeyError, TypeError) as exc:
        start = data[:60].decode("utf-8", "replace").replace("\n", " ")
        raise FormatError(where, -1, f"not a dumpstatus.json manifest (starts {start!r})") from exc
    job = jobs.get(JOB) if isinstance(jobs, dict) else None
    if not isinstance(job, dict):
        raise DlprepError(f"{where}: no {JOB} job in this dump run (jobs: "
                          f"{', '.join(sorted(jobs)[:8]) if isinstance(jobs, dict) else '?'})")
    if job.get("status") != "done":
        raise DlprepError(f"{where}: the {JOB} job is {job.get('status')!r}, not 'done'; pick "
                          f"an earlier --date or wait for it to finish")
    dumps: dict[tuple[str, str], DumpFile] = {}
    indexes: dict[tuple[str, str], DumpFile] = {}
    for name, meta in (job.get("files") or {}).items():
        meta = meta if isinstance(meta, dict) else {}
        url = meta.get("url") or f"/{wiki}/{date}/{name}"
        size = meta.get("size")
        f = DumpFile(name=name, url=_join(base_url, url) if "://" not in url else url,
                     size=int(size) if isinstance(size, (int, str)) and str(size).isdigit()
                     else None, md5=meta.get("md5"), sha1=meta.get("sha1"))
        if m := _DUMP_FILE.search(name):
            dumps[(m.group(1), m.group(2) or "")] = f
        elif m := _INDEX_FILE.search(name):
            indexes[(m.group(1), m.group(2) or "")] = f
    if not dumps:
        raise DlprepError(f"{where}: the {JOB} job lists no pages-articles-multistream file")
    keys = [("", "")] if ("", "") in dumps else sorted(
        dumps, key=lambda k: (int(k[0] or 0), int(re.sub(r"\D.*", "", k[1][2:]) or 0)))
    return DumpSet(wiki=wiki, date=date, dumps=tuple(dumps[k] for k in keys),
                   indexes=tuple(indexes.get(k) for k in keys))


@dataclass
class DumpsClient:
    """Finds dump runs on ``base_url`` (the dumps site or any mirror of its layout), caching
    the manifests under ``dest/<wiki>/<date>/``."""

    dest: Path
    base_url: str = DEFAULT_BASE
    offline: bool = False
    retry: RetryPolicy | None = None

    def _get(self, url: str, what: str) -> bytes:
        resp = polite_get(url, retry=self.retry, what=what)
        if resp.status != 200:
            raise FetchError(f"{what}: HTTP {resp.status} from {redact_url(url)}")
        return resp.body

    def latest_date(self, wiki: str) -> str:
        """The date of the newest run, from ``latest/``'s RSS feed of the index file."""
        check_wiki(wiki)
        if self.offline:
            cached = sorted(p.parent.name for p in (self.dest / wiki).glob("*/dumpstatus.json")
                            if _DATE.match(p.parent.name))
            if not cached:
                raise OfflineError(f"offline: no dumpstatus.json of {wiki} in the cache "
                                   f"({self.dest / wiki}); run once without --offline")
            return cached[-1]
        url = _join(self.base_url,
                    f"{wiki}/latest/{wiki}-latest-pages-articles-multistream-index.txt.bz2-rss.xml")
        body = self._get(url, f"{wiki} latest dump")
        m = _RSS_DATE.search(body.decode("utf-8", "replace"))
        if m is None:
            raise FormatError(redact_url(url), -1, "RSS feed without a <link> to a dated run")
        return m.group(1)

    def dump_set(self, wiki: str, date: str = "latest") -> DumpSet:
        """The multistream files of ``wiki``'s run on ``date`` (``latest``: the newest)."""
        check_wiki(wiki)
        date = check_date(date)
        if date == "latest":
            date = self.latest_date(wiki)
        local = self.dest / wiki / date / "dumpstatus.json"
        url = _join(self.base_url, f"{wiki}/{date}/dumpstatus.json")
        if local.is_file():
            data = local.read_bytes()
        elif self.offline:
            raise OfflineError(f"offline: {local} is not in the cache; run once without "
                               f"--offline")
        else:
            data = self._get(url, f"{wiki} {date} dumpstatus.json")
            ds = parse_dumpstatus(data, wiki=wiki, date=date, base_url=self.base_url,
                                  where=redact_url(url))
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(local.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(local)
            return ds
        return parse_dumpstatus(data, wiki=wiki, date=date, base_url=self.base_url,
                                where=str(local))


def describe(ds: DumpSet) -> dict[str, Any]:
    """A small JSON-able summary (for provenance)."""
    return {"wiki": ds.wiki, "date": ds.date, "files": [d.name for d in ds.dumps]}
