"""HTTP downloads: one shared session, resume (Range + If-Range), retries, HTML-page rejection.

``download_url`` streams one URL into ``<name>.part``. The validator of the response (ETag, else
Last-Modified) and the URL are kept in ``<name>.part.json`` so that a later attempt (or a later
process, after a crash) resumes with ``Range: bytes=<size>-`` + ``If-Range: <validator>``. A server
that answers 200 instead of 206, or a ``Content-Range`` that does not start where the part ends,
makes it restart cleanly from byte 0.

Retries: connection errors other than DNS failure/refusal, timeouts, a connection cut mid-body,
HTTP 5xx and 429; exponential backoff with jitter, ``Retry-After`` (seconds or HTTP-date)
honoured. A try counts as progress only when it grew the part file that the next try continues
(bytes *kept*, not bytes received), and every URL gets at most ``RetryPolicy.max_tries`` tries,
so a server that keeps failing is abandoned for the next mirror. ``RetryPolicy`` carries the
injectable ``sleep``/``clock`` so tests never really wait.

Limits: a body never grows past the declared size (the recipe's ``size``) or, when nobody
declared one, past the cap (``FetchOptions.max_bytes``); the download stops there with an error.
Errors are classified by exception type (DNS failure, refused connection, TLS, timeout), and
URLs in messages are redacted (``dlprep.redact``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._version import __version__
from ..errors import ChecksumError, FetchError, NoNetworkError
from ..progress import progress_bar
from ..redact import redact_text, redact_url
from .verify import hash_prefix

log = logging.getLogger("dlprep")

USER_AGENT = f"dlprep/{__version__} (+https://github.com/dlprep/dlprep)"
CHUNK = 1 << 20
RESUME_MIN_BYTES = 256 * 1024  # smaller downloads are not worth a resume sidecar
THREADED_MIN = 16 * 2**20  # from this size on, write + hash on a helper thread
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HTML_STARTS = (b"<!doctype html", b"<html")

_session: Any = None
_session_lock = threading.Lock()


@dataclass
class RetryPolicy:
    """How often and how long to retry one URL. ``sleep``/``clock`` are injectable for tests.

    ``attempts``: consecutive failed tries per URL (a try that grew the kept, resumable part
    file resets the count); ``max_tries``: tries per URL in all, progress or not. Delays:
    ``backoff * 2**(n-1)`` seconds capped at ``max_delay``, plus up to ``jitter`` of that at
    random; a ``Retry-After`` header replaces the delay (a server asking for more than
    ``max_retry_after`` seconds makes us move on to the next mirror).
    """

    attempts: int = 5
    max_tries: int = 30
    backoff: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5
    max_retry_after: float = 600.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try ``failures + 1``."""
        if retry_after is not None:
            return max(0.0, retry_after)
        base = min(self.max_delay, self.backoff * 2 ** max(0, failures - 1))
        return base + base * self.jitter * self.rng.random()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if
    absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def shared_session() -> Any:
    """The process-wide ``requests.Session``: dlprep User-Agent, no transport compression, a
    connection pool big enough for ``fetch_many``; no urllib3 retries (we retry ourselves)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = new_session()
        return _session


def _environment_matters() -> bool:
    """True when proxies, ``.netrc`` credentials or a CA bundle come from the environment."""
    import os
    import urllib.request

    if urllib.request.getproxies():
        return True
    netrc = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) or os.path.exists(os.path.expanduser("~/_netrc"))


def new_session(pool_size: int = 32) -> Any:
    """A fresh session configured like ``shared_session``.

    Proxies, ``.netrc`` and CA-bundle variables are honoured as in requests; when none is set
    the per-request environment lookups are skipped (they cost ~1 ms per small file).
    """
    import os

    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    if not _environment_matters():
        session.trust_env = False
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Restart(Exception):
    """The partial file cannot be continued: start again from byte 0 at once."""


def looks_like_html(first_bytes: bytes) -> bool:
    """True if a body starts like an HTML document (``<!DOCTYPE html`` or ``<html``)."""
    head = first_bytes[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(_HTML_STARTS)


def expects_html(name: str) -> bool:
    return name.lower().endswith((".html", ".htm"))


def _url_key(url: str) -> str:
    """What the resume sidecar stores to recognise ``url`` (which may hold a password)."""
    return hashlib.sha256(url.encode()).hexdigest()


def _same_url(meta: dict[str, Any], url: str) -> bool:
    """Whether a sidecar was written for ``url`` (older sidecars hold the URL itself)."""
    return meta.get("url_sha256") == _url_key(url) or meta.get("url") == url


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def discard_partial(part: Path) -> None:
    """Remove a ``.part`` file and its resume sidecar."""
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _resume_point(part: Path, url: str) -> tuple[int, str | None]:
    """(bytes already there, validator) for resuming ``url``; (0, None) if not resumable."""
    try:
        meta = json.loads(_sidecar(part).read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        discard_partial(part)
        return 0, None
    if not _same_url(meta, url) or not meta.get("validator") or size == 0:
        discard_partial(part)
        return 0, None
    return size, str(meta["validator"])


def _save_validator(part: Path, url: str, headers: Any) -> None:
    validator = headers.get("ETag") or headers.get("Last-Modified")
    if validator and not validator.startswith("W/"):  # weak ETags cannot be used with If-Range
        _sidecar(part).write_text(json.dumps({"url": redact_url(url), "url_sha256": _url_key(url),
                                              "validator": validator}))
    else:
        _sidecar(part).unlink(missing_ok=True)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (``reason``, ``__cause__``, ``__context__``, args)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen):
            continue
        seen.append(cur)
        todo.extend(x for x in (getattr(cur, "reason", None), cur.__cause__, cur.__context__,
                                *getattr(cur, "args", ())) if isinstance(x, BaseException))
    return seen


def _connection_problem(exc: BaseException, url: str) -> tuple[str, bool]:
    """A short description of a requests/urllib3 connection error, and whether to retry it.
    Raises ``NoNetworkError`` for a failed DNS lookup. Classified by exception type."""
    import socket
    import ssl

    import requests
    import urllib3

    causes = _causes(exc)
    text = " ".join(str(exc).split())[:200]  # one line
    if any(isinstance(c, socket.gaierror | urllib3.exceptions.NameResolutionError)
           for c in causes):
        raise NoNetworkError([urlsplit(url).hostname or "?"])
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused", False
    if any(isinstance(c, ssl.SSLError | requests.exceptions.SSLError) for c in causes):
        return f"TLS error: {redact_text(text)}", False
    if any(isinstance(c, requests.exceptions.Timeout | TimeoutError
                      | urllib3.exceptions.TimeoutError) for c in causes):
        return "timed out", True
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        return f"invalid URL: {redact_text(text)}", False
    return f"connection error: {redact_text(text)}", True


def _kept_bytes(part: Path, url: str) -> int:
    """Bytes of ``part`` that the next try will continue from (0 when it restarts)."""
    try:
        meta = json.loads(_sidecar(part).read_text())
        same = _same_url(meta, url) and meta.get("validator")
        return part.stat().st_size if same else 0
    except (OSError, ValueError):
        return 0


@dataclass(frozen=True)
class BodyLimit:
    """How large the whole file may get: ``size`` (declared, exact) or else ``cap``."""

    size: int | None
    cap: int

    def check_announced(self, url: str, name: str, total: int) -> None:
        """Refuse at once a body whose announced total cannot be right."""
        if self.size is not None and total != self.size:
            raise ChecksumError(f"{url}: size mismatch for {name}: expected {self.size} bytes, "
                                f"got {total} (announced by the server; not downloaded)")
        if self.size is None and total > self.cap:
            raise FetchError(f"{url}: the server announces {total} bytes for {name}, more than "
                             f"the {self.cap}-byte cap for a file of undeclared size "
                             f"(raise it with --max-bytes or DLPREP_MAX_BYTES)")

    def overflow(self, url: str, name: str) -> FetchError:
        if self.size is not None:
            return ChecksumError(f"{url}: size mismatch for {name}: expected {self.size} bytes, "
                                 f"the server sent more; stopped there")
        return FetchError(f"{url}: {name} exceeds {self.cap} bytes, the cap for a file of "
                          f"undeclared size; stopped there (raise it with --max-bytes or "
                          f"DLPREP_MAX_BYTES if the file really is that large)")

    @property
    def limit(self) -> int:
        return self.size if self.size is not None else self.cap


def download_url(url: str, part: Path, *, name: str, session: Any, retry: RetryPolicy,
                 algorithm: str = "sha256", progress: bool = False,
                 limit: BodyLimit | None = None) -> str:
    """Stream ``url`` into ``part`` (resuming what is there), retrying per ``retry``.

    ``limit``: the declared size, else the cap (default: no declared size, a 4 GiB cap); the
    body is never written past it. Returns the hex digest (``algorithm``) of the whole part
    file. Raises ``FetchError`` naming the (redacted) URL for HTTP errors, refused connections,
    an HTML page where data was expected, a body over the limit, or when the tries are used up
    (``NoNetworkError`` when the host name does not resolve).
    """
    shown = redact_url(url)
    limit = limit or BodyLimit(None, 4 * 2**30)
    failures = restarts = tries = 0
    best = _kept_bytes(part, url)
    while True:
        tries += 1
        try:
            return _attempt(url, part, name=name, session=session, retry=retry,
                            algorithm=algorithm, progress=progress, limit=limit)
        except FetchError:
            discard_partial(part)  # HTTP error, HTML page, too big: nothing worth resuming
            raise
        except _Restart as exc:
            discard_partial(part)
            restarts += 1
            failures += 1
            log.info("%s: %s; restarting from byte 0", shown, exc)
            if restarts > retry.attempts or tries >= retry.max_tries:
                raise FetchError(f"{shown}: {exc} (gave up after {tries} attempts)") from None
        except _Retryable as exc:
            kept = _kept_bytes(part, url)
            failures = 1 if kept > best else failures + 1  # progress = bytes kept, not received
            best = max(best, kept)
            if failures >= retry.attempts or tries >= retry.max_tries:
                # the part file stays (with its sidecar): a later run resumes it
                raise FetchError(f"{shown}: {exc.reason} (gave up after {tries} "
                                 f"attempt{'s' if tries > 1 else ''})") from None
            if exc.retry_after is not None and exc.retry_after > retry.max_retry_after:
                raise FetchError(f"{shown}: {exc.reason}; the server asks to retry after "
                                 f"{exc.retry_after:.0f} s") from None
            wait = retry.delay(failures, exc.retry_after)
            log.info("%s: %s; retrying in %.1f s (attempt %d of at most %d)", shown, exc.reason,
                     wait, tries + 1, retry.max_tries)
            retry.sleep(wait)


def _attempt(url: str, part: Path, *, name: str, session: Any, retry: RetryPolicy,
             algorithm: str, progress: bool, limit: BodyLimit) -> str:
    import requests

    shown = redact_url(url)
    offset, validator = _resume_point(part, url)
    headers = {"Range": f"bytes={offset}-", "If-Range": validator} if offset else {}
    try:
        resp = session.get(url, headers=headers, stream=True,
                           timeout=(retry.connect_timeout, retry.read_timeout))
    except requests.exceptions.RequestException as exc:
        what, retryable = _connection_problem(exc, url)
        if retryable:
            raise _Retryable(what) from None
        raise FetchError(f"{shown}: {what}") from None
    with resp:
        status = resp.status_code
        if status == 429 or 500 <= status < 600:
            wait = parse_retry_after(resp.headers.get("Retry-After"), retry.clock())
            raise _Retryable(f"HTTP {status} {resp.reason}", retry_after=wait)
        if status == 416 and offset:
            raise _Restart("the server cannot continue the partial file (HTTP 416)")
        if status not in (200, 206):
            raise FetchError(f"{shown}: HTTP {status} {resp.reason}")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype in ("text/html", "application/xhtml+xml") and not expects_html(name):
            raise FetchError(f"{shown}: got an HTML page (Content-Type {ctype}) where {name} was "
                             f"expected; the server may be showing an error or login page")
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
            if not offset or not m or int(m.group(1)) != offset:
                raise _Restart(f"unexpected Content-Range {resp.headers.get('Content-Range')!r} "
                               f"for a resume at byte {offset}")
        else:
            if offset:
                log.info("%s: the server sent the whole file (changed or no range support); "
                         "restarting", shown)
                offset = 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None:
            limit.check_announced(shown, name, offset + expected)
        if status == 200:
            if expected is None or expected >= RESUME_MIN_BYTES:
                _save_validator(part, url, resp.headers)
            else:  # small files are simply fetched again
                _sidecar(part).unlink(missing_ok=True)
        return _stream_body(resp, shown, part, name=name, offset=offset, expected=expected,
                            algorithm=algorithm, progress=progress, limit=limit)


class _HashingWriter:
    """Writes chunks to a file and feeds them to a hash. For big downloads each of the two
    runs on its own helper thread (file writes and hashing release the GIL), so receiving,
    writing and hashing overlap: sha256 alone runs at about 1 GB/s on one core."""

    def __init__(self, fh: Any, hasher: Any, threaded: bool) -> None:
        self.fh, self.hasher = fh, hasher
        self.error: BaseException | None = None
        self.queues: list[queue.Queue[bytes | None]] = []
        self.threads: list[threading.Thread] = []
        if threaded:
            for sink, label in ((self._write_one, "write"), (self.hasher.update, "hash")):
                q: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
                t = threading.Thread(target=self._drain, args=(q, sink),
                                     name=f"dlprep-{label}", daemon=True)
                t.start()
                self.queues.append(q)
                self.threads.append(t)

    def _write_one(self, chunk: bytes) -> None:
        self.fh.write(chunk)

    def _drain(self, q: queue.Queue[bytes | None], sink: Any) -> None:
        while (chunk := q.get()) is not None:
            if self.error is None:
                try:
                    sink(chunk)
                except BaseException as exc:  # re-raised in the caller's thread
                    self.error = exc

    def write(self, chunk: bytes) -> None:
        if not self.queues:
            self.fh.write(chunk)
            self.hasher.update(chunk)
            return
        if self.error is not None:
            raise self.error
        for q in self.queues:
            q.put(chunk)

    def close(self, *, raise_error: bool = True) -> None:
        """Wait until every chunk is written and hashed; re-raise a write error (e.g. disk
        full)."""
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join()
        self.queues, self.threads = [], []
        if self.error is not None and raise_error:
            raise self.error


def _stream_body(resp: Any, url: str, part: Path, *, name: str, offset: int,
                 expected: int | None, algorithm: str, progress: bool, limit: BodyLimit) -> str:
    """Write the body after ``offset``; never past ``limit`` (``url`` is already redacted)."""
    import requests
    import urllib3

    hasher = hash_prefix(part, algorithm, offset) if offset else hashlib.new(algorithm)
    received = 0
    sniff = not offset and not expects_html(name)
    total = offset + expected if expected is not None else limit.size
    room = limit.limit - offset  # bytes the body may still add
    with open(part, "r+b" if offset else "wb") as fh, \
            progress_bar(progress, desc=name, total=total, initial=offset) as bar:
        if offset:
            fh.seek(offset)
            fh.truncate()
        writer = _HashingWriter(fh, hasher, threaded=expected is None or expected >= THREADED_MIN)
        try:
            for chunk in resp.raw.stream(CHUNK, decode_content=False):
                if sniff:
                    sniff = False
                    if looks_like_html(chunk):
                        raise FetchError(f"{url}: got an HTML page where {name} was expected "
                                         f"(body starts {chunk[:15]!r}); the server may be "
                                         f"showing an error page")
                if len(chunk) > room - received:
                    raise limit.overflow(url, name)
                writer.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException,
                ConnectionError, TimeoutError) as exc:
            writer.close()  # keep what arrived (and report a disk error first)
            raise _Retryable(f"connection lost after {offset + received} bytes "
                             f"({type(exc).__name__})") from None
        except BaseException:
            writer.close(raise_error=False)
            raise
        writer.close()
    if expected is not None and received < expected:
        raise _Retryable(f"connection closed after {offset + received} of {offset + expected} "
                         f"bytes")
    return hasher.hexdigest()
