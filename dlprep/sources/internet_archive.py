"""Internet Archive: search (scrape API or advancedsearch), item metadata, verified downloads.

One base URL (``--api-base``, default ``https://archive.org``) serves the three endpoints, so a
mirror (or a loopback server in tests) stands in for all of them:

- search: ``services/search/v1/scrape?q=Q&fields=identifier&count=N&cursor=C`` (cursor
  pagination, ``count`` at least 100) or ``advancedsearch.php?q=Q&fl[]=identifier&rows=N&
  page=P&output=json`` (Solr pages);
- metadata: ``metadata/{identifier}`` (``metadata`` and ``files[]`` with name, format, size,
  md5, sha1; an unknown or dark item answers ``{}``);
- files: ``download/{identifier}/{name}``, which redirects to a datanode (followed, never
  hard-coded).

Search and metadata replies go through the polite API core (:mod:`dlprep.fetch.api`: per-host
limits, 429/503 ``Retry-After``, a response cache that ``--offline`` replays). A file is
downloaded with :func:`dlprep.fetch.download.fetch_file` (``.part`` + resume + retries) and
kept only when its md5 (streamed) and size, then its sha1, match the item metadata; a file with
neither hash is never downloaded.

Keys: public items need none. ``IA_ACCESS_KEY`` and ``IA_SECRET_KEY`` (both, from the
environment or the 0600 secrets file) are sent as ``authorization: LOW access:secret`` to the
``--api-base`` host only (a redirect to another host drops the header).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import ChecksumError, DlprepError, FetchError, FormatError, OfflineError
from ..fetch.api import ApiClient, AuthError, HostPolicy
from ..fetch.download import FileSpec, fetch_file
from ..fetch.options import FetchOptions
from ..fetch.verify import hash_file

log = logging.getLogger("dlprep")

SOURCE = "internet-archive"
DEFAULT_BASE = "https://archive.org"
#: no published limits (SOURCES.md §7): two requests in flight per host, as for Wikimedia
POLICY = HostPolicy(max_in_flight=2, min_interval=0.0)
SCRAPE_PATH = "services/search/v1/scrape"
ADVANCED_PATH = "advancedsearch.php"
SCRAPE_MIN, SCRAPE_MAX = 100, 10_000
ADVANCED_ROWS = 500
KEY_VARS = ("IA_ACCESS_KEY", "IA_SECRET_KEY")

#: ``--format`` -> (dataset kind, the IA ``format`` values it takes, in order of preference)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "JPEG": ("image", ("JPEG",)),
    "PNG": ("image", ("PNG",)),
    "Text": ("text", ("Text", "DjVuTXT")),
    "DjVuTXT": ("text", ("DjVuTXT",)),
}
_HEX = re.compile(r"^[0-9a-f]+$")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass(frozen=True)
class IaFile:
    """One entry of an item's ``files[]``: hashes are lowercase hex or ``""``; size -1 when
    the metadata gives none."""

    name: str
    format: str = ""
    source: str = ""
    size: int = -1
    md5: str = ""
    sha1: str = ""

    @property
    def cache_name(self) -> str:
        """A safe, content-addressed file name: the md5 (else sha1) plus the suffix."""
        suffix = Path(self.name).suffix.lower()
        return (self.md5 or self.sha1) + (suffix if _SUFFIX.match(suffix) else ".bin")


@dataclass(frozen=True)
class IaItem:
    """An item's identifier, its ``metadata`` object and its files."""

    identifier: str
    metadata: Mapping[str, Any]
    files: tuple[IaFile, ...] = ()

    def values(self, name: str) -> list[str]:
        """The values of metadata field ``name`` (see :func:`field_values`)."""
        return field_values(self.metadata.get(name))

    @property
    def title(self) -> str:
        return next(iter(self.values("title")), "")

    @property
    def license_url(self) -> str:
        return next(iter(self.values("licenseurl")), "")


def field_values(value: Any) -> list[str]:
    """A metadata value as a list of strings, in the item's order: a list stays a list, a
    string is split on ``;`` (IA's separator inside one ``subject`` string), numbers become
    text; blanks are dropped."""
    raw = value if isinstance(value, list) else [] if value is None else [value]
    out: list[str] = []
    for v in raw:
        if isinstance(v, str):
            out.extend(p.strip() for p in v.split(";") if p.strip())
        elif isinstance(v, bool | int | float):
            out.append(str(v))
    return out


def _object(doc: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise FormatError(where, -1, f"not {what} (a JSON {type(doc).__name__})")
    return doc


def parse_scrape(doc: Any, where: str) -> tuple[list[dict[str, Any]], str | None, int | None]:
    """A scrape API page -> (item dicts, next cursor or None, total or None)."""
    doc = _object(doc, where, "a scrape API reply")
    if "error" in doc and "items" not in doc:
        raise DlprepError(f"{where}: the search was refused: {str(doc['error'])[:200]}")
    items = doc.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FormatError(where, -1, "not a scrape API reply (no items[] list)")
    cursor = doc.get("cursor")
    total = doc.get("total")
    return items, cursor if isinstance(cursor, str) and cursor else None, \
        total if isinstance(total, int) else None


def parse_advanced(doc: Any, where: str) -> tuple[list[dict[str, Any]], int]:
    """An advancedsearch ``output=json`` page -> (docs, numFound)."""
    doc = _object(doc, where, "an advancedsearch reply")
    if "error" in doc and "response" not in doc:
        raise DlprepError(f"{where}: the search was refused: {str(doc['error'])[:200]}")
    resp = doc.get("response")
    docs = resp.get("docs") if isinstance(resp, dict) else None
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        raise FormatError(where, -1, "not an advancedsearch reply (no response.docs[] list)")
    found = resp.get("numFound") if isinstance(resp, dict) else None
    return docs, found if isinstance(found, int) else len(docs)


def _hex(value: Any, length: int) -> str:
    text = str(value or "").strip().lower()
    return text if len(text) == length and _HEX.match(text) else ""


def parse_metadata(doc: Any, identifier: str, where: str) -> IaItem | None:
    """``metadata/{identifier}`` JSON -> the item; None for ``{}`` (no such item, or dark)."""
    doc = _object(doc, where, "an item metadata reply")
    if not doc or doc.get("is_dark"):
        return None
    meta = doc.get("metadata")
    files = doc.get("files", [])
    if not isinstance(meta, dict) or not isinstance(files, list):
        raise FormatError(where, -1, "not an item metadata reply (no metadata object or "
                                     "files[] list)")
    out = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            continue
        size = str(f.get("size", "")).strip()
        out.append(IaFile(name=f["name"], format=str(f.get("format", "")),
                          source=str(f.get("source", "")),
                          size=int(size) if size.isdigit() else -1,
                          md5=_hex(f.get("md5"), 32), sha1=_hex(f.get("sha1"), 40)))
    return IaItem(str(meta.get("identifier") or identifier), meta, tuple(out))


def select_files(item: IaItem, fmt: str, limit: int = 1) -> tuple[list[IaFile], int]:
    """The item's files of ``--format fmt`` (originals and derivatives, not the item's own
    metadata files), the preferred IA format first, at most ``limit`` (0: all); and how many
    were passed over because the metadata gives neither md5 nor sha1 for them."""
    _, wanted = FORMATS[fmt]
    rank = {f.lower(): i for i, f in enumerate(wanted)}
    candidates = [f for f in item.files
                  if f.format.lower() in rank and f.source.lower() != "metadata"]
    if candidates:  # Text: the plain-text originals when there are any, else the DjVu text
        best = min(rank[f.format.lower()] for f in candidates)
        candidates = [f for f in candidates if rank[f.format.lower()] == best]
    unverifiable = [f for f in candidates if not (f.md5 or f.sha1)]
    chosen = [f for f in candidates if f.md5 or f.sha1]
    return (chosen[:limit] if limit else chosen), len(unverifiable)


def file_url(base: str, identifier: str, name: str) -> str:
    """``{base}/download/{identifier}/{name}`` (each path segment quoted)."""
    return (f"{base.rstrip('/')}/download/{quote(identifier, safe='')}/"
            f"{quote(name, safe='/')}")


def details_url(base: str, identifier: str) -> str:
    return f"{base.rstrip('/')}/details/{quote(identifier, safe='')}"


def auth_header(keys: tuple[str, str] | None) -> dict[str, str]:
    """``{"authorization": "LOW access:secret"}`` for IA keys, ``{}`` without."""
    return {"authorization": f"LOW {keys[0]}:{keys[1]}"} if keys else {}


def load_keys() -> tuple[str, str] | None:
    """``(IA_ACCESS_KEY, IA_SECRET_KEY)`` when both are set, None when neither is; one of the
    two alone is an error naming the other (raised before any request)."""
    from .. import secrets

    found = {var: secrets.optional_secret(var, source="Internet Archive") for var in KEY_VARS}
    given = [v for v in KEY_VARS if found[v]]
    if not given:
        return None
    if len(given) == 1:
        missing = next(v for v in KEY_VARS if v not in given)
        raise DlprepError(f"Internet Archive: {given[0]} is set but {missing} is not; set both "
                          f"(or neither: public items need no keys)")
    return found[KEY_VARS[0]], found[KEY_VARS[1]]  # type: ignore[return-value]


@dataclass
class FetchReport:
    """Files downloaded and verified, and the ones skipped, counted by reason."""

    paths: dict[tuple[str, str], Path] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)

    def skip(self, key: tuple[str, str], reason: str) -> None:
        self.reasons[key] = reason
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def skip_reason(exc: FetchError) -> str:
    """A short reason for a failed download: the HTTP status, an HTML page, a checksum that
    disagrees with the item metadata, or a download failure."""
    if isinstance(exc, ChecksumError):
        return "checksum disagrees with the item metadata"
    text = str(exc)
    if "HTML page" in text:
        return "HTML page instead of the file"
    m = re.search(r"HTTP (\d{3})", text)
    return f"HTTP {m.group(1)}" if m else "download failed"


class InternetArchive:
    """Search, metadata and verified downloads against one base URL (see the module doc)."""

    def __init__(self, base: str, cache_dir: Path, options: FetchOptions, *,
                 keys: tuple[str, str] | None = None, policy: HostPolicy = POLICY) -> None:
        self.base = base.rstrip("/") or DEFAULT_BASE
        self.options = options
        self.policy = policy
        self.keys = keys
        self.api = ApiClient(SOURCE, self.base + "/", cache_dir=cache_dir, options=options,
                             policy=policy, secret_headers=auth_header(keys))

    # -- search ---------------------------------------------------------------------------

    def search(self, query: str, *, limit: int, method: str = "scrape") -> list[str]:
        """Identifiers of the items matching ``query``, in the API's order, at most ``limit``
        (0: all); duplicates dropped."""
        if not query.strip():
            raise DlprepError("internet-archive: give a search with --query, e.g. "
                              "'collection:nasa AND mediatype:image'")
        path = SCRAPE_PATH if method == "scrape" else ADVANCED_PATH

        def first_page(docs: list[dict[str, Any]]) -> None:  # an empty result is not cached
            if not docs:
                raise DlprepError(f"internet-archive: the search {query!r} found no items "
                                  f"({self.base}/{path})")

        pages = self._scrape(query, limit, first_page) if method == "scrape" else \
            self._advanced(query, limit, first_page)
        seen: dict[str, None] = {}
        for docs in pages:
            for d in docs:
                ident = d.get("identifier")
                if isinstance(ident, str) and ident:
                    seen.setdefault(ident, None)
            if limit and len(seen) >= limit:
                break
        ids = list(seen)
        return ids[:limit] if limit else ids

    def _scrape(self, query: str, limit: int,
                first_page: Callable[[list[dict[str, Any]]], None]
                ) -> Iterator[list[dict[str, Any]]]:
        count = max(SCRAPE_MIN, min(SCRAPE_MAX, limit or SCRAPE_MAX))
        cursor: str | None = None
        where = f"{self.base}/{SCRAPE_PATH}"
        while True:
            params: dict[str, object] = {"q": query, "fields": "identifier", "count": count}
            if cursor:
                params["cursor"] = cursor
            check = None if cursor else (lambda doc: first_page(parse_scrape(doc, where)[0]))
            docs, cursor, _ = parse_scrape(self.api.get_json(SCRAPE_PATH, params, check=check),
                                           where)
            yield docs
            if not cursor or not docs:
                return

    def _advanced(self, query: str, limit: int,
                  first_page: Callable[[list[dict[str, Any]]], None]
                  ) -> Iterator[list[dict[str, Any]]]:
        rows = max(1, min(ADVANCED_ROWS, limit or ADVANCED_ROWS))
        page, got = 1, 0
        where = f"{self.base}/{ADVANCED_PATH}"
        while True:
            check = None if page > 1 else \
                (lambda doc: first_page(parse_advanced(doc, where)[0]))
            docs, found = parse_advanced(self.api.get_json(ADVANCED_PATH, {
                "q": query, "fl[]": "identifier", "rows": rows, "page": page,
                "output": "json"}, check=check), where)
            yield docs
            got += len(docs)
            if not docs or got >= found:
                return
            page += 1

    # -- metadata -------------------------------------------------------------------------

    def item(self, identifier: str) -> IaItem | None:
        """The item's metadata and files; None when the archive has no such (public) item."""
        path = f"metadata/{quote(identifier, safe='')}"
        try:
            doc = self.api.get_json(path)
        except AuthError as exc:
            hint = ("the keys in IA_ACCESS_KEY / IA_SECRET_KEY were refused" if self.keys else
                    "a restricted item needs IA_ACCESS_KEY and IA_SECRET_KEY")
            status = re.search(r"HTTP (\d{3})", str(exc))
            raise AuthError(f"Internet Archive refused {self.base}/{path} (HTTP "
                            f"{status.group(1) if status else '401/403'}): {hint}") from None
        return parse_metadata(doc, identifier, f"{self.base}/{path}")

    # -- files ----------------------------------------------------------------------------

    def download(self, jobs: Sequence[tuple[str, IaFile]], dest: Path,
                 session: Any = None) -> FetchReport:
        """Download ``(identifier, file)`` pairs into ``dest`` (content-addressed names), at
        most ``policy.max_in_flight`` at a time. A file that 404s, answers an HTML page, fails
        its download or disagrees with its md5/size/sha1 is skipped and counted (and nothing
        of it stays in ``dest``); offline, a file not in the cache is skipped and counted."""
        from concurrent.futures import ThreadPoolExecutor

        report = FetchReport()
        if session is None and not self.options.offline:
            session = self._session()
        if jobs and not self.options.offline:  # made once, here: a thread whose download fails
            dest.mkdir(parents=True, exist_ok=True)  # must not remove it under the others

        quiet = self.options.with_(progress=False)

        def one(job: tuple[str, IaFile]) -> tuple[tuple[str, str], Path | str]:
            ident, f = job
            key = (ident, f.name)
            try:
                return key, self.fetch_one(ident, f, dest, session, quiet)
            except OfflineError:  # e.g. a file that failed when the run was online
                log.info("skipped %s/%s: not in the cache (offline)", ident, f.name)
                return key, "not in the cache (offline)"
            except FetchError as exc:
                log.warning("skipped %s/%s: %s", ident, f.name, exc)
                return key, skip_reason(exc)

        with ThreadPoolExecutor(max_workers=max(1, self.policy.max_in_flight)) as pool:
            for key, got in pool.map(one, jobs):
                if isinstance(got, Path):
                    report.paths[key] = got
                else:
                    report.skip(key, got)
        return report

    def fetch_one(self, identifier: str, f: IaFile, dest: Path, session: Any = None,
                  options: FetchOptions | None = None) -> Path:
        """One file, verified against the item metadata (md5 and size while streaming, then
        sha1 after a fresh download); a mismatch raises ``ChecksumError`` and keeps nothing."""
        options = options or self.options
        if not (f.md5 or f.sha1):
            raise ChecksumError(f"{identifier}/{f.name}: the item metadata gives no md5 or sha1;"
                                f" not downloaded")
        spec = FileSpec(name=f.cache_name, urls=[file_url(self.base, identifier, f.name)],
                        md5=f.md5 or None, size=f.size if f.size >= 0 else None,
                        checksum_optional=True)
        target = dest / spec.name
        fresh = not target.is_file() or options.force
        path = fetch_file(spec, dest, options, session=session)
        if fresh and f.sha1:
            actual = hash_file(path, "sha1")
            if actual != f.sha1:
                path.unlink(missing_ok=True)
                raise ChecksumError(f"{identifier}/{f.name}: sha1 mismatch: the item metadata "
                                    f"says {f.sha1}, the download is {actual}; removed")
        return path

    def _session(self) -> Any:
        from ..fetch.http import new_session

        session = new_session(pool_size=max(2, self.policy.max_in_flight))
        session.headers.update(auth_header(self.keys))
        return session


def describe_skips(skipped: Mapping[str, int]) -> str:
    """``"3: 1 HTTP 404, 2 HTML page ..."`` (most frequent first)."""
    total = sum(skipped.values())
    parts = ", ".join(f"{n} {reason}" for reason, n in
                      sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total}: {parts}" if total else "0"


def dumps_skips(skipped: Mapping[str, int]) -> str:
    return json.dumps(dict(sorted(skipped.items())), sort_keys=True)
