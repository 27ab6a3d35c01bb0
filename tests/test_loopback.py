"""The loopback test server itself: ranges, validators, faults, counters."""

from __future__ import annotations

import requests


def test_serves_body_and_counts(loopback) -> None:
    loopback.serve("/a.bin", b"0123456789")
    r = requests.get(loopback.url("a.bin"), timeout=5)
    assert r.status_code == 200 and r.content == b"0123456789"
    assert r.headers["ETag"] and r.headers["Last-Modified"]
    assert loopback.requests("/a.bin") == 1 and loopback.bytes_sent("/a.bin") == 10
    assert requests.get(loopback.url("missing"), timeout=5).status_code == 404


def test_range_and_if_range(loopback) -> None:
    route = loopback.serve("/a.bin", b"0123456789")
    r = requests.get(loopback.url("a.bin"), headers={"Range": "bytes=4-", "If-Range": route.etag},
                     timeout=5)
    assert r.status_code == 206 and r.content == b"456789"
    assert r.headers["Content-Range"] == "bytes 4-9/10"
    r = requests.get(loopback.url("a.bin"), headers={"Range": "bytes=4-", "If-Range": '"old"'},
                     timeout=5)
    assert r.status_code == 200 and r.content == b"0123456789"
    r = requests.get(loopback.url("a.bin"),
                     headers={"Range": "bytes=2-3", "If-Range": route.last_modified}, timeout=5)
    assert r.status_code == 206 and r.content == b"23"


def test_faults(loopback) -> None:
    loopback.serve("/busy", b"ok", fail_first=2, fail_status=429, retry_after="3")
    s = requests.Session()
    r1 = s.get(loopback.url("busy"), timeout=5)
    assert r1.status_code == 429 and r1.headers["Retry-After"] == "3"
    assert s.get(loopback.url("busy"), timeout=5).status_code == 429
    assert s.get(loopback.url("busy"), timeout=5).content == b"ok"

    loopback.serve("/page", b"data", html_error=True)
    r = s.get(loopback.url("page"), timeout=5)
    assert r.status_code == 200 and r.content.startswith(b"<!DOCTYPE html")

    loopback.serve("/cut", b"x" * 100_000, cut_after=1000)
    got = bytearray()
    try:
        with s.get(loopback.url("cut"), stream=True, timeout=5) as r:
            for chunk in r.raw.stream(4096, decode_content=False):
                got += chunk
    except requests.exceptions.RequestException:
        pass
    except Exception as exc:  # urllib3 ProtocolError surfaces as-is from raw.stream
        assert "IncompleteRead" in repr(exc) or "Connection" in repr(exc)
    assert len(got) == 1000
    assert s.get(loopback.url("cut"), timeout=5).content == b"x" * 100_000  # cut only once


def test_status_is_logged_before_the_client_can_see_the_response(loopback, monkeypatch) -> None:
    """A client that acts on the headers and reads the log at once finds the status there (a
    404 skipped to the next mirror used to be logged as status 0 under load)."""
    import loopback as lb

    seen: list[list[int]] = []
    flush_headers = lb._Handler.end_headers

    def spy(handler: lb._Handler) -> None:
        seen.append([e.status for e in handler.server.owner.log])  # what a fast client sees
        flush_headers(handler)

    monkeypatch.setattr(lb._Handler, "end_headers", spy)
    loopback.serve("/a.bin", b"0123456789", fail_first=1)
    for path in ("missing", "a.bin", "a.bin"):
        requests.get(loopback.url(path), timeout=5)
    assert seen == [[404], [404, 503], [404, 503, 200]]
