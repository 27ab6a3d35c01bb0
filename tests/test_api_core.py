"""The polite API core (dlprep.fetch.api) and secrets (dlprep.secrets) against the loopback
server: per-host concurrency, Retry-After, rate-limit headers, retries, auth errors, malformed
JSON, the response cache (offline replay, no secrets in it) and the 0600 secrets file."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from dlprep.errors import DlprepError, FetchError, OfflineError
from dlprep.fetch.api import ApiClient, ApiError, AuthError, HostPolicy, download_many, sniff_image
from dlprep.fetch.http import RetryPolicy
from dlprep.fetch.options import FetchOptions
from dlprep.secrets import require_secret

SECRET = "sEcReT-core-4f9a1c77"
DOC = b'{"items": [1, 2, 3], "stat": "ok"}'


class FakeTime:
    """An injectable clock whose sleep advances it (records every wait)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.waits: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.waits.append(seconds)
            self.now += seconds


def _options(fake: FakeTime | None = None, **kw: object) -> FetchOptions:
    fake = fake or FakeTime()
    retry = RetryPolicy(attempts=4, jitter=0.0, sleep=fake.sleep, clock=fake.clock)
    return FetchOptions(retry=retry, **kw)  # type: ignore[arg-type]


def _client(loopback, tmp_path: Path, fake: FakeTime | None = None,  # type: ignore[no-untyped-def]
            policy: HostPolicy | None = None, **kw: object) -> ApiClient:
    return ApiClient("Example", loopback.url("/api/"), cache_dir=tmp_path / "api",
                     options=_options(fake, **kw), policy=policy or HostPolicy(2, 0.0),
                     secret_params={"api_key": SECRET})


def _all_files_text(root: Path) -> str:
    out = []
    for p in root.rglob("*"):
        out.append(str(p))
        if p.is_file():
            out.append(p.read_bytes().decode("latin-1"))
    return "\n".join(out)


def test_get_json_sends_the_key_caches_without_it_and_replays_offline(loopback, tmp_path):
    loopback.serve("/api/search", DOC, content_type="application/json")
    client = _client(loopback, tmp_path)
    assert client.get_json("search", {"q": "cat", "page": 1}) == json.loads(DOC)
    req = loopback.requests_for("/api/search")[0]
    assert "User-Agent" in req.headers and req.headers["User-Agent"].startswith("dlprep/")
    # the key went to the server, but nowhere into the cache (names or contents)
    assert f"api_key={SECRET}" in req.query and "q=cat" in req.query
    files = [p for p in (tmp_path / "api").rglob("*") if p.is_file()]
    assert len(files) == 1
    assert SECRET not in _all_files_text(tmp_path / "api")
    assert "api_key" not in files[0].read_text(errors="replace")
    # the same request again: from the cache (no new request); offline too
    assert client.get_json("search", {"page": 1, "q": "cat"}) == json.loads(DOC)
    offline = _client(loopback, tmp_path, offline=True)
    resp = offline.get("search", {"q": "cat", "page": 1})
    assert resp.cached and resp.body == DOC
    assert loopback.requests("/api/search") == 1
    # another parameter is another request: offline, one line, and nothing sent
    with pytest.raises(OfflineError, match=r"not in the cache; run once online") as err:
        offline.get("search", {"q": "dog", "page": 1})
    assert SECRET not in str(err.value) and "\n" not in str(err.value)
    assert loopback.requests("/api/search") == 1
    # force refetches
    _client(loopback, tmp_path, force=True).get("search", {"q": "cat", "page": 1})
    assert loopback.requests("/api/search") == 2


def test_cache_key_ignores_the_secret(loopback, tmp_path):
    a = _client(loopback, tmp_path)
    b = ApiClient("Example", loopback.url("/api/"), cache_dir=tmp_path / "api",
                  options=_options(), secret_params={"api_key": "another-key-123456"})
    url = a.url_for("search")
    assert a.cache_key(url, {"q": "x"}) == b.cache_key(url, {"q": "x"})
    assert a.cache_key(url, {"q": "x"}) != a.cache_key(url, {"q": "y"})
    assert SECRET not in str(a.cache_path(a.cache_key(url, {"q": "x"})))


def test_429_retry_after_is_honoured(loopback, tmp_path):
    loopback.serve("/api/search", DOC, content_type="application/json", fail_first=2,
                   fail_status=429, retry_after="7")
    fake = FakeTime()
    assert _client(loopback, tmp_path, fake).get_json("search")["stat"] == "ok"
    assert loopback.requests("/api/search") == 3
    assert fake.waits == [7.0, 7.0]


def test_429_with_rate_limit_reset_and_no_retry_after(loopback, tmp_path):
    fake = FakeTime()
    reset = str(int(fake.now) + 40)
    loopback.serve("/api/search", DOC, content_type="application/json", fail_first=1,
                   fail_status=429, fail_headers={"x-rate-limit-remaining": "0",
                                                  "x-rate-limit-reset": reset})
    _client(loopback, tmp_path, fake).get_json("search")
    assert fake.waits and fake.waits[0] == pytest.approx(40.0, abs=1.0)


def test_503_then_ok_and_5xx_then_ok(loopback, tmp_path):
    loopback.serve("/api/a", DOC, content_type="application/json", fail_first=1,
                   fail_status=503, retry_after="3")
    loopback.serve("/api/b", DOC, content_type="application/json", fail_first=2,
                   fail_status=502)
    fake = FakeTime()
    client = _client(loopback, tmp_path, fake)
    assert client.get("a").body == DOC
    assert fake.waits == [3.0]
    assert client.get("b").body == DOC
    assert loopback.requests("/api/b") == 3
    assert fake.waits[1:] == [1.0, 2.0]  # exponential backoff, no jitter


def test_5xx_forever_gives_up_with_one_line(loopback, tmp_path):
    loopback.serve("/api/a", DOC, fail_first=99, fail_status=500)
    with pytest.raises(FetchError) as err:
        _client(loopback, tmp_path).get("a", {"q": 1})
    msg = str(err.value)
    assert "HTTP 500" in msg and "gave up after 4 attempts" in msg and "\n" not in msg
    assert SECRET not in msg and "api_key" not in msg
    assert loopback.requests("/api/a") == 4
    assert not list((tmp_path / "api").rglob("*.json"))


def test_429_forever_gives_up_with_one_line(loopback, tmp_path):
    """A server that answers 429 (with a Retry-After) to every request: bounded waits, then
    one line; nothing cached, no secret in the message."""
    loopback.serve("/api/a", DOC, fail_first=99, fail_status=429, retry_after="5")
    fake = FakeTime()
    with pytest.raises(FetchError) as err:
        _client(loopback, tmp_path, fake).get("a", {"q": 1})
    msg = str(err.value)
    assert "HTTP 429" in msg and "gave up after 4 attempts" in msg and "\n" not in msg
    assert SECRET not in msg and "api_key" not in msg
    assert loopback.requests("/api/a") == 4 and fake.waits == [5.0, 5.0, 5.0]
    assert not list((tmp_path / "api").rglob("*.json"))


def test_rate_limit_remaining_zero_waits_until_reset(loopback, tmp_path):
    fake = FakeTime()
    reset = str(int(fake.now) + 90)
    loopback.serve("/api/a", DOC, content_type="application/json",
                   headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset})
    loopback.serve("/api/b", DOC, content_type="application/json")
    client = _client(loopback, tmp_path, fake)
    client.get("a")
    assert fake.waits == []
    client.get("b")  # the next request to the host waits for the reset
    assert fake.waits == [pytest.approx(90.0, abs=1.0)]
    assert fake.now >= int(reset)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_is_one_line_without_retries(loopback, tmp_path, monkeypatch, status):
    monkeypatch.setenv("EXAMPLE_API_KEY", SECRET)
    key = require_secret("EXAMPLE_API_KEY", source="Example")
    loopback.serve("/api/a", DOC, fail_first=99, fail_status=status,
                   fail_body=b'{"error": "bad key ' + key.encode() + b'"}')
    client = ApiClient("Example", loopback.url("/api/"), cache_dir=tmp_path / "api",
                       options=_options(), secret_params={"api_key": key})
    with pytest.raises(AuthError) as err:
        client.get("a")
    msg = str(err.value)
    assert msg.startswith(f"Example refused the key (HTTP {status})")
    assert "check EXAMPLE_API_KEY" in msg and SECRET not in msg and "\n" not in msg
    assert loopback.requests("/api/a") == 1


def test_other_4xx_is_one_line(loopback, tmp_path):
    loopback.serve("/api/a", DOC, fail_first=99, fail_status=400,
                   fail_body=b"bad\nrequest: " + SECRET.encode())
    with pytest.raises(ApiError) as err:
        _client(loopback, tmp_path).get("a")
    assert "HTTP 400" in str(err.value) and "\n" not in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("body", [b'{"items": [1, 2', b"", b"<!DOCTYPE html><html>x</html>"])
def test_malformed_json_is_refused_and_not_cached(loopback, tmp_path, body):
    loopback.serve("/api/a", body, content_type="application/json")
    client = _client(loopback, tmp_path)
    with pytest.raises(ApiError, match=r"malformed JSON from http://127\.0\.0\.1:\d+/api/a"):
        client.get_json("a")
    assert not list((tmp_path / "api").rglob("*.json"))
    loopback.route("/api/a").body = DOC  # fixed upstream: the next run asks again
    assert client.get_json("a")["stat"] == "ok"
    assert loopback.requests("/api/a") == 2


def test_check_refuses_an_error_wrapped_in_a_200(loopback, tmp_path):
    loopback.serve("/api/a", b'{"stat": "fail", "code": 105}', content_type="application/json")

    def check(doc: dict) -> None:
        if doc.get("stat") != "ok":
            raise ApiError(f"Example: {doc}")

    with pytest.raises(ApiError, match="fail"):
        _client(loopback, tmp_path).get_json("a", check=check)
    assert not list((tmp_path / "api").rglob("*.json"))


def test_body_over_the_cap_is_refused(loopback, tmp_path):
    loopback.serve("/api/a", b"[" + b"1," * 5000 + b"1]", content_type="application/json")
    with pytest.raises(FetchError, match="larger than 1,000 bytes"):
        _client(loopback, tmp_path, max_bytes=1000).get("a")


def test_per_host_concurrency_is_bounded_on_the_server(loopback, tmp_path):
    for i in range(12):
        loopback.serve(f"/api/p{i}", DOC, content_type="application/json", latency=0.05)
    client = _client(loopback, tmp_path, policy=HostPolicy(max_in_flight=3))
    threads = [threading.Thread(target=client.get, args=(f"p{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loopback.requests() == 12
    assert 1 <= loopback.peak_in_flight <= 3


def test_min_interval_spaces_request_starts(loopback, tmp_path):
    for i in range(3):
        loopback.serve(f"/api/p{i}", DOC, content_type="application/json")
    fake = FakeTime()
    client = _client(loopback, tmp_path, fake, policy=HostPolicy(1, min_interval=1.5))
    for i in range(3):
        client.get(f"p{i}")
    assert sum(fake.waits) == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------
# download_many


def _photos(realdata: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((realdata / "images").glob("*.jpg"))]


def test_download_many_dedupes_skips_and_bounds_concurrency(loopback, tmp_path, realdata):
    photos = _photos(realdata)
    items = []
    for i, data in enumerate(photos):
        loopback.serve(f"/img/{i}.jpg", data, content_type="image/jpeg", latency=0.03)
        items.append((f"k{i}", loopback.url(f"/img/{i}.jpg")))
    loopback.serve("/img/copy.jpg", photos[0], content_type="image/jpeg", latency=0.03)
    items.append(("copy", loopback.url("/img/copy.jpg")))
    loopback.serve("/img/page.jpg", b"<html><body>moved</body></html>", content_type="image/jpeg")
    loopback.serve("/img/typed.jpg", b"x", html_error=True)
    loopback.serve("/img/text.jpg", b"plain text, not a photo", content_type="image/jpeg")
    loopback.serve("/img/flaky.jpg", photos[1], content_type="image/jpeg", fail_first=1,
                   fail_status=503, retry_after="2")
    items += [("gone", loopback.url("/img/missing.jpg")), ("page", loopback.url("/img/page.jpg")),
              ("typed", loopback.url("/img/typed.jpg")), ("text", loopback.url("/img/text.jpg")),
              ("flaky", loopback.url("/img/flaky.jpg"))]
    fake = FakeTime()
    dest = tmp_path / "photos"
    report = download_many(items, dest, options=_options(fake), policy=HostPolicy(2))
    assert dict(report.skipped) == {"http-404": 1, "html": 2, "not-image": 1}
    assert report.reasons["gone"] == "http-404"
    assert set(report.paths) == {f"k{i}" for i in range(len(photos))} | {"copy", "flaky"}
    assert report.paths["copy"] == report.paths["k0"]  # stored once
    assert report.paths["flaky"] == report.paths["k1"]
    assert report.paths["k0"].read_bytes() == photos[0]
    stored = [p for p in dest.rglob("*.jpg")]
    assert len(stored) == len(photos)
    assert 2.0 in fake.waits
    assert loopback.peak_in_flight <= 2
    # offline: everything replays from the index, nothing is asked
    before = loopback.requests()
    again = download_many(items, dest, options=_options(offline=True), policy=HostPolicy(2))
    assert again.paths == report.paths and again.skipped == report.skipped
    assert loopback.requests() == before
    with pytest.raises(OfflineError, match="1 of 1 file"):
        download_many([("new", loopback.url("/img/new.jpg"))], dest,
                      options=_options(offline=True), policy=HostPolicy(2))


def test_sniff_image():
    assert sniff_image(b"\xff\xd8\xff\xe0....")
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert not sniff_image(b"<html>")


# ---------------------------------------------------------------------------------------------
# secrets


def test_missing_key_names_the_variable_before_any_request(loopback, monkeypatch, tmp_path):
    monkeypatch.delenv("EXAMPLE_API_KEY", raising=False)
    monkeypatch.setenv("DLPREP_SECRETS", str(tmp_path / "none.toml"))
    with pytest.raises(DlprepError) as err:
        require_secret("EXAMPLE_API_KEY", source="Example")
    assert "EXAMPLE_API_KEY" in str(err.value) and "\n" not in str(err.value)
    assert loopback.requests() == 0


def test_secrets_file_0600_is_read_and_0644_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("EXAMPLE_FILE_KEY", raising=False)
    path = tmp_path / "secrets.toml"
    path.write_text(f'EXAMPLE_FILE_KEY = "{SECRET}-file"\n')
    monkeypatch.setenv("DLPREP_SECRETS", str(path))
    os.chmod(path, 0o600)
    assert require_secret("EXAMPLE_FILE_KEY", source="Example") == f"{SECRET}-file"
    os.chmod(path, 0o644)
    with pytest.raises(DlprepError, match=r"readable by others \(mode 0644\); refusing") as err:
        require_secret("EXAMPLE_FILE_KEY", source="Example")
    assert SECRET not in str(err.value)
    # the environment wins over the file (and needs no file check)
    monkeypatch.setenv("EXAMPLE_FILE_KEY", "from-the-env-5678")
    assert require_secret("EXAMPLE_FILE_KEY", source="Example") == "from-the-env-5678"


def test_broken_secrets_file_does_not_echo_its_lines(monkeypatch, tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text(f"EXAMPLE_BROKEN_KEY = {SECRET}-unquoted\n")
    os.chmod(path, 0o600)
    monkeypatch.setenv("DLPREP_SECRETS", str(path))
    with pytest.raises(DlprepError) as err:
        require_secret("EXAMPLE_BROKEN_KEY", source="Example")
    assert "not a valid TOML secrets file" in str(err.value) and SECRET not in str(err.value)


def test_registered_secret_is_masked_in_logs_and_cli_errors(monkeypatch, caplog):
    from dlprep.redact import redact_text, redact_url

    monkeypatch.setenv("EXAMPLE_LOG_KEY", "zz-log-secret-998877")
    key = require_secret("EXAMPLE_LOG_KEY", source="Example")
    monkeypatch.setattr(logging.getLogger("dlprep"), "propagate", True)  # a CLI run may unset it
    caplog.set_level(logging.DEBUG, logger="dlprep")
    logging.getLogger("dlprep").info("sending %s to http://h/x?k=%s", key, key)
    assert "zz-log-secret-998877" not in caplog.text and "***" in caplog.text
    assert "zz-log-secret" not in redact_text(f"oops {key}")
    assert "zz-log-secret" not in redact_url(f"http://h/p/{key}/x")


def test_download_many_caps_bodies_and_retries_a_cut(loopback, tmp_path, realdata):
    photos = _photos(realdata)
    big, small = max(photos, key=len), min(photos, key=len)
    loopback.serve("/img/big.jpg", big, content_type="image/jpeg")
    loopback.serve("/img/endless.jpg", small, content_type="image/jpeg", endless=True)
    loopback.serve("/img/cut.jpg", small, content_type="image/jpeg", cut_after=5000)
    fake = FakeTime()
    dest = tmp_path / "photos"
    report = download_many([("big", loopback.url("/img/big.jpg")),
                            ("endless", loopback.url("/img/endless.jpg")),
                            ("cut", loopback.url("/img/cut.jpg"))], dest,
                           options=_options(fake, max_bytes=len(small) + 10),
                           policy=HostPolicy(2))
    assert dict(report.skipped) == {"too-large": 2}  # announced too large / grew past the cap
    assert report.paths["cut"].read_bytes() == small  # the cut try retried, whole the 2nd time
    assert loopback.requests("/img/cut.jpg") == 2
    assert loopback.bytes_sent("/img/endless.jpg") < 64 * 2**20  # the client hung up
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == sorted(
        [report.paths["cut"].name, "index.json"])  # no partial file left behind
