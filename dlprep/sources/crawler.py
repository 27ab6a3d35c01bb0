"""A polite crawler for one's own sites: robots.txt, crawl-delay, one request at a time per host,
redirects with a cap, HTML only, normalised URLs; every answer written to a WARC (warcio).

Order: breadth first from the seeds (``depth`` 0), links in page order. Politeness: robots.txt
of each host is read first (401/403: everything disallowed; other 4xx: everything allowed;
5xx or no answer: everything disallowed, RFC 9309); ``Crawl-delay`` (else ``delay``) seconds
from one answer to the next request to that host, robots.txt included; requests are
sequential, so at most one is open per host. ``clock``/``sleep`` are injectable (tests).
"""

from __future__ import annotations

import io
import logging
import posixpath
import time
import urllib.robotparser
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from .._version import __version__
from ..redact import redact_url

log = logging.getLogger("dlprep")

USER_AGENT = (f"dlprep-crawler/{__version__} (+https://github.com/dlprep/dlprep; a research "
              f"dataset crawler that obeys robots.txt)")
ROBOTS_NAME = "dlprep-crawler"
MAX_REDIRECTS = 5
HTML_TYPES = ("text/html", "application/xhtml+xml")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute, normalised http(s) URL (lower-case scheme/host, no default port, no fragment,
    dot segments resolved, empty path -> ``/``), or None for other schemes."""
    if base:
        url = urljoin(base, url.strip())
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path or "/"
    trailing = path.endswith("/")
    path = posixpath.normpath(path)
    path = "/" if path in (".", "/", "//") else path + ("/" if trailing else "")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def crawl_delay(robots: str, agent: str) -> float | None:
    """The ``Crawl-delay`` (seconds, fractions allowed: urllib's parser takes integers only)
    of the group naming ``agent``, else of the ``*`` group."""
    found: dict[str, float] = {}
    agents: list[str] = []
    in_agents = False
    for raw in robots.splitlines():
        key, _, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            agents = agents + [value.lower()] if in_agents else [value.lower()]
            in_agents = True
            continue
        in_agents = False
        if key == "crawl-delay":
            try:
                delay = float(value)
            except ValueError:
                continue
            for a in agents:
                found.setdefault(a, delay)
    mine = [d for a, d in found.items() if a != "*" and a in agent.lower()]
    return mine[0] if mine else found.get("*")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def extract_links(html: str) -> list[str]:
    parser = _Links()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - a broken page has no (more) links
        pass
    return parser.links


@dataclass
class CrawlResult:
    """What a crawl did: pages written, skipped URLs with reasons, the requests in order."""

    pages: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[float, str]] = field(default_factory=list)


class Crawler:
    """Breadth-first polite crawl from ``seeds`` into a WARC writer."""

    def __init__(self, *, max_pages: int = 100, depth: int = 2, same_domain: bool = True,
                 delay: float = 1.0, max_page_bytes: int = 16 * 2**20, timeout: float = 30.0,
                 session: Any = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_pages = max_pages
        self.depth = depth
        self.same_domain = same_domain
        self.delay = delay
        self.max_page_bytes = max_page_bytes
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self._session = session
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._host_delay: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self.result = CrawlResult()

    @property
    def session(self) -> Any:
        if self._session is None:
            from ..fetch.http import new_session

            self._session = new_session(pool_size=4)
            self._session.headers["User-Agent"] = USER_AGENT
        return self._session

    def _wait_turn(self, host: str) -> None:
        last = self._last.get(host)
        if last is not None:
            gap = self._host_delay.get(host, self.delay) - (self.clock() - last)
            if gap > 0:
                self.sleep(gap)

    def _get(self, url: str) -> Any:
        host = urlsplit(url).netloc
        self._wait_turn(host)
        self.result.requests.append((self.clock(), url))
        try:
            return self.session.get(url, allow_redirects=False, stream=True,
                                    timeout=(self.timeout, self.timeout))
        finally:  # the delay runs from the answer, so requests never arrive closer together
            self._last[host] = self.clock()

    def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        rp = self._robots.get(key)
        if rp is not None:
            return rp
        rp = urllib.robotparser.RobotFileParser(key + "/robots.txt")
        try:
            with self._get(key + "/robots.txt") as resp:
                status = resp.status_code
                text = resp.raw.read(512 * 1024, decode_content=True).decode("utf-8", "replace")
        except Exception as exc:  # noqa: BLE001 - no robots.txt answer: stay out
            log.warning("%s/robots.txt: %s; not crawling %s", key, type(exc).__name__, key)
            status, text = 503, ""
        if status in (401, 403) or status >= 500:
            rp.disallow_all = True
        elif status >= 400:
            rp.allow_all = True
        else:
            rp.parse(text.splitlines())
        rp.modified()  # read now (crawl_delay() answers None for a parser never marked read)
        delay = crawl_delay(text, ROBOTS_NAME) if status < 400 else None
        if delay is not None:
            self._host_delay[parts.netloc] = max(float(delay), self.delay)
        self._robots[key] = rp
        return rp

    def _allowed_host(self, url: str, seed_hosts: set[str]) -> bool:
        if not self.same_domain:
            return True
        host = urlsplit(url).hostname or ""
        return any(host == h or host.endswith("." + h) for h in seed_hosts)

    def crawl(self, seeds: Iterable[str], writer: Any) -> CrawlResult:
        """Crawl into the warcio ``writer``; returns the :class:`CrawlResult`."""
        from warcio.statusandheaders import StatusAndHeaders

        queue: deque[tuple[str, int]] = deque()
        seen: set[str] = set()
        for seed in seeds:
            url = normalize_url(seed)
            if url is None:
                self.result.skipped[seed] = "not an http(s) URL"
            elif url not in seen:
                seen.add(url)
                queue.append((url, 0))
        seed_hosts = {urlsplit(u).hostname or "" for u, _ in queue}
        skipped = self.result.skipped
        while queue and self.result.pages < self.max_pages:
            url, level = queue.popleft()
            chain = [url]
            while True:
                if not self._robots_for(url).can_fetch(ROBOTS_NAME, url):
                    skipped[url] = "disallowed by robots.txt"
                    break
                try:
                    resp = self._get(url)
                except Exception as exc:  # noqa: BLE001 - one bad URL does not stop a crawl
                    skipped[url] = f"{type(exc).__name__}"
                    break
                with resp:
                    status = resp.status_code
                    ctype = resp.headers.get("Content-Type", "")
                    location = resp.headers.get("Location")
                    body = b""
                    is_html = ctype.split(";")[0].strip().lower() in HTML_TYPES
                    if 300 <= status < 400 or is_html:
                        body = resp.raw.read(self.max_page_bytes + 1, decode_content=True)
                    headers = [(k, v) for k, v in resp.headers.items()
                               if k.lower() not in ("content-encoding", "transfer-encoding",
                                                    "content-length")]
                    reason = resp.reason or ""
                if 300 <= status < 400 and location:
                    writer.write_record(writer.create_warc_record(
                        url, "response", payload=io.BytesIO(body), http_headers=StatusAndHeaders(
                            f"{status} {reason}", headers, protocol="HTTP/1.1")))
                    target = normalize_url(location, url)
                    if target is None or target in chain:
                        skipped[chain[0]] = "redirect loop" if target else "redirect to non-http"
                        break
                    if target in seen:
                        skipped[chain[0]] = "redirects to a URL already crawled or queued"
                        break
                    if len(chain) > MAX_REDIRECTS:
                        skipped[chain[0]] = f"more than {MAX_REDIRECTS} redirects"
                        break
                    chain.append(target)
                    seen.add(target)
                    url = target
                    continue
                if status != 200:
                    skipped[url] = f"HTTP {status}"
                    break
                if not is_html:
                    skipped[url] = f"not HTML ({ctype.split(';')[0] or 'no type'})"
                    break
                if len(body) > self.max_page_bytes:
                    skipped[url] = f"larger than {self.max_page_bytes:,} bytes"
                    break
                writer.write_record(writer.create_warc_record(
                    url, "response", payload=io.BytesIO(body), http_headers=StatusAndHeaders(
                        f"{status} {reason}", headers, protocol="HTTP/1.1")))
                self.result.pages += 1
                if level < self.depth:
                    from ..text.extract import HttpResponse, decode_page

                    charset = HttpResponse(status, {"content-type": ctype}, b"").charset
                    text, _ = decode_page(body, charset)
                    for href in extract_links(text):
                        link = normalize_url(href, url)
                        if link and link not in seen and self._allowed_host(link, seed_hosts):
                            seen.add(link)
                            queue.append((link, level + 1))
                break
        for url, why in skipped.items():
            log.info("skipped %s: %s", redact_url(url), why)
        return self.result


def read_seeds(path: Path) -> list[str]:
    """Seed URLs of a text file: one per line, blank lines and ``#`` comments ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
