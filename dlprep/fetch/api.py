"""The polite API core shared by the API connectors (Flickr, Internet Archive, Stack Exchange, X).

* :class:`HostPolicy`: at most ``max_in_flight`` requests at a time to one host and at least
  ``min_interval`` seconds between two request starts. The limits are kept per (host, policy)
  for the whole process, so every thread and every client of a run shares them.
* :class:`ApiClient`: GET requests with the dlprep User-Agent; 429/503 with ``Retry-After``
  honoured (the whole host waits), ``x-rate-limit-remaining: 0`` waits until
  ``x-rate-limit-reset``, 5xx and connection errors retried by ``options.retry_policy``
  (injectable ``sleep``/``clock``), 401/403 raised at once as :class:`AuthError` naming the
  variable that holds the key. Every 2xx reply is cached under ``cache_dir`` by the sha256 of
  (method, URL, parameters without the secret ones), so ``--offline`` replays a run; the cache
  never holds a secret (key, file name or contents).
* :func:`download_many`: many small files (photos) with bounded per-host concurrency, each body
  stored once by its content sha256; a 404, an HTML page or a body that is not an image is
  skipped and counted by reason. Outcomes are indexed so an offline rerun replays them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from ..errors import DlprepError, FetchError, NoNetworkError, OfflineError
from ..redact import is_secret_param, mask_secrets, redact_text, redact_url, register_secret
from .http import RetryPolicy, looks_like_html, parse_retry_after, shared_session
from .options import FetchOptions

__all__ = ["ApiClient", "ApiError", "ApiResponse", "AuthError", "DownloadReport", "HostPolicy",
           "download_many", "sniff_image"]

log = logging.getLogger("dlprep")

CACHE_VERSION = 1
#: longest wait for a rate-limit reset that is waited out (X resets every 15 minutes)
MAX_RESET_WAIT = 16 * 60.0
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
                b"II*\x00", b"MM\x00*")
_KEEP_HEADERS = ("content-type", "x-rate-limit-remaining", "x-rate-limit-reset",
                 "x-ratelimit-remaining", "x-ratelimit-reset", "link", "etag", "last-modified")


class ApiError(FetchError):
    """An API answered something unusable (malformed JSON, an unexpected status)."""


class AuthError(ApiError):
    """The API refused the credentials (HTTP 401/403): never retried."""


@dataclass(frozen=True)
class HostPolicy:
    """Politeness towards one host: concurrent requests and seconds between request starts."""

    max_in_flight: int = 2
    min_interval: float = 0.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise DlprepError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if self.min_interval < 0:
            raise DlprepError(f"min_interval must be >= 0, got {self.min_interval}")


class _Gate:
    """The shared state of one (host, policy): a semaphore and the next allowed start."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.slots = threading.BoundedSemaphore(policy.max_in_flight)
        self.lock = threading.Lock()
        self.next_start = 0.0
        self.blocked_until = 0.0

    def enter(self, retry: RetryPolicy) -> None:
        self.slots.acquire()
        try:
            with self.lock:
                now = retry.clock()
                start = max(now, self.next_start, self.blocked_until)
                self.next_start = start + self.policy.min_interval
            if start > now:
                retry.sleep(start - now)
        except BaseException:
            self.slots.release()
            raise

    def leave(self) -> None:
        self.slots.release()

    def block(self, until: float) -> None:
        """No request to this host starts before ``until`` (a Retry-After or a reset)."""
        with self.lock:
            self.blocked_until = max(self.blocked_until, until)


_GATES: dict[tuple[str, HostPolicy], _Gate] = {}
_GATES_LOCK = threading.Lock()


def host_gate(url: str, policy: HostPolicy) -> _Gate:
    """The process-wide gate of ``url``'s host (scheme, host and port) under ``policy``."""
    parts = urlsplit(url)
    host = f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or ''}"
    with _GATES_LOCK:
        gate = _GATES.get((host, policy))
        if gate is None:
            gate = _GATES[(host, policy)] = _Gate(policy)
        return gate


@dataclass
class ApiResponse:
    """One API reply: ``status``, a few ``headers`` (lower-case names), the ``body`` bytes."""

    url: str  # redacted: safe to show
    status: int
    headers: dict[str, str]
    body: bytes
    cached: bool = False

    def json(self) -> Any:
        """The body parsed as JSON; ``ApiError`` naming the (redacted) URL otherwise."""
        if looks_like_html(self.body[:256]):
            raise ApiError(f"malformed JSON from {self.url}: got an HTML page")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            start = self.body[:40].decode("utf-8", "replace").replace("\n", " ")
            raise ApiError(f"malformed JSON from {self.url}: {exc} (body starts "
                           f"{mask_secrets(start)!r})") from None


def _one_line(body: bytes, limit: int = 200) -> str:
    text = " ".join(body[:4096].decode("utf-8", "replace").split())
    return mask_secrets(text[:limit] + ("..." if len(text) > limit else ""))


def _read_capped(resp: Any, cap: int, shown: str) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(1 << 16):
        size += len(chunk)
        if size > cap:
            raise FetchError(f"{shown}: reply larger than {cap:,} bytes (the cap for a body of "
                             f"undeclared size; raise it with --max-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class ApiClient:
    """Polite, cached GET requests to one API (``source`` names it in messages).

    ``secret_params`` are added to every request's query and ``secret_headers`` to its headers;
    neither is part of the cache key, and their values are masked in every message and log line.
    """

    source: str
    base_url: str
    cache_dir: Path
    options: FetchOptions
    policy: HostPolicy = field(default_factory=HostPolicy)
    secret_params: Mapping[str, str] = field(default_factory=dict)
    secret_headers: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    session: Any = None
    requests_sent: int = 0

    def __post_init__(self) -> None:
        for value in (*self.secret_params.values(), *self.secret_headers.values()):
            register_secret(value)
            if value.lower().startswith("bearer "):
                register_secret(value[7:].strip())

    # -- URLs and the cache ---------------------------------------------------------------
    def url_for(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return urljoin(self.base_url.rstrip("/") + "/", path_or_url.lstrip("/"))

    def _public_params(self, params: Mapping[str, object]) -> list[tuple[str, str]]:
        return sorted((str(k), str(v)) for k, v in params.items()
                      if k not in self.secret_params and not is_secret_param(str(k)))

    def shown_url(self, url: str, params: Mapping[str, object] = {}) -> str:  # noqa: B006
        """The URL with its public parameters, secrets masked: safe for messages."""
        query = urlencode(self._public_params(params))
        return redact_url(url + (("&" if "?" in url else "?") + query if query else ""))

    def cache_key(self, url: str, params: Mapping[str, object] = {},  # noqa: B006
                  method: str = "GET") -> str:
        """sha256 of (method, URL, public parameters): never of a secret."""
        doc = json.dumps([CACHE_VERSION, method, redact_url(url), self._public_params(params)])
        return hashlib.sha256(doc.encode()).hexdigest()

    def cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, path: Path) -> ApiResponse | None:
        try:
            raw = path.read_bytes()
            head, _, body = raw.partition(b"\n")
            meta = json.loads(head)
            if meta.get("version") != CACHE_VERSION or len(body) != meta.get("size"):
                return None
        except (OSError, ValueError, AttributeError):
            return None
        return ApiResponse(meta["url"], int(meta["status"]), dict(meta["headers"]), body,
                           cached=True)

    def _store(self, path: Path, resp: ApiResponse) -> None:
        meta = {"version": CACHE_VERSION, "url": resp.url, "status": resp.status,
                "headers": resp.headers, "size": len(resp.body)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(json.dumps(meta).encode() + b"\n" + resp.body)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    # -- requests -----------------------------------------------------------------------
    def get(self, path_or_url: str, params: Mapping[str, object] = {},  # noqa: B006
            *, check: Callable[[ApiResponse], None] | None = None) -> ApiResponse:
        """GET (from the cache when there, unless ``options.force``). ``check`` may raise on a
        reply that must not be cached (an API error wrapped in a 200)."""
        url = self.url_for(path_or_url)
        shown = self.shown_url(url, params)
        path = self.cache_path(self.cache_key(url, params))
        if not self.options.force:
            cached = self._load(path)
            if cached is not None:
                if check is not None:
                    check(cached)
                return cached
        if self.options.offline:
            raise OfflineError(f"offline: the {self.source} reply for {shown} is not in the "
                               f"cache; run once online")
        resp = self._fetch(url, params, shown)
        if check is not None:
            check(resp)
        self._store(path, resp)
        return resp

    def get_json(self, path_or_url: str, params: Mapping[str, object] = {},  # noqa: B006
                 *, check: Callable[[Any], None] | None = None) -> Any:
        """GET and parse JSON; malformed JSON raises ``ApiError`` and is not cached.
        ``check(doc)`` may refuse a parsed document (it is then not cached either)."""
        holder: list[Any] = []

        def parse(resp: ApiResponse) -> None:
            doc = resp.json()
            if check is not None:
                check(doc)
            holder.append(doc)

        self.get(path_or_url, params, check=parse)
        return holder[-1]

    def _auth_hint(self) -> str:
        from ..secrets import secret_variable

        names = [secret_variable(v) for v in (*self.secret_params.values(),
                                              *self.secret_headers.values())]
        names = [n for n in names if n]
        return f"check {' / '.join(dict.fromkeys(names))}" if names else "check the credentials"

    def _fetch(self, url: str, params: Mapping[str, object], shown: str) -> ApiResponse:
        import requests

        retry = self.options.retry_policy
        gate = host_gate(url, self.policy)
        session = self.session or shared_session()
        query = {**{str(k): v for k, v in params.items()}, **self.secret_params}
        headers = {**self.headers, **self.secret_headers}
        failures = 0
        reason = ""
        while True:
            gate.enter(retry)
            try:
                self.requests_sent += 1
                try:
                    with session.get(url, params=query, headers=headers, stream=True,
                                     timeout=(retry.connect_timeout, retry.read_timeout)) as r:
                        status = r.status_code
                        rheaders = {k.lower(): v for k, v in r.headers.items()}
                        body = _read_capped(r, self.options.byte_cap, shown)
                except requests.exceptions.RequestException as exc:
                    reason = _connection_reason(exc, url)
                    status, rheaders, body = 0, {}, b""
            finally:
                gate.leave()
            now = retry.clock()
            if 200 <= status < 300:
                self._note_rate_limit(gate, rheaders, now)
                kept = {k: mask_secrets(v) for k, v in rheaders.items() if k in _KEEP_HEADERS}
                return ApiResponse(shown, status, kept, _scrub(body))
            if status in (401, 403):
                raise AuthError(f"{self.source} refused the key (HTTP {status}) for {shown}: "
                                f"{self._auth_hint()}")
            wait: float | None = None
            if status:
                if status != 429 and status < 500:
                    raise ApiError(f"{shown}: HTTP {status}: {_one_line(body)}")
                reason = f"HTTP {status}"
                wait = parse_retry_after(rheaders.get("retry-after"), now)
                if wait is None and status == 429:
                    wait = _reset_wait(rheaders, now)
            failures += 1
            if failures >= retry.attempts:
                raise FetchError(f"{shown}: {reason} (gave up after {failures} attempts)")
            if wait is not None and wait > retry.max_retry_after:
                raise FetchError(f"{shown}: {reason}; the server asks to wait {wait:.0f} s; "
                                 f"rerun later")
            delay = retry.delay(failures, wait)
            if wait is not None:
                gate.block(now + delay)  # the whole host waits, not only this thread
            log.info("%s: %s; retrying in %.1f s (attempt %d of %d)", shown, reason, delay,
                     failures + 1, retry.attempts)
            retry.sleep(delay)

    def _note_rate_limit(self, gate: _Gate, headers: Mapping[str, str], now: float) -> None:
        remaining = headers.get("x-rate-limit-remaining", headers.get("x-ratelimit-remaining"))
        if remaining is None or remaining.strip() != "0":
            return
        wait = _reset_wait(headers, now)
        if wait is None:
            return
        wait = min(wait, MAX_RESET_WAIT)
        log.info("%s: rate limit used up; next request in %.0f s (at the reset)", self.source,
                 wait)
        gate.block(now + wait)


def _reset_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until ``x-rate-limit-reset`` (epoch seconds, or seconds when small)."""
    raw = headers.get("x-rate-limit-reset", headers.get("x-ratelimit-reset"))
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    if value > 1e9:  # an epoch time
        return max(0.0, value - now)
    return max(0.0, value)


def _scrub(body: bytes) -> bytes:
    """``body`` with any registered secret masked (an API that echoes the key)."""
    from ..redact import registered_secrets

    for secret in registered_secrets():
        raw = secret.encode()
        if raw in body:
            body = body.replace(raw, b"***")
    return body


def _connection_reason(exc: BaseException, url: str) -> str:
    from .http import _connection_problem

    try:
        what, _retryable = _connection_problem(exc, url)
    except NoNetworkError:
        raise
    return redact_text(what)


# ---------------------------------------------------------------------------------------------
# many small files


def sniff_image(head: bytes) -> bool:
    """True when ``head`` starts like a JPEG, PNG, GIF, BMP, TIFF or WebP file."""
    if head.startswith(_IMAGE_MAGIC):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


_EXT = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp",
        b"II*\x00": ".tif", b"MM\x00*": ".tif", b"RIFF": ".webp"}


def _extension(head: bytes) -> str:
    for magic, ext in _EXT.items():
        if head.startswith(magic):
            return ext
    return ".bin"


@dataclass
class DownloadReport:
    """What :func:`download_many` did: ``paths`` per key, ``skipped`` counts per reason,
    ``reasons`` per skipped key; ``downloaded`` (new bodies), ``reused`` (from an earlier run),
    ``duplicates`` (bodies identical to another item's)."""

    paths: dict[str, Path] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)
    downloaded: int = 0
    reused: int = 0
    duplicates: int = 0
    bytes: int = 0


def _url_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class _Index:
    """``dest_dir/index.json``: sha256(URL) -> stored file (relative) or ``!reason``."""

    def __init__(self, dest: Path) -> None:
        self.path = dest / "index.json"
        self.lock = threading.Lock()
        try:
            self.entries: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def save(self) -> None:
        with self.lock:
            text = json.dumps(self.entries, sort_keys=True)
        tmp = self.path.with_name(f".index.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)


def download_many(items: Sequence[tuple[str, str]], dest_dir: Path, *, options: FetchOptions,
                  policy: HostPolicy, expect: str = "image",
                  session: Any = None) -> DownloadReport:
    """Download ``(key, url)`` items into ``dest_dir`` (each body once, named by its sha256).

    At most ``policy.max_in_flight`` requests per host at a time. Skipped (and counted by
    reason): HTTP 4xx (``http-404`` ...), an HTML page (``html``), a body that is not an image
    when ``expect == "image"`` (``not-image``), an empty body (``empty``), a body over the cap
    (``too-large``), a server that keeps failing (``unreachable``). Offline, earlier outcomes are
    replayed from the index and a URL never seen raises ``OfflineError``.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    index = _Index(dest_dir)
    report = DownloadReport()
    report_lock = threading.Lock()
    retry = options.retry_policy
    session = session or shared_session()

    def record(key: str, outcome: str, how: str, size: int = 0) -> None:
        with report_lock:
            if outcome.startswith("!"):
                report.skipped[outcome[1:]] += 1
                report.reasons[key] = outcome[1:]
                return
            report.paths[key] = dest_dir / outcome
            if how == "new":
                report.downloaded += 1
                report.bytes += size
            elif how == "duplicate":
                report.duplicates += 1
            else:
                report.reused += 1

    todo: list[tuple[str, str]] = []
    missing = 0
    for key, url in items:
        known = index.entries.get(_url_id(url))
        if known is not None and not options.force and (
                (not known.startswith("!") and (dest_dir / known).is_file())
                or (known.startswith("!") and options.offline)):
            record(key, known, "reused")
        elif options.offline:
            missing += 1
        else:
            todo.append((key, url))
    if missing:
        raise OfflineError(f"offline: {missing} of {len(items)} file(s) are not in the cache "
                           f"({dest_dir}); run once online")

    def one(key: str, url: str) -> None:
        outcome, size, new = _fetch_one(url, dest_dir, options, policy, expect, session, retry)
        with index.lock:
            index.entries[_url_id(url)] = outcome
        if outcome.startswith("!"):
            log.info("skipped %s: %s", redact_url(url), outcome[1:])
        record(key, outcome, "new" if new else "duplicate", size)

    hosts = {urlsplit(u).netloc for _, u in todo}
    workers = max(1, min(64, policy.max_in_flight * max(1, len(hosts))))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dlprep-get") as pool:
            for fut in [pool.submit(one, k, u) for k, u in todo]:
                fut.result()
    finally:
        if todo:
            index.save()
    return report


def _fetch_one(url: str, dest: Path, options: FetchOptions, policy: HostPolicy, expect: str,
               session: Any, retry: RetryPolicy) -> tuple[str, int, bool]:
    """(outcome, size, new): outcome is the stored file's relative path or ``!reason``."""
    import requests

    shown = redact_url(url)
    gate = host_gate(url, policy)
    failures = 0
    tmp = dest / f".get.{os.getpid()}.{threading.get_ident()}.part"
    while True:
        gate.enter(retry)
        status, wait = 0, None
        try:
            with session.get(url, stream=True,
                             timeout=(retry.connect_timeout, retry.read_timeout)) as r:
                status = r.status_code
                now = retry.clock()
                if status == 200:
                    ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if ctype in ("text/html", "application/xhtml+xml"):
                        return "!html", 0, False
                    length = r.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > options.byte_cap:
                        return "!too-large", 0, False  # announced: not even read
                    got = _receive(r, tmp, options.byte_cap, expect)
                    if got[0].startswith("!"):
                        return got
                    return _keep(tmp, dest, *got)
                if status == 429 or status >= 500:
                    wait = parse_retry_after(r.headers.get("Retry-After"), now)
                else:
                    return f"!http-{status}", 0, False
        except requests.exceptions.RequestException as exc:
            log.info("%s: %s", shown, _connection_reason(exc, url))
        finally:
            gate.leave()
            tmp.unlink(missing_ok=True)
        failures += 1
        if failures >= retry.attempts or (wait is not None and wait > retry.max_retry_after):
            return "!unreachable", 0, False
        delay = retry.delay(failures, wait)
        if wait is not None:
            gate.block(retry.clock() + delay)
        retry.sleep(delay)


def _receive(resp: Any, tmp: Path, cap: int, expect: str) -> tuple[str, int, bool]:
    """Stream the body into ``tmp`` (never past ``cap``), hashing it; the first bytes are
    checked (HTML, image magic). Returns ``(sha256 + extension, size, True)`` or a skip."""
    hasher = hashlib.sha256()
    head, size = b"", 0
    with open(tmp, "wb") as fh:
        for chunk in resp.iter_content(1 << 16):
            if len(head) < 256:
                head = (head + chunk)[:256]
                if len(head) >= 16 and looks_like_html(head):
                    return "!html", 0, False
                if len(head) >= 16 and expect == "image" and not sniff_image(head):
                    return "!not-image", 0, False
            size += len(chunk)
            if size > cap:
                return "!too-large", 0, False
            fh.write(chunk)
            hasher.update(chunk)
    if not size:
        return "!empty", 0, False
    if looks_like_html(head):
        return "!html", 0, False
    if expect == "image" and not sniff_image(head):
        return "!not-image", 0, False
    ext = _extension(head) if expect == "image" else ".bin"
    return hasher.hexdigest() + ext, size, True


def _keep(tmp: Path, dest: Path, name: str, size: int, _new: bool) -> tuple[str, int, bool]:
    """Move the received body into place as ``<sha[:2]>/<sha><ext>`` (kept once)."""
    rel = f"{name[:2]}/{name}"
    path = dest / rel
    if path.is_file() and path.stat().st_size == size:
        return rel, size, False  # the same bytes came from another URL: one copy
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return rel, size, True
