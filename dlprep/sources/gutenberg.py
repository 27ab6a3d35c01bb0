"""Project Gutenberg: the offline catalog, book file layouts, and the robot policy.

* Catalog: ``cache/epub/feeds/pg_catalog.csv.gz`` (columns ``Text#, Type, Issued, Title,
  Language, Authors, Subjects, LoCC, Bookshelves``), cached under ``catalog/<UTC date>/`` and
  downloaded again at most once a day; :func:`search_catalog` filters it.
* Books: the main site's ``cache/epub/{id}/pg{id}.txt``; on a ``--mirror`` also the mirror-tree
  layout ``1/5/4/5/15453/15453-0.txt`` (then ``15453.txt``, ``15453-8.txt``) as fallbacks.
* Politeness (gutenberg.org/policy/robot_access.html): at most one request every 2 s to
  Gutenberg hosts (:class:`RateLimiter`, injectable clock) and ``robots.txt`` obeyed
  (:class:`RobotsPolicy`); user mirrors are not throttled. Downloads go through
  ``fetch.download.fetch_file`` (resumable, locked, cached).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import shutil
import threading
import time
import urllib.robotparser
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import DlprepError, FetchError, FormatError, NoNetworkError, OfflineError
from ..fetch.download import FileSpec, fetch_file, local_source
from ..fetch.options import FetchOptions
from ..limits import open_decompressed
from ..magic import DECOMPRESS_ERRORS
from ..redact import redact_text

log = logging.getLogger("dlprep")

DEFAULT_BASE = "https://www.gutenberg.org/"
CATALOG_PATH = "cache/epub/feeds/pg_catalog.csv.gz"
CATALOG_COLUMNS = ("Text#", "Type", "Issued", "Title", "Language", "Authors", "Subjects",
                   "LoCC", "Bookshelves")
MIN_INTERVAL_S = 2.0
GUTENBERG_DOMAINS = ("gutenberg.org", "pglaf.org")
_KEEP_CATALOGS = 2


def is_gutenberg_host(url: str) -> bool:
    """True for URLs on gutenberg.org / pglaf.org hosts (the ones the robot policy covers)."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in GUTENBERG_DOMAINS)


# --- layouts -------------------------------------------------------------------------------

def main_site_path(book_id: int) -> str:
    """``cache/epub/{id}/pg{id}.txt`` (UTF-8), the main site's layout."""
    return f"cache/epub/{book_id}/pg{book_id}.txt"


def mirror_tree_dir(book_id: int) -> str:
    """Mirror-tree folder: each digit but the last, then the id (15453 -> ``1/5/4/5/15453``;
    ids below 10 -> ``0/<id>``)."""
    digits = str(int(book_id))
    head = "/".join(digits[:-1]) if len(digits) > 1 else "0"
    return f"{head}/{digits}"


def mirror_tree_paths(book_id: int) -> list[str]:
    """Mirror-tree candidates in order: ``-0.txt`` (UTF-8), ``.txt`` (ASCII), ``-8.txt``
    (Latin-1)."""
    d = mirror_tree_dir(book_id)
    return [f"{d}/{book_id}-0.txt", f"{d}/{book_id}.txt", f"{d}/{book_id}-8.txt"]


def book_file_names(book_id: int) -> list[str]:
    """The cache names a book can have, in the order they are preferred."""
    return [f"pg{book_id}.txt"] + [p.rsplit("/", 1)[1] for p in mirror_tree_paths(book_id)]


def book_encoding(path: Path) -> str:
    """The encoding a book file's name promises (``-8.txt``: Latin-1; else UTF-8)."""
    return "latin-1" if path.name.endswith("-8.txt") else "utf-8"


def read_book(path: Path) -> str:
    """Decode a book file (UTF-8, or Latin-1 for ``-8.txt``; a plain ``{id}.txt`` that is not
    UTF-8 is read as Latin-1). Raises ``FormatError`` naming the byte offset otherwise."""
    data = path.read_bytes()
    encoding = book_encoding(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if path.name.startswith("pg") or path.name.endswith("-0.txt"):
            raise FormatError(path, exc.start, f"not UTF-8 text ({exc.reason})") from exc
        return data.decode("latin-1")


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel


# --- catalog -------------------------------------------------------------------------------

def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


@dataclass(frozen=True)
class CatalogEntry:
    """One row of ``pg_catalog.csv``; list fields are split at ``;``."""

    id: int
    type: str
    issued: str
    title: str
    language: tuple[str, ...]
    authors: str
    subjects: tuple[str, ...] = ()
    locc: str = ""
    bookshelves: tuple[str, ...] = ()


def read_catalog(path: Path) -> list[CatalogEntry]:
    """Parse ``pg_catalog.csv`` (gzipped or not). Raises ``FormatError`` for a missing column,
    a bad ``Text#`` or bytes that are not UTF-8."""
    try:  # bounded like every decompressing reader (dlprep.limits)
        with open_decompressed(path) as fh:
            raw = fh.read()
    except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:
        raise FormatError(path, -1, f"corrupt gzip stream: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, exc.start, f"catalog is not UTF-8 ({exc.reason})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CATALOG_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise FormatError(path, 0, f"catalog header lacks column(s) {', '.join(missing)}; "
                                   f"expected {', '.join(CATALOG_COLUMNS)}")
    entries = []
    for row in reader:
        try:
            book_id = int(row["Text#"])
        except (TypeError, ValueError) as exc:
            raise FormatError(path, -1, f"catalog line {reader.line_num}: Text# "
                                        f"{row['Text#']!r} is not a number") from exc
        entries.append(CatalogEntry(
            id=book_id, type=row["Type"] or "", issued=row["Issued"] or "",
            title=" ".join((row["Title"] or "").split()),
            language=tuple(_split_list(row["Language"] or "")), authors=row["Authors"] or "",
            subjects=tuple(_split_list(row["Subjects"] or "")), locc=row["LoCC"] or "",
            bookshelves=tuple(_split_list(row["Bookshelves"] or ""))))
    return entries


def search_catalog(entries: Iterable[CatalogEntry], *, ids: Sequence[int] | None = None,
                   author: str | None = None, title: str | None = None,
                   language: str | None = None, subject: str | None = None,
                   limit: int | None = None,
                   types: Sequence[str] = ("Text",)) -> list[CatalogEntry]:
    """Entries matching every given filter, sorted by id, at most ``limit``.

    ``author``/``title``/``subject``: case-insensitive substrings (``subject`` also searches
    bookshelves); ``language``: a code (``en``) that must be among the entry's languages;
    ``types``: catalog ``Type`` values kept (empty: all).
    """
    wanted = set(ids) if ids else None
    author_l, title_l = (author or "").lower(), (title or "").lower()
    subject_l, lang = (subject or "").lower(), (language or "").lower()
    out = []
    for e in entries:
        if types and e.type not in types:
            continue
        if wanted is not None and e.id not in wanted:
            continue
        if author_l and author_l not in e.authors.lower():
            continue
        if title_l and title_l not in e.title.lower():
            continue
        if lang and lang not in (code.lower() for code in e.language):
            continue
        if subject_l and not any(subject_l in s.lower() for s in (*e.subjects, *e.bookshelves)):
            continue
        out.append(e)
    out.sort(key=lambda e: e.id)
    return out[:limit] if limit else out


# --- politeness ----------------------------------------------------------------------------

class RateLimiter:
    """At most one request every ``interval`` seconds; ``clock``/``sleep`` are injectable."""

    def __init__(self, interval: float = MIN_INTERVAL_S, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.last: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until a request may be sent, and count it as sent now."""
        with self._lock:
            if self.last is not None:
                remaining = self.interval - (self.clock() - self.last)
                if remaining > 0:
                    self.sleep(remaining)
            self.last = self.clock()


_DEFAULT_LIMITER = RateLimiter()
_DEFAULT_ROBOTS: RobotsPolicy | None = None


def default_limiter() -> RateLimiter:
    """The process-wide limiter shared by every Gutenberg download."""
    return _DEFAULT_LIMITER


def default_robots() -> RobotsPolicy:
    """The process-wide robots.txt cache (uses :func:`default_limiter`)."""
    global _DEFAULT_ROBOTS
    if _DEFAULT_ROBOTS is None:
        from ..fetch.http import USER_AGENT

        _DEFAULT_ROBOTS = RobotsPolicy(USER_AGENT, _DEFAULT_LIMITER)
    return _DEFAULT_ROBOTS


def polite_urls(urls: Sequence[str]) -> list[str]:
    """Drop Gutenberg URLs that robots.txt disallows (FetchError if none is left), then wait
    until the next Gutenberg request is allowed. For single-file recipes (shakespeare's
    fallbacks, nietzsche's PG copy)."""
    robots = default_robots()
    allowed = [u for u in urls if not is_gutenberg_host(u) or robots.allowed(u)]
    if not allowed:
        raise FetchError(f"{urls[0]}: disallowed by robots.txt; pass --mirror DIR with the file")
    robots.limiter.wait()
    return allowed


def fetch_politely(spec: FileSpec, fetch: Callable[[FileSpec], Path], *, cached: bool,
                   mirrors: bool) -> Path:
    """``fetch(spec)`` for a recipe file that may live on Gutenberg hosts: their URLs are tried
    last (after the other URLs and any ``mirrors``), only where robots.txt allows, and no sooner
    than the rate limit allows. ``cached``: the file is already in the cache (no politeness
    needed)."""
    pg_urls = [u for u in spec.urls if is_gutenberg_host(u)]
    if not pg_urls or cached:
        return fetch(spec)
    other = [u for u in spec.urls if u not in pg_urls]
    if other or mirrors:
        try:
            return fetch(replace(spec, urls=other))
        except OfflineError:
            raise
        except FetchError as exc:
            log.info("%s; trying Project Gutenberg", exc)
    return fetch(replace(spec, urls=polite_urls(pg_urls)))


class RobotsPolicy:
    """``robots.txt`` per host, fetched once (through the rate limiter) and obeyed.

    ``get(url) -> (status, text)`` is injectable; a 401/403 disallows everything, other
    errors/404 allow everything (RFC 9309). ``Crawl-delay`` raises the limiter's interval.
    """

    def __init__(self, user_agent: str, limiter: RateLimiter,
                 get: Callable[[str], tuple[int, str]] | None = None) -> None:
        self.user_agent = user_agent
        self.limiter = limiter
        self.get = get or _http_get_text
        self._parsers: dict[str, urllib.robotparser.RobotFileParser] = {}

    def _parser(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        root = f"{parts.scheme}://{parts.netloc}"
        if root not in self._parsers:
            rp = urllib.robotparser.RobotFileParser(root + "/robots.txt")
            self.limiter.wait()
            try:
                status, text = self.get(root + "/robots.txt")
            except (OSError, FetchError) as exc:
                log.info("%s/robots.txt: %s; assuming no restrictions", root, exc)
                status, text = 404, ""
            if status in (401, 403):
                rp.disallow_all = True
            elif status >= 400:
                rp.allow_all = True
            else:
                rp.parse(text.splitlines())
                delay = rp.crawl_delay(self.user_agent)
                if delay and float(delay) > self.limiter.interval:
                    self.limiter.interval = float(delay)
            self._parsers[root] = rp
        return self._parsers[root]

    def allowed(self, url: str) -> bool:
        return self._parser(url).can_fetch(self.user_agent, url)


def _http_get_text(url: str) -> tuple[int, str]:
    from ..fetch.http import shared_session

    try:
        resp = shared_session().get(url, timeout=(15, 30))
    except Exception as exc:  # requests' exceptions; no socket detail needed here
        raise FetchError(redact_text(f"{url}: {exc}")) from exc
    return resp.status_code, resp.text


# --- client --------------------------------------------------------------------------------

@dataclass
class GutenbergClient:
    """Fetch the catalog and books into ``dest`` (``catalog/<date>/``, ``books/<id>/``).

    ``options.mirrors`` are tried first (main layout, then mirror tree, then a flat folder of
    files: ``BASE/pg1342.txt``, ``BASE/pg_catalog.csv.gz``), then ``base_url`` (main layout);
    the other fetch options (offline, force, lock folder, retry policy) apply to every
    download. ``polite(url)`` says which URLs the rate limit and robots.txt apply
    to; ``limiter``, ``robots``, ``today`` and ``options.retry`` (its sleep/clock) are
    injectable for tests.
    """

    dest: Path
    options: FetchOptions = field(default_factory=FetchOptions)
    base_url: str = DEFAULT_BASE
    limiter: RateLimiter = field(default_factory=default_limiter)
    robots: RobotsPolicy | None = None
    polite: Callable[[str], bool] = is_gutenberg_host
    today: Callable[[], _dt.date] = lambda: _dt.datetime.now(_dt.UTC).date()
    urls_used: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.robots is None:
            if self.limiter is _DEFAULT_LIMITER:
                self.robots = default_robots()
            else:
                from ..fetch.http import USER_AGENT

                self.robots = RobotsPolicy(USER_AGENT, self.limiter)

    @property
    def mirrors(self) -> tuple[str, ...]:
        return self.options.mirrors

    @property
    def offline(self) -> bool:
        return self.options.offline

    @property
    def force(self) -> bool:
        return self.options.force

    def _get(self, url: str, dest_dir: Path, name: str) -> Path:
        """Fetch one URL into ``dest_dir/name`` (rate-limited + robots.txt for Gutenberg hosts)."""
        retry = self.options.retry
        if local_source(url) is None and self.polite(url):
            assert self.robots is not None
            if not self.robots.allowed(url):
                raise FetchError(f"{url}: disallowed by robots.txt; use --mirror (a Gutenberg "
                                 f"mirror or a local copy)")
            self.limiter.wait()
            from ..fetch.http import RetryPolicy

            # retries of a Gutenberg request wait at least the politeness interval too
            retry = replace(retry or RetryPolicy(attempts=3, sleep=self.limiter.sleep),
                            backoff=max(self.limiter.interval, (retry.backoff if retry else 0)))
        spec = FileSpec(name=name, urls=[url], checksum_optional=True)
        # the mirrors are already in ``url``; a book is small: no progress bar
        path = fetch_file(spec, dest_dir, self.options.with_(mirrors=(), retry=retry,
                                                             progress=False))
        self.urls_used[str(path)] = url
        return path

    def _try(self, candidates: Sequence[tuple[str, str]], dest_dir: Path, what: str) -> Path:
        errors = []
        no_dns: list[str] = []
        for url, name in candidates:
            if self.offline and local_source(url) is None:
                continue
            try:
                return self._get(url, dest_dir, name)
            except OfflineError:
                continue
            except NoNetworkError as exc:
                no_dns.extend(exc.hosts)
                errors.append(str(exc))
            except FetchError as exc:
                errors.append(str(exc))
        if no_dns and len(no_dns) == len(errors):
            raise NoNetworkError(no_dns, f"could not fetch {what}")
        if self.offline:
            raise OfflineError(f"offline: {what} is not in the cache ({dest_dir}); run without "
                               f"--offline or pass --mirror DIR holding a Gutenberg tree")
        raise FetchError(f"could not fetch {what}: " + ("; ".join(errors) or "no URL to try"))

    def fetch_book(self, book_id: int) -> Path:
        """The cached text file of ``book_id`` (downloaded when missing). Raises FetchError /
        OfflineError naming every URL tried."""
        book_dir = self.dest / "books" / str(int(book_id))
        if not self.force:
            for name in book_file_names(book_id):
                if (book_dir / name).is_file():
                    return book_dir / name
        candidates = []
        for base in self.mirrors:
            candidates.append((_join(base, main_site_path(book_id)), f"pg{book_id}.txt"))
            candidates.extend((_join(base, p), p.rsplit("/", 1)[1])
                              for p in mirror_tree_paths(book_id))
        for base in self.mirrors:  # a flat folder: BASE/<file name>, as for every other set
            candidates.extend((_join(base, name), name) for name in book_file_names(book_id))
        if self.base_url:
            candidates.append((_join(self.base_url, main_site_path(book_id)),
                               f"pg{book_id}.txt"))
        return self._try(candidates, book_dir, f"Gutenberg book {book_id}")

    def fetch_catalog(self) -> Path:
        """``pg_catalog.csv.gz`` no older than today (UTC); an older cached copy is used when
        offline or when the download fails."""
        root = self.dest / "catalog"
        today = self.today().isoformat()
        cached = sorted(p for p in root.glob("*/pg_catalog.csv.gz") if p.is_file())
        if cached and (cached[-1].parent.name == today and not self.force or self.offline):
            return cached[-1]
        urls = [_join(b, CATALOG_PATH) for b in self.mirrors]
        urls += [_join(b, CATALOG_PATH.rsplit("/", 1)[1]) for b in self.mirrors]  # flat folder
        if self.base_url:
            urls.append(_join(self.base_url, CATALOG_PATH))
        if self.offline and not any(local_source(u) is not None for u in urls):
            raise OfflineError(f"offline: the Gutenberg catalog is not in the cache ({root}); "
                               f"run once without --offline, or pass --mirror DIR holding "
                               f"pg_catalog.csv.gz")
        try:
            path = self._try([(u, "pg_catalog.csv.gz") for u in urls], root / today,
                             "the Gutenberg catalog")
        except FetchError:
            if cached:
                log.warning("could not refresh the Gutenberg catalog; using %s", cached[-1])
                return cached[-1]
            raise
        for old in sorted(p.parent for p in root.glob("*/pg_catalog.csv.gz"))[:-_KEEP_CATALOGS]:
            shutil.rmtree(old, ignore_errors=True)
        return path


def parse_ids(value: str | Sequence[int]) -> list[int]:
    """``"100,1342"`` or ``[100, 1342]`` -> ``[100, 1342]`` (positive ints, order kept, no dups)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[int] = []
    for item in items:
        try:
            n = int(str(item).strip())
        except ValueError as exc:
            raise DlprepError(f"--ids: {item!r} is not a book number") from exc
        if n <= 0:
            raise DlprepError(f"--ids: {n} is not a book number")
        if n not in out:
            out.append(n)
    return out
