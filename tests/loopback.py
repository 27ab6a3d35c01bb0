"""A fault-injecting loopback HTTP server for tests and benchmarks (127.0.0.1, port 0, threaded).

It serves ``{path: bytes}`` with HTTP/1.1 keep-alive, ``Range`` / ``If-Range`` (ETag and
Last-Modified), and per-path faults: fail the first N requests with a status (503/429, optional
``Retry-After``), cut the connection after K body bytes, announce a Content-Length larger than
the body (a server that lies), send the body forever (no Content-Length), serve an HTML error
page with 200, add latency, throttle the body, or run a hook before each answer. It counts
requests and body bytes sent per path.

Usage in a test (the ``loopback`` fixture is imported into ``tests/conftest.py``)::

    def test_retry(loopback):
        loopback.serve("/data.bin", b"x" * 1000, fail_first=2, fail_status=503, retry_after="1")
        url = loopback.url("/data.bin")          # http://127.0.0.1:<port>/data.bin
        ...                                      # fetch it
        assert loopback.requests("/data.bin") == 3
        assert loopback.bytes_sent("/data.bin") == 1000

    def test_resume(loopback):
        loopback.serve("/big.bin", payload, cut_after=4096)   # first response stops after 4 KiB
        ...
        assert loopback.log[-1].headers["Range"] == "bytes=4096-"

Outside pytest (benchmarks)::

    with LoopbackServer() as srv:
        srv.serve("/f", data, latency=0.02)
        requests.get(srv.url("/f"))

Routes are plain mutable objects: ``loopback.route("/f").body = b"new"`` (call
``.refresh_validators()`` afterwards to give it a new ETag/Last-Modified), or ``serve`` again.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Service unavailable</title></head>"
    b"<body><h1>Please try again later</h1></body></html>\n"
)
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_SEND_CHUNK = 1 << 20


@dataclass
class Route:
    """What one path serves, the faults to inject, and its counters.

    ``fail_first``: the first N requests get ``fail_status`` (with ``Retry-After: retry_after``
    when set). ``cut_after``: the first ``cut_times`` successful responses announce the full
    length but close the connection after K body bytes. ``html_error``: answer 200 with an HTML
    page instead of the body. ``latency``: seconds slept before every response.
    ``throttle_bps``: body bytes per second (None = as fast as possible). ``validator``:
    ``"etag"``, ``"last-modified"``, ``"both"`` or ``"none"``. ``ranges``: honour ``Range``.
    ``broken_ranges``: a buggy server that answers any range with 206 from byte 0.
    ``extra_length``: every response announces this many bytes more than it sends, then
    closes the connection (a lying server). ``endless``: no Content-Length; the body is sent
    over and over until the client hangs up, or ``endless_cap`` bytes are out (a guard, so
    that a client without a limit fails a test instead of filling the disk).
    ``on_request(n)``: called before answering the n-th request (to change the route or
    touch files mid-test). ``fail_headers``/``fail_body``: extra headers and the body of the
    failed answers (e.g. ``x-rate-limit-reset``, or a JSON error document).
    ``responder(request)``: a dynamic answer ``(status, headers, body)`` computed from the
    logged request (path, ``query``, headers), after the faults above (an API stand-in).
    """

    body: bytes
    content_type: str = "application/octet-stream"
    fail_first: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    cut_after: int | None = None
    cut_times: int = 1
    html_error: bool = False
    latency: float = 0.0
    throttle_bps: float | None = None
    validator: str = "both"
    ranges: bool = True
    broken_ranges: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    extra_length: int = 0
    endless: bool = False
    endless_cap: int = 64 * 2**20
    on_request: Callable[[int], None] | None = None
    fail_headers: dict[str, str] = field(default_factory=dict)
    fail_body: bytes = b"busy\n"
    responder: Callable[[LoggedRequest], tuple[int, dict[str, str], bytes]] | None = None
    etag: str = ""
    last_modified: str = ""
    requests: int = 0
    bytes_sent: int = 0
    cuts_done: int = 0

    def __post_init__(self) -> None:
        if not self.etag or not self.last_modified:
            self.refresh_validators()

    def refresh_validators(self, mtime: float | None = None) -> None:
        """Recompute the ETag from the body and set Last-Modified to ``mtime`` (default: now)."""
        self.etag = '"' + hashlib.blake2b(self.body, digest_size=8).hexdigest() + '"'
        self.last_modified = formatdate(time.time() if mtime is None else mtime, usegmt=True)


@dataclass
class LoggedRequest:
    """One request as the server saw it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0
    sending: bool = False  # True while the body is being written (counts still growing)
    body: bytes = b""  # the request body (POST)
    query: str = ""  # the query string (after '?')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes (like nginx)
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_POST(self) -> None:
        """Read the request body (kept in the log entry), then answer like GET."""
        self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._respond(head=False)

    def _respond(self, head: bool) -> None:
        owner = self.server.owner
        path, _, query = self.path.partition("?")
        entry = LoggedRequest(self.command, path, dict(self.headers.items()),
                              body=self.__dict__.pop("_body", b""), query=query)
        with owner._lock:
            owner.log.append(entry)
            route = owner.routes.get(path)
            if route is not None:
                route.requests += 1
                nth = route.requests
        if route is None:
            self._send_simple(entry, 404, b"not found\n", "text/plain")
            return
        if route.on_request is not None:
            route.on_request(nth)
        if route.latency:
            with owner._lock:
                owner.in_flight += 1
                owner.peak_in_flight = max(owner.peak_in_flight, owner.in_flight)
            try:
                time.sleep(route.latency)
            finally:
                with owner._lock:  # counted out before any byte of the answer goes out
                    owner.in_flight -= 1
        if nth <= route.fail_first:
            extra = {"Retry-After": route.retry_after} if route.retry_after is not None else {}
            extra.update(route.fail_headers)
            self._send_simple(entry, route.fail_status, route.fail_body, "text/plain", extra)
            return
        if route.html_error:
            self._send_simple(entry, 200, HTML_ERROR_PAGE, "text/html; charset=utf-8")
            return
        if route.responder is not None:
            status, headers, payload = route.responder(entry)
            headers = dict(headers)
            ctype = headers.pop("Content-Type", route.content_type)
            self._send_simple(entry, status, payload, ctype, headers)
            return
        if route.endless:
            self._send_endless(route, entry)
            return

        body = route.body
        start, end = 0, len(body)
        status = 200
        rng = self.headers.get("Range")
        if rng and route.ranges and self._if_range_ok(route):
            m = _RANGE.match(rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1, len(body)) if m.group(2) else len(body)
                if start >= len(body) or start >= end:
                    extra = {"Content-Range": f"bytes */{len(body)}"}
                    self._send_simple(entry, 416, b"", "text/plain", extra)
                    return
                status = 206
                if route.broken_ranges:
                    start = 0
        entry.status = status  # logged before a byte goes out: a client that has the headers
        self.send_response(status)  # may read the log at once
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(end - start + route.extra_length))
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        if route.validator in ("etag", "both"):
            self.send_header("ETag", route.etag)
        if route.validator in ("last-modified", "both"):
            self.send_header("Last-Modified", route.last_modified)
        for k, v in route.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return

        limit = end - start
        cut = False
        with owner._lock:
            if route.cut_after is not None and route.cuts_done < route.cut_times:
                route.cuts_done += 1
                limit = min(limit, route.cut_after)
                cut = True
        self._send_body(memoryview(body)[start : start + limit], route, entry)
        if cut or route.extra_length:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send_endless(self, route: Route, entry: LoggedRequest) -> None:
        """200, no Content-Length, the body repeated until the client goes away."""
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        entry.status = 200
        self.close_connection = True
        view = memoryview(route.body or b"\0")
        while entry.body_bytes < route.endless_cap and self._send_body(view, route, entry):
            pass

    def _if_range_ok(self, route: Route) -> bool:
        """True when there is no If-Range or it matches the current validator."""
        cond = self.headers.get("If-Range")
        if cond is None:
            return True
        cond = cond.strip()
        if cond.startswith('"') or cond.startswith("W/"):
            return route.validator in ("etag", "both") and cond == route.etag
        return route.validator in ("last-modified", "both") and cond == route.last_modified

    def _send_body(self, view: memoryview, route: Route, entry: LoggedRequest) -> bool:
        """Write ``view``; False when the client went away first."""
        step = _SEND_CHUNK
        if route.throttle_bps:
            step = max(1, min(_SEND_CHUNK, int(route.throttle_bps / 20)))
        pos = 0
        owner = self.server.owner
        entry.sending = True
        try:
            while pos < len(view):
                piece = view[pos : pos + step]
                self.wfile.write(piece)
                pos += len(piece)
                with owner._lock:
                    route.bytes_sent += len(piece)
                    entry.body_bytes += len(piece)
                if route.throttle_bps:
                    time.sleep(len(piece) / route.throttle_bps)
        except OSError:  # the client went away
            self.close_connection = True
            return False
        finally:
            entry.sending = False
        return True

    def _send_simple(self, entry: LoggedRequest, status: int, body: bytes, ctype: str,
                     extra: dict[str, str] | None = None) -> None:
        entry.status = status  # before the response starts (see _respond)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: LoopbackServer

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (on purpose in cut/timeout tests) are not errors worth a
        traceback on stderr; anything else still is."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (random port) with per-path fault injection."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[LoggedRequest] = []
        #: requests inside their ``latency`` wait now / at most at once (the server's own count
        #: of concurrent requests; counted out before the answer starts, so a client can never
        #: see an answer while the server still counts the request)
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/`` (handy as a ``--mirror``)."""
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def serve(self, path: str, body: bytes | Path, **options: object) -> Route:
        """Serve ``body`` (bytes, or a file's contents) at ``path``; options: ``Route`` fields."""
        if isinstance(body, Path):
            body = body.read_bytes()
        route = Route(body=body, **options)  # type: ignore[arg-type]
        with self._lock:
            self.routes["/" + path.lstrip("/")] = route
        return route

    def route(self, path: str) -> Route:
        return self.routes["/" + path.lstrip("/")]

    def requests(self, path: str | None = None) -> int:
        """Requests seen for ``path`` (all paths, 404s included, when None)."""
        with self._lock:
            if path is None:
                return len(self.log)
            p = "/" + path.lstrip("/")
            return sum(1 for e in self.log if e.path == p)

    def bytes_sent(self, path: str | None = None, settle: float = 5.0) -> int:
        """Body bytes written for ``path`` (all paths when None). Waits (up to ``settle``
        seconds) for bodies still being written: a client can hold the last byte before the
        server thread has counted it."""
        p = None if path is None else "/" + path.lstrip("/")
        deadline = time.monotonic() + settle
        while True:
            with self._lock:
                entries = [e for e in self.log if p is None or e.path == p]
                if not any(e.sending for e in entries) or time.monotonic() > deadline:
                    return sum(e.body_bytes for e in entries)
            time.sleep(0.005)

    def requests_for(self, path: str) -> list[LoggedRequest]:
        p = "/" + path.lstrip("/")
        with self._lock:
            return [e for e in self.log if e.path == p]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    """A started ``LoopbackServer``; closed after the test."""
    srv = LoopbackServer()
    try:
        yield srv
    finally:
        srv.close()
