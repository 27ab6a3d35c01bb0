"""Flickr: the real search reply parsed, a loopback Flickr answering searches built from it
(pagination, the 4,000-result cap split by upload date, faults), real photos, and the dataset
trained by ``train-baseline cnn``."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs

import h5py
import pytest
import yaml
from conftest import invoke_cli

from dlprep.cache import Cache
from dlprep.errors import DlprepError
from dlprep.fetch.api import ApiClient, ApiError, AuthError
from dlprep.fetch.http import RetryPolicy
from dlprep.fetch.options import FetchOptions
from dlprep.prepare import prepare
from dlprep.recipes import find_recipe
from dlprep.sources import flickr

KEY = "flickr-test-key-5b2e9d0c"
REPLY = "api/flickr.photos.search_extras.response.json"
CASSETTE = "api/flickr_photos_search.yml"


class FakeTime:
    """Injectable clock + sleep (sleep advances the clock; waits are recorded)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.waits: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, s: float) -> None:
        with self.lock:
            self.waits.append(s)
            self.now += s


def fetch_options(fake: FakeTime, **kw: object) -> FetchOptions:
    return FetchOptions(retry=RetryPolicy(attempts=4, jitter=0.0, sleep=fake.sleep,
                                          clock=fake.clock), progress=False, **kw)  # type: ignore[arg-type]


class FakeFlickr:
    """``flickr.photos.search`` on the loopback server, answering from entries cloned from the
    real reply (``url_*`` hosts rewritten to the server); photos served from real JPEGs."""

    def __init__(self, loopback, realdata: Path, cap: int = 4000) -> None:  # type: ignore[no-untyped-def]
        self.srv = loopback
        self.cap = cap
        real = json.loads((realdata / REPLY).read_text())
        self.template = real["photos"]["photo"][0]
        self.photos: dict[str, list[dict]] = {}
        self.jpegs = [p.read_bytes() for p in sorted((realdata / "images").glob("*.jpg"))]
        self.queries: list[dict[str, str]] = []
        self.route = loopback.serve("/services/rest/", b"", content_type="application/json",
                                    responder=self.answer)

    @property
    def api(self) -> str:
        return self.srv.url("/services/rest/")

    def add(self, tag: str, n: int, *, start: int = 0, serve: bool = True) -> list[dict]:
        out = []
        for i in range(n):
            doc = copy.deepcopy(self.template)
            pid = f"{tag}{start + i:04d}"
            doc.update(id=pid, title=f"{tag} {i}", dateupload=str(1_300_000_000 + 1000 * i),
                       license="4" if i % 2 else "9", owner="78733179@N04")
            for k, v in list(doc.items()):
                if k.startswith("url_"):
                    doc[k] = v.replace("http://farm3.staticflickr.com/",
                                       self.srv.url("/farm3/")).replace("10115956703", pid)
            if serve:
                self.srv.serve(f"/farm3/2822/{pid}_b14e1be9d0_n.jpg",
                               self.jpegs[(start + i) % len(self.jpegs)],
                               content_type="image/jpeg")
            out.append(doc)
        self.photos.setdefault(tag, []).extend(out)
        return out

    def answer(self, req) -> tuple[int, dict[str, str], bytes]:  # type: ignore[no-untyped-def]
        q = {k: v[-1] for k, v in parse_qs(req.query).items()}
        self.queries.append(q)
        if q.get("api_key") != KEY:
            return 200, {}, json.dumps({"stat": "fail", "code": 100,
                                        "message": "Invalid API Key (Key has invalid format)"}
                                       ).encode()
        assert q["method"] == "flickr.photos.search" and q["nojsoncallback"] == "1"
        lo, hi = int(q.get("min_upload_date", 0)), int(q.get("max_upload_date", 1 << 40))
        hits = [p for p in self.photos.get(q["tags"], []) if lo <= int(p["dateupload"]) <= hi]
        hits.sort(key=lambda p: -int(p["dateupload"]))
        per_page, page = int(q["per_page"]), int(q["page"])
        served = hits[:self.cap]
        body = {"photos": {"page": page, "pages": -(-len(hits) // per_page), "perpage": per_page,
                           "total": str(len(hits)),
                           "photo": served[(page - 1) * per_page: page * per_page]},
                "stat": "ok"}
        return 200, {}, json.dumps(body).encode()


@pytest.fixture
def fake_flickr(loopback, realdata):  # type: ignore[no-untyped-def]
    return FakeFlickr(loopback, realdata)


def _client(api: str, tmp_path: Path, fake: FakeTime, **kw: object) -> ApiClient:
    return ApiClient("Flickr", api, cache_dir=tmp_path / "api", options=fetch_options(fake, **kw),
                     policy=flickr.API_POLICY, secret_params={"api_key": KEY})


# ---------------------------------------------------------------------------------------------
# the real replies


def test_parse_the_real_search_reply(realdata: Path) -> None:
    doc = json.loads((realdata / REPLY).read_text())
    flickr.check_reply(doc)
    photos = [flickr.parse_photo(p, "n", "reply") for p in doc["photos"]["photo"]]
    first = photos[0]
    assert first is not None
    assert (first.id, first.owner, first.owner_name) == ("10115956703", "78733179@N04",
                                                         "@janko-m")
    assert first.license == "All Rights Reserved"
    assert first.url == "http://farm3.staticflickr.com/2822/10115956703_b14e1be9d0_n.jpg"
    assert first.page == "https://www.flickr.com/photos/78733179@N04/10115956703"
    assert first.uploaded == 1381061206
    assert flickr.parse_photo(doc["photos"]["photo"][0], "l", "r").url.endswith("_b.jpg")


def test_the_real_reply_without_extras_falls_back_to_the_static_scheme(realdata: Path) -> None:
    cassette = yaml.safe_load((realdata / CASSETTE).read_text())
    body = json.loads(cassette["http_interactions"][0]["response"]["body"]["string"])
    flickr.check_reply(body)
    photo = flickr.parse_photo(body["photos"]["photo"][0], "n", "cassette")
    assert photo is not None
    assert photo.url == "https://live.staticflickr.com/8191/8130464513_780e01decd_n.jpg"
    assert photo.license == "Flickr licence unknown"


def test_flickr_error_replies() -> None:
    with pytest.raises(AuthError, match=r"error 100: Invalid API Key.*check FLICKR_API_KEY"):
        flickr.check_reply({"stat": "fail", "code": 100, "message": "Invalid API Key"})
    with pytest.raises(ApiError, match="error 3"):
        flickr.check_reply({"stat": "fail", "code": 3, "message": "No tags given"})
    with pytest.raises(ApiError, match="no photos.photo"):
        flickr.check_reply({"stat": "ok"})


# ---------------------------------------------------------------------------------------------
# search


def test_pagination_and_date_splitting_past_the_cap(loopback, realdata, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake_flickr = FakeFlickr(loopback, realdata, cap=5)
    fake_flickr.add("cat", 12, serve=False)
    fake = FakeTime()
    search = flickr.FlickrSearch(_client(fake_flickr.api, tmp_path, fake), per_page=3, cap=5)
    got = list(search.photos("cat", 11))
    assert len(got) == 11 and len({p.id for p in got}) == 11
    ups = [p.uploaded for p in got]
    assert ups == sorted(ups, reverse=True)  # newest first, across the split ranges
    assert any("min_upload_date" in q for q in fake_flickr.queries)
    assert all(int(q["per_page"]) == 3 for q in fake_flickr.queries)
    assert max(int(q["page"]) for q in fake_flickr.queries) == 2  # 5 per range, 3 a page
    # 1 s between search requests (3,600 an hour), waited on the injected clock
    assert len(fake.waits) == len(fake_flickr.queries) - 1
    assert all(w == pytest.approx(1.0) for w in fake.waits)


def test_pagination_within_the_cap(fake_flickr, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake_flickr.add("dog", 7, serve=False)
    search = flickr.FlickrSearch(_client(fake_flickr.api, tmp_path, FakeTime()), per_page=3)
    got = list(search.photos("dog", 100))
    assert [p.id for p in got] == [f"dog{i:04d}" for i in range(6, -1, -1)]
    assert [q["page"] for q in fake_flickr.queries] == ["1", "2", "3"]
    assert not any("min_upload_date" in q for q in fake_flickr.queries)


def test_429_retry_after_and_5xx_then_ok(fake_flickr, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake_flickr.add("cat", 3, serve=False)
    fake_flickr.route.fail_first, fake_flickr.route.fail_status = 1, 429
    fake_flickr.route.retry_after = "30"
    fake = FakeTime()
    assert len(list(flickr.FlickrSearch(_client(fake_flickr.api, tmp_path, fake))
                    .photos("cat", 3))) == 3
    assert 30.0 in fake.waits
    fake_flickr.route.requests, fake_flickr.route.fail_first = 0, 2
    fake_flickr.route.fail_status, fake_flickr.route.retry_after = 502, None
    fake.waits.clear()  # the same clock: the host's limits are shared by the whole process
    got = list(flickr.FlickrSearch(_client(fake_flickr.api, tmp_path / "b", fake))
               .photos("cat", 3))
    assert len(got) == 3 and fake.waits[-2:] == [1.0, 2.0]  # the backoff after 502, 502
    assert fake_flickr.route.requests == 3


def test_malformed_json_is_one_line_and_not_cached(loopback, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loopback.serve("/services/rest/", b'{"photos": {"page": 1, "photo": [',
                   content_type="application/json")
    client = _client(loopback.url("/services/rest/"), tmp_path, FakeTime())
    with pytest.raises(ApiError, match=r"^malformed JSON from http://127\.0\.0\.1:\d+/") as err:
        list(flickr.FlickrSearch(client).photos("cat", 5))
    assert KEY not in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "api").rglob("*.json"))


# ---------------------------------------------------------------------------------------------
# the whole connector


def _options(fake_flickr: FakeFlickr, **more: object) -> dict[str, object]:
    return {"tags": "cat,dog", "per_class": "8", "size": "16", "api_base": fake_flickr.api,
            **more}


def test_fetch_flickr_end_to_end_then_train_cnn(fake_flickr, tmp_path, cache_dir, monkeypatch,
                                                loopback) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    cats = fake_flickr.add("cat", 8)
    dogs = fake_flickr.add("dog", 8, start=100)
    shared = copy.deepcopy(cats[0])  # one photo tagged both: dropped by default
    shared["dateupload"] = str(1_400_000_000)  # the newest: among the first 8 dogs
    fake_flickr.photos["dog"].append(shared)
    # one photo 404s, one answers with an HTML page
    dogs[1]["url_n"] = loopback.url("/farm3/gone.jpg")
    loopback.serve("/farm3/2822/dog0102_b14e1be9d0_n.jpg", b"x", html_error=True)
    fake = FakeTime()
    out = prepare(find_recipe("flickr"), Cache(cache_dir), options=_options(fake_flickr),
                  name="catsdogs", fetch=fetch_options(fake))
    with h5py.File(out, "r") as f:
        n = f["images"].shape[0]
        assert f["images"].shape[1:] == (16, 16, 3)
        assert [c.decode() for c in f["classes"][()]] == ["cat", "dog"]
        ids = [i.decode() for i in f["meta/ids"][()]]
        labels = f["labels"][()]
        pages = [u.decode() for u in f["meta/url"][()]]
        lic = {i: f["meta/license"][k].decode() for k, i in enumerate(ids)}
        assert json.loads(f.attrs["download_skipped"]) == {"html": 1, "http-404": 1}
        assert f.attrs["shared_dropped"] == 1
        skipped = {s["name"] for s in json.loads(f.attrs["skipped"])}
    assert n == 7 + 5  # the shared photo dropped from both tags, two photos skipped
    assert "cat0000" not in ids and skipped == {"dog0101", "dog0102"}
    assert list(labels).count(0) == 7 and list(labels).count(1) == 5
    assert pages[0] == f"https://www.flickr.com/photos/78733179@N04/{ids[0]}"
    assert lic["cat0001"] == "CC BY 2.0" and lic["cat0002"] == "CC0 1.0"
    assert loopback.peak_in_flight <= 4
    # offline, without the key: the same file, nothing asked
    monkeypatch.delenv("FLICKR_API_KEY")
    before = loopback.requests()
    r = invoke_cli("--offline", "fetch", "flickr", "--tags", "cat,dog", "--per-class", "8",
                   "--size", "16", "--api-base", fake_flickr.api, "--name", "catsdogs",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(out)
    assert loopback.requests() == before
    r = invoke_cli("train-baseline", "cnn", str(out), "--epochs", "1", "--out",
                   str(tmp_path / "run"), cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_keep_shared_and_license_filter(fake_flickr, cache_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    cats = fake_flickr.add("cat", 3)
    fake_flickr.add("dog", 3, start=100)
    fake_flickr.photos["dog"].append(copy.deepcopy(cats[1]))
    out = prepare(find_recipe("flickr"), Cache(cache_dir),
                  options=_options(fake_flickr, keep_shared="true", license="4,9"),
                  fetch=fetch_options(FakeTime()))
    with h5py.File(out, "r") as f:
        ids = [i.decode() for i in f["meta/ids"][()]]
        labels = list(f["labels"][()])
    assert ids.count("cat0001") == 1 and labels[ids.index("cat0001")] == 0  # first tag wins
    assert len(ids) == 6
    assert all(q.get("license") == "4,9" for q in fake_flickr.queries)


def test_missing_key_is_one_line_before_any_request(fake_flickr, cache_dir, monkeypatch,
                                                    tmp_path) -> None:
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    monkeypatch.setenv("DLPREP_SECRETS", str(tmp_path / "absent.toml"))
    r = invoke_cli("fetch", "flickr", "--tags", "cat", "--api-base", fake_flickr.api,
                   cache_dir=cache_dir)
    assert r.returncode == 1 and r.stderr.startswith("error: ")
    assert len(r.stderr.strip().splitlines()) == 1 and "FLICKR_API_KEY" in r.stderr
    assert fake_flickr.srv.requests() == 0


def test_wrong_key_is_one_line_without_retries(fake_flickr, cache_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLICKR_API_KEY", "not-the-right-key-77")
    fake_flickr.add("cat", 2, serve=False)
    with pytest.raises(AuthError, match="check FLICKR_API_KEY") as err:
        prepare(find_recipe("flickr"), Cache(cache_dir), options=_options(fake_flickr),
                fetch=fetch_options(FakeTime()))
    assert "not-the-right-key-77" not in str(err.value)
    assert fake_flickr.srv.requests() == 1
    assert not list((cache_dir / "api").rglob("*.json"))


def test_empty_result_and_bad_options(fake_flickr, cache_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLICKR_API_KEY", KEY)
    fake_flickr.add("cat", 2)
    with pytest.raises(DlprepError, match="tag 'dog' found no photos"):
        prepare(find_recipe("flickr"), Cache(cache_dir), options=_options(fake_flickr),
                fetch=fetch_options(FakeTime()))
    with pytest.raises(DlprepError, match="--license: 'cc' is not a Flickr licence id"):
        prepare(find_recipe("flickr"), Cache(cache_dir),
                options=_options(fake_flickr, license="cc"), fetch=fetch_options(FakeTime()))
    with pytest.raises(DlprepError, match="give --tags"):
        prepare(find_recipe("flickr"), Cache(cache_dir), options={"api_base": fake_flickr.api},
                fetch=fetch_options(FakeTime()))
