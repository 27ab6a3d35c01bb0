"""fetch_file over HTTP: resume, retries + Retry-After, HTML pages, HTTP/DNS/refused errors."""

from __future__ import annotations

import hashlib
import json
import random
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from dlprep.errors import FetchError, NoNetworkError
from dlprep.fetch import FetchOptions, FileSpec, RetryPolicy, fetch_file, fetch_many
from dlprep.fetch.http import USER_AGENT, parse_retry_after

PAYLOAD = random.Random(7).randbytes(1_000_000)


def _spec(urls: list[str], data: bytes = PAYLOAD, name: str = "data.bin") -> FileSpec:
    return FileSpec(name, urls, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


class FakeClock:
    """Records the sleeps instead of sleeping; time moves only when we 'sleep'."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now

    def policy(self, **kw: object) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, clock=self.time, rng=random.Random(0), **kw)

    def options(self, **kw: object) -> FetchOptions:
        """Fetch options whose retries use this clock (``kw``: RetryPolicy fields)."""
        return FetchOptions(retry=self.policy(**kw))


def test_plain_download_sends_user_agent_and_leaves_only_the_file(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD)
    path = fetch_file(_spec([loopback.url("data.bin")]), tmp_path)
    assert path.read_bytes() == PAYLOAD
    req = loopback.log[0]
    assert req.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("dlprep/") and "+https://github.com/dlprep/dlprep" in USER_AGENT
    assert req.headers["Accept-Encoding"] == "identity"
    kept = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert kept == ["data.bin"]
    fetch_file(_spec([loopback.url("data.bin")]), tmp_path)  # cached: no new request
    assert loopback.requests("/data.bin") == 1


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_connection_cut_mid_file_resumes_with_range(loopback, tmp_path: Path,
                                                    validator: str) -> None:
    route = loopback.serve("/data.bin", PAYLOAD, cut_after=600_000, validator=validator)
    clock = FakeClock()
    path = fetch_file(_spec([loopback.url("data.bin")]), tmp_path, clock.options())
    assert path.read_bytes() == PAYLOAD
    first, second = loopback.requests_for("/data.bin")
    assert first.body_bytes == 600_000
    assert second.headers["Range"] == "bytes=600000-"
    expected = route.etag if validator == "etag" else route.last_modified
    assert second.headers["If-Range"] == expected
    assert second.status == 206
    resent = loopback.bytes_sent("/data.bin") - len(PAYLOAD)
    assert resent <= 0.10 * len(PAYLOAD)
    assert len(clock.sleeps) == 1  # one short backoff after the cut


def test_resume_restarts_cleanly_when_the_file_changed(loopback, tmp_path: Path) -> None:
    """A .part from an older version: If-Range no longer matches, the server sends 200."""
    loopback.serve("/data.bin", PAYLOAD)
    url = loopback.url("data.bin")
    part = tmp_path / "data.bin.part"
    part.write_bytes(b"OLD VERSION BYTES" * 1000)
    (tmp_path / "data.bin.part.json").write_text(json.dumps({"url": url, "validator": '"stale"'}))
    path = fetch_file(_spec([url]), tmp_path)
    assert path.read_bytes() == PAYLOAD
    (req,) = loopback.requests_for("/data.bin")
    assert req.headers["If-Range"] == '"stale"' and req.status == 200
    assert not part.exists() and not (tmp_path / "data.bin.part.json").exists()


def test_server_without_range_support_restarts_from_zero(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD, cut_after=300_000, ranges=False)
    path = fetch_file(_spec([loopback.url("data.bin")]), tmp_path, FakeClock().options())
    assert path.read_bytes() == PAYLOAD
    assert [r.status for r in loopback.requests_for("/data.bin")] == [200, 200]


def test_503_then_ok_honours_retry_after_seconds(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD, fail_first=2, fail_status=503, retry_after="7")
    clock = FakeClock()
    path = fetch_file(_spec([loopback.url("data.bin")]), tmp_path, clock.options())
    assert path.read_bytes() == PAYLOAD
    assert clock.sleeps == [7.0, 7.0]
    assert loopback.requests("/data.bin") == 3


def test_429_then_ok_honours_retry_after_http_date(loopback, tmp_path: Path) -> None:
    clock = FakeClock()
    loopback.serve("/data.bin", PAYLOAD, fail_first=1, fail_status=429,
                   retry_after=formatdate(clock.now + 30, usegmt=True))
    fetch_file(_spec([loopback.url("data.bin")]), tmp_path, clock.options())
    assert clock.sleeps == [pytest.approx(30, abs=1)]


def test_backoff_is_exponential_with_jitter_and_bounded(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD, fail_first=100, fail_status=502)
    clock = FakeClock()
    with pytest.raises(FetchError) as err:
        fetch_file(_spec([loopback.url("data.bin")]), tmp_path, clock.options(attempts=4))
    msg = str(err.value)
    assert loopback.url("data.bin") in msg and "HTTP 502" in msg and "4 attempts" in msg
    assert loopback.requests("/data.bin") == 4
    assert len(clock.sleeps) == 3
    for n, s in enumerate(clock.sleeps):
        assert 2**n <= s <= 1.5 * 2**n  # backoff 1 s doubling, up to +50 % jitter
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_retry_after_is_parsed_as_seconds_or_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == pytest.approx(90, abs=1)
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_html_error_page_with_status_200_is_rejected(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD, html_error=True)
    url = loopback.url("data.bin")
    with pytest.raises(FetchError, match="HTML page") as err:
        fetch_file(_spec([url]), tmp_path)
    assert url in str(err.value)
    assert list(tmp_path.glob("data.bin*")) == []


def test_html_body_sniffed_even_with_a_binary_content_type(loopback, tmp_path: Path) -> None:
    page = b"\n  <!DOCTYPE html><html><body>Access denied</body></html>"
    loopback.serve("/data.bin", page, content_type="application/octet-stream")
    with pytest.raises(FetchError, match=r"HTML page .*body starts"):
        fetch_file(FileSpec("data.bin", [loopback.url("data.bin")]), tmp_path)
    # ... but an .html file is data like any other
    loopback.serve("/index.html", page, content_type="text/html")
    spec = FileSpec("index.html", [loopback.url("index.html")], checksum_optional=True)
    assert fetch_file(spec, tmp_path).read_bytes() == page


def test_404_names_the_url_and_the_next_mirror_is_used(loopback, tmp_path: Path) -> None:
    loopback.serve("/good/data.bin", PAYLOAD)
    missing = loopback.url("gone/data.bin")
    path = fetch_file(_spec([missing, loopback.url("good/data.bin")]), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r.status for r in loopback.log] == [404, 200]
    with pytest.raises(FetchError) as err:
        fetch_file(_spec([missing], name="other.bin"), tmp_path)
    assert f"{missing}: HTTP 404 Not Found" in str(err.value)


def test_refused_and_dns_failures_fail_fast_naming_the_url(tmp_path: Path) -> None:
    clock = FakeClock()
    refused = "http://127.0.0.1:1/data.bin"
    with pytest.raises(FetchError, match=rf"{refused}: connection refused"):
        fetch_file(_spec([refused]), tmp_path, clock.options())
    bad_host = "https://no-such-host.invalid/data.bin"
    with pytest.raises(NoNetworkError) as err:
        fetch_file(_spec([bad_host]), tmp_path / "raw",
                   clock.options().with_(lock_dir=tmp_path / "locks"))
    assert str(err.value) == ("no network (DNS lookup failed for no-such-host.invalid); use "
                              "--offline or --mirror (could not fetch data.bin)")
    assert clock.sleeps == []  # neither is worth retrying
    assert not (tmp_path / "raw").exists()  # the failed fetch leaves no empty raw folder


def test_dns_failure_of_many_files_is_said_once(tmp_path: Path) -> None:
    """A multi-file set without network: one short line, not the DNS error once per file."""
    specs = [FileSpec(f"f{i}.bin", [f"https://no-such-host.invalid/f{i}.bin",
                                    f"https://mirror.invalid/f{i}.bin"]) for i in range(8)]
    dest = tmp_path / "raw" / "set"
    with pytest.raises(NoNetworkError) as err:
        fetch_many(specs, dest, FakeClock().options().with_(lock_dir=tmp_path / "locks"))
    assert str(err.value) == ("no network (DNS lookup failed for no-such-host.invalid, "
                              "mirror.invalid); use --offline or --mirror (8 of 8 files could "
                              "not be fetched)")
    assert not dest.exists()  # the failed fetch leaves no empty raw folder behind


def test_errors_are_classified_by_exception_type() -> None:
    """Not by message text: a refused connection reworded by a library is still 'refused'."""
    import requests
    import urllib3

    from dlprep.fetch.http import _connection_problem

    cause = urllib3.exceptions.NewConnectionError(None, "no luck today")  # type: ignore[arg-type]
    refused = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", cause))  # type: ignore[arg-type]
    refused.args[0].reason.__cause__ = ConnectionRefusedError(111, "nope")
    assert _connection_problem(refused, "http://h/") == ("connection refused", False)
    text_only = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    assert _connection_problem(text_only, "http://h/")[1] is True  # no type says refused
    dns = requests.exceptions.ConnectionError(OSError("lookup trouble"))
    dns.__cause__ = __import__("socket").gaierror(-2, "Name or service not known")
    with pytest.raises(NoNetworkError, match="DNS lookup failed for h2"):
        _connection_problem(dns, "http://user:pw@h2:8080/x")


def test_read_timeout_is_retried(loopback, tmp_path: Path) -> None:
    loopback.serve("/slow.bin", PAYLOAD, latency=0.5)
    clock = FakeClock()
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_file(_spec([loopback.url("slow.bin")], name="slow.bin"), tmp_path,
                   clock.options(attempts=2, read_timeout=0.1))
    assert loopback.requests("/slow.bin") == 2 and len(clock.sleeps) == 1
    assert time.monotonic() - start < 5


def test_threaded_writer_for_big_downloads_resumes_correctly(
        loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big downloads write + hash on a helper thread; a cut and a resume still give exact bytes."""
    monkeypatch.setattr("dlprep.fetch.http.THREADED_MIN", 0)
    loopback.serve("/data.bin", PAYLOAD, cut_after=555_555)
    path = fetch_file(_spec([loopback.url("data.bin")]), tmp_path, FakeClock().options())
    assert path.read_bytes() == PAYLOAD
    assert loopback.requests_for("/data.bin")[-1].headers["Range"] == "bytes=555555-"


def test_content_range_not_matching_the_partial_file_restarts_cleanly(loopback,
                                                                      tmp_path: Path) -> None:
    route = loopback.serve("/data.bin", PAYLOAD, broken_ranges=True)
    url = loopback.url("data.bin")
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:400_000])
    (tmp_path / "data.bin.part.json").write_text(json.dumps({"url": url, "validator": route.etag}))
    path = fetch_file(_spec([url]), tmp_path, FakeClock().options())
    assert path.read_bytes() == PAYLOAD
    first, second = loopback.requests_for("/data.bin")
    assert first.headers["Range"] == "bytes=400000-" and first.status == 206
    assert "Range" not in second.headers and second.status == 200


def test_a_failed_fetch_does_not_remove_a_folder_another_thread_downloads_into(
        loopback, tmp_path: Path) -> None:
    """Two threads fetch into a raw folder that does not exist yet. The one that made it fails
    (404) while the other waits for its server; the folder must stay until the other is done
    (it used to be removed, and the other failed with '.part disappeared')."""
    import threading

    failed = threading.Event()
    body = b"y" * 5000
    loopback.serve("/slow.bin", body, on_request=lambda n: failed.wait(10))

    def answer_404_once_slow_is_waiting(n: int) -> None:
        while loopback.requests("/slow.bin") == 0:
            time.sleep(0.01)

    loopback.serve("/gone.bin", b"", fail_first=1, fail_status=404,
                   on_request=answer_404_once_slow_is_waiting)
    dest = tmp_path / "raw" / "new-folder"
    opts = FetchOptions(lock_dir=tmp_path / "locks", retry=RetryPolicy(attempts=1),
                        progress=False)
    errors: list[BaseException] = []

    def gone() -> None:  # makes the folder, then fails
        try:
            fetch_file(FileSpec("gone.bin", (loopback.url("/gone.bin"),)), dest, opts)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)
        finally:
            failed.set()

    t = threading.Thread(target=gone)
    t.start()
    while not dest.exists():
        time.sleep(0.01)
    got = fetch_file(FileSpec("slow.bin", (loopback.url("/slow.bin"),),
                              sha256=hashlib.sha256(body).hexdigest()), dest, opts)
    t.join(20)
    assert got.read_bytes() == body
    assert len(errors) == 1 and "404" in str(errors[0])
    # and the last one out of a folder that failures left empty removes it
    loopback.route("/gone.bin").fail_first = 2
    loopback.route("/gone.bin").on_request = None
    with pytest.raises(FetchError, match="404"):
        fetch_file(FileSpec("gone.bin", (loopback.url("/gone.bin"),)), tmp_path / "raw" / "x",
                   opts)
    assert not (tmp_path / "raw" / "x").exists()
