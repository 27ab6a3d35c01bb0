"""Each API connector runs with a distinctive secret; then every log line (DEBUG, urllib3's
included), every message on stdout/stderr, every error, every file the run left in the cache
(names and contents) and every HDF5 attribute and string dataset is searched for it (raw and
URL-quoted)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import h5py
import numpy as np
import pytest
from conftest import invoke_cli
from test_flickr import KEY as FLICKR_SERVER_KEY
from test_flickr import FakeFlickr, FakeTime, fetch_options

from dlprep.cache import Cache
from dlprep.errors import DlprepError
from dlprep.prepare import prepare
from dlprep.recipes import find_recipe


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def _h5_texts(path: Path) -> Iterable[str]:
    with h5py.File(path, "r") as f:
        def attrs(obj: h5py.HLObject) -> Iterable[str]:
            for k, v in obj.attrs.items():
                yield f"{obj.name}@{k}={v!r}"

        yield from attrs(f)
        items: list[str] = []
        f.visititems(lambda name, obj: items.append(name))
        for name in items:
            obj = f[name]
            yield name
            yield from attrs(obj)
            if isinstance(obj, h5py.Dataset) and (obj.dtype.kind in "SUO"):
                yield repr(np.asarray(obj[()]).tolist())


def assert_secret_nowhere(secret: str, *, texts: Iterable[str], roots: Iterable[Path]) -> int:
    """Fail if ``secret`` (or a quoted form) is in ``texts`` or under ``roots`` (file names,
    file contents, HDF5 attributes and string datasets). Returns the files searched."""
    forms = _forms(secret)
    for text in texts:
        for form in forms:
            assert form not in text, f"secret found in output: {text[:300]!r}"
    searched = 0
    for root in roots:
        for path in root.rglob("*"):
            for form in forms:
                assert form not in str(path), f"secret in a file name: {path}"
            if not path.is_file():
                continue
            searched += 1
            data = path.read_bytes()
            for form in forms:
                assert form.encode() not in data, f"secret in {path}"
            if data[:8] == b"\x89HDF\r\n\x1a\n":
                for text in _h5_texts(path):
                    for form in forms:
                        assert form not in text, f"secret in {path}: {text[:200]}"
    return searched


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture,
               monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    monkeypatch.setattr(logging.getLogger("dlprep"), "propagate", True)  # a CLI run may unset it
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="dlprep")
    return caplog


# ---------------------------------------------------------------------------------------------
# Flickr


def test_flickr_secret_is_nowhere(loopback, realdata, cache_dir, monkeypatch, debug_logs,
                                  tmp_path) -> None:
    import test_flickr

    secret = "fl1ckr-S3cr3t+x/y=77ab"  # characters that URL-quoting changes
    monkeypatch.setattr(test_flickr, "KEY", secret)  # the stand-in server accepts only it
    monkeypatch.setenv("FLICKR_API_KEY", secret)
    srv = FakeFlickr(loopback, realdata)
    srv.add("cat", 4)
    srv.add("dog", 4, start=100)
    srv.photos["dog"][0]["url_n"] = loopback.url("/farm3/gone.jpg")  # a skip, logged
    options = {"tags": "cat,dog", "per_class": "4", "size": "16", "api_base": srv.api}
    out = prepare(find_recipe("flickr"), Cache(cache_dir), options=options, name="sec",
                  fetch=fetch_options(FakeTime()))
    assert any(secret in q.get("api_key", "") for q in srv.queries)  # it was really sent
    assert any("api_key=" in r.getMessage() for r in debug_logs.records
               if r.name.startswith("urllib3")), "urllib3 request lines were not captured"
    assert any("skipped" in r.getMessage() for r in debug_logs.records if r.name == "dlprep")
    texts = [debug_logs.text, *(r.getMessage() for r in debug_logs.records)]
    # the CLI, offline replay at -vv, and with the key
    r = invoke_cli("-vv", "--offline", "fetch", "flickr", "--tags", "cat,dog", "--per-class",
                   "4", "--size", "16", "--api-base", srv.api, "--name", "sec",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    texts += [r.stdout, r.stderr]
    # errors: a server that refuses the key (HTTP 401), and a Flickr error in a 200
    srv.route.fail_first, srv.route.fail_status = 99, 401
    srv.route.fail_body = f'{{"stat":"fail","message":"bad key {secret}"}}'.encode()
    r = invoke_cli("-vv", "fetch", "flickr", "--tags", "bird", "--api-base", srv.api,
                   cache_dir=cache_dir)
    assert r.returncode == 1 and "check FLICKR_API_KEY" in r.stderr, r.stderr
    texts += [r.stdout, r.stderr]
    srv.route.fail_first = 0
    monkeypatch.setattr(test_flickr, "KEY", "another")
    with pytest.raises(DlprepError) as err:
        prepare(find_recipe("flickr"), Cache(cache_dir), options={**options, "tags": "fish"},
                fetch=fetch_options(FakeTime()))
    texts += [str(err.value), repr(err.value), debug_logs.text]
    assert out.is_file()
    assert assert_secret_nowhere(secret, texts=texts, roots=[cache_dir]) > 10
    assert FLICKR_SERVER_KEY != secret


# ---------------------------------------------------------------------------------------------
# Internet Archive


def test_internet_archive_keys_are_nowhere(loopback, realdata, cache_dir, monkeypatch,  # type: ignore[no-untyped-def]
                                           debug_logs) -> None:
    from test_internet_archive import KAZAKHSTAN, SCRAPE, Mirror, _scrape_page

    access, secret = "IA-acc3ss+k/y=41", "IA-s3cr3t+k/y=42"  # characters quoting changes
    monkeypatch.setenv("IA_ACCESS_KEY", access)
    monkeypatch.setenv("IA_SECRET_KEY", secret)
    mirror = Mirror(loopback, realdata)
    for ident, photo in KAZAKHSTAN.items():
        mirror.item(ident, (realdata / "images" / photo).read_bytes())
    mirror.item("201003180011HQ", b"gone", serve=False)  # a 404 on the datanode: a skip, logged
    ids = [*KAZAKHSTAN, "201003180011HQ"]
    loopback.serve(SCRAPE, _scrape_page(realdata, ids, None), content_type="application/json")
    options = {"query": "collection:nasa", "label": "collection", "size": "16",
               "api_base": mirror.base}
    out = prepare(find_recipe("internet-archive"), Cache(cache_dir), options=options,
                  name="sec")
    # really sent, to search, metadata and files alike
    assert {e.headers.get("authorization") for e in loopback.log} == {f"LOW {access}:{secret}"}
    assert any("skipped" in r.getMessage() for r in debug_logs.records if r.name == "dlprep")
    assert any(r.name.startswith("urllib3") for r in debug_logs.records)
    texts = [debug_logs.text, *(r.getMessage() for r in debug_logs.records)]
    args = ("fetch", "internet-archive", "--query", "collection:nasa", "--label", "collection",
            "--size", "16", "--api-base", mirror.base, "--name", "sec")
    r = invoke_cli("-vv", "--offline", *args, cache_dir=cache_dir)  # the offline replay
    assert r.returncode == 0, r.stderr
    texts += [r.stdout, r.stderr]
    # the archive refuses the keys (HTTP 403 on the metadata, a body echoing the key)
    refused = loopback.route("/metadata/201003180014HQ")
    refused.fail_first, refused.fail_status = 99, 403
    refused.fail_body = f"access denied for {access}:{secret}".encode()
    r = invoke_cli("-vv", *args, "--force", cache_dir=cache_dir)
    assert r.returncode == 1 and "IA_ACCESS_KEY / IA_SECRET_KEY were refused" in r.stderr
    texts += [r.stdout, r.stderr, debug_logs.text]
    assert out.is_file()
    for value in (access, secret):
        assert assert_secret_nowhere(value, texts=texts, roots=[cache_dir]) > 5


# ---------------------------------------------------------------------------------------------
# X (API v2 recent search, Bearer token)


def test_x_secret_is_nowhere(loopback, realdata, cache_dir, monkeypatch, debug_logs,
                             tmp_path) -> None:
    test_x = pytest.importorskip("test_x")  # skipped with it when the emoji library is absent

    token = "AAAAAAAAAAAAAAAAAAAAAxSecr3t%2Bq9ZtokenZZ%3Dk77"  # the shape of real bearer tokens
    monkeypatch.setenv("X_BEARER_TOKEN", token)
    monkeypatch.setenv("DLPREP_SECRETS", str(tmp_path / "none.toml"))
    test_x.serve_pages(loopback, test_x.real_pages(realdata))
    out = test_x.fetch_x(loopback, cache_dir, test_x.FakeTime(), max_posts=25)
    sent = {e.headers.get("Authorization") for e in loopback.requests_for(test_x.SEARCH)}
    assert sent == {f"Bearer {token}"}  # it was really sent
    assert any("GET /2/tweets" in r.getMessage() for r in debug_logs.records)
    texts = [debug_logs.text, *(r.getMessage() for r in debug_logs.records)]
    r = invoke_cli("-vv", "--offline", "fetch", "x", "--query", "Tweepy", "--max-posts", "25",
                   "--api-base", loopback.url("/2"), "--tokenizer", "char", "--val-fraction",
                   "0", "--test-fraction", "0", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    texts += [r.stdout, r.stderr]
    # a refused token (401) whose answer echoes it
    loopback.serve(test_x.SEARCH, b"", fail_first=99, fail_status=401,
                   fail_body=b'{"title":"Unauthorized","detail":"bad token ' + token.encode()
                   + b'"}')
    r = invoke_cli("-vv", "fetch", "x", "--query", "cats", "--api-base", loopback.url("/2"),
                   cache_dir=cache_dir)
    assert r.returncode == 1 and "check X_BEARER_TOKEN" in r.stderr, r.stderr
    texts += [r.stdout, r.stderr, debug_logs.text]
    assert out.is_file()
    assert assert_secret_nowhere(token, texts=texts, roots=[cache_dir]) > 1

