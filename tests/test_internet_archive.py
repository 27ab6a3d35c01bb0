"""Internet Archive connector over loopback: the real scrape/advancedsearch/metadata replies
(tests/data/realdata/api), item files served from real photos and real Gutenberg texts whose
md5/sha1 go into metadata replies built in the real format (nasa.json), downloads redirected to
a "datanode" path, and the faults the brief names: cursor pages, 429 Retry-After, 5xx then OK,
malformed JSON, an empty result, a checksum that disagrees, a 404 and an HTML page, a resume."""

from __future__ import annotations

import copy
import hashlib
import json
import zlib
from pathlib import Path
from urllib.parse import parse_qs, quote

import h5py
import pytest
from conftest import invoke_cli

from dlprep.cache import Cache
from dlprep.errors import DlprepError, FormatError
from dlprep.fetch.http import RetryPolicy
from dlprep.fetch.options import FetchOptions
from dlprep.prepare.core import prepare
from dlprep.prepare.internet_archive import label_of
from dlprep.recipes import find_recipe
from dlprep.sources import internet_archive as ia

API = "api"
SCRAPE = "/services/search/v1/scrape"
ADVANCED = "/advancedsearch.php"
REAL_CURSOR = "W3siaWRlbnRpZmllciI6IjE5NjEtTC0wNTkxNCJ9XQ=="
# advancedsearch docs (real, collection:nasa) used as items: identifier -> served photo
KAZAKHSTAN = {"201003180014HQ": "china.jpg", "201006020009HQ": "flower.jpg",
              "201003180008HQ": "rocket.jpg"}
WASHINGTON = {"201005250003HQ": "retina.jpg", "201005260004HQ": "hubble_deep_field.jpg",
              "201003090004HQ": "road-to-versailles-at-louveciennes.jpg"}
CLASSES = "Where -- Kazakhstan,Where -- Washington"


class Mirror:
    """The three IA endpoints on one loopback server: search replies, ``metadata/{id}`` built
    in the real format around real metadata fields, and ``download/{id}/{name}`` answering a
    302 to a ``/datanode/...`` path that serves the bytes."""

    def __init__(self, loopback, realdata: Path) -> None:  # type: ignore[no-untyped-def]
        self.lb = loopback
        self.real = realdata / API
        self.template = json.loads((self.real / "nasa.json").read_bytes())
        self.docs = {d["identifier"]: d for d in json.loads(
            (self.real / "advanced_search_response.json").read_bytes())["response"]["docs"]}

    @property
    def base(self) -> str:
        return self.lb.base_url.rstrip("/")

    def metadata(self, identifier: str, fields: dict, files: list[dict]) -> bytes:
        """A metadata reply shaped like the real nasa.json (its server keys, the item's own
        metadata and files, then the item's _meta.xml entry as the real one lists it)."""
        doc = copy.deepcopy(self.template)
        doc["dir"] = f"/27/items/{identifier}"
        doc["metadata"] = {"identifier": identifier, **fields}
        meta_xml = next(f for f in doc["files"] if f["name"] == "nasa_meta.xml")
        doc["files"] = [*files, {**meta_xml, "name": f"{identifier}_meta.xml"}]
        doc["files_count"] = len(doc["files"])
        doc.pop("is_collection", None)
        return json.dumps(doc).encode()

    def item(self, identifier: str, body: bytes, fmt: str = "JPEG", *, name: str = "",
             fields: dict | None = None, listed: bytes | None = None, drop: tuple = (),
             serve: bool = True, **route: object) -> str:
        """Serve an item with one file (``listed``: the bytes whose md5/sha1/size the metadata
        gives, when they differ from what is served; ``drop``: keys left out of its entry, as
        in nasa.json's last file). Returns the file name."""
        name = name or f"{identifier}.{'jpg' if fmt == 'JPEG' else 'txt'}"
        listed = body if listed is None else listed
        entry = {"name": name, "source": "original", "size": str(len(listed)), "format": fmt,
                 "mtime": "1274793840", "md5": hashlib.md5(listed).hexdigest(),
                 "crc32": f"{zlib.crc32(listed):08x}", "sha1": hashlib.sha1(listed).hexdigest()}
        entry = {k: v for k, v in entry.items() if k not in drop}
        if fields is None:
            d = self.docs[identifier]
            fields = {k: d[k] for k in ("title", "mediatype", "collection", "description",
                                        "subject", "creator", "year") if k in d}
        self.lb.serve(f"/metadata/{identifier}", self.metadata(identifier, fields, [entry]),
                      content_type="application/json")
        datanode = f"/datanode/ia800107.us.archive.org/27/items/{identifier}/{quote(name)}"
        self.lb.serve(f"/download/{identifier}/{quote(name)}", b"", fail_first=10**9,
                      fail_status=302, fail_headers={"Location": self.lb.url(datanode)})
        if serve:
            self.lb.serve(datanode, body, content_type="image/jpeg" if fmt == "JPEG"
                          else "text/plain; charset=utf-8", **route)
        return name

    def empty(self, identifier: str) -> None:
        """No such item: the real API answers ``{}``."""
        self.lb.serve(f"/metadata/{identifier}", b"{}", content_type="application/json")

    def advanced(self) -> None:
        self.lb.serve(ADVANCED, self.real / "advanced_search_response.json",
                      content_type="application/json")

    def scrape_pages(self, pages: list[bytes], **route: object) -> None:
        """Answer each scrape request with the page its ``cursor`` names (none: the first;
        page k+1 is asked for with the cursor of page k)."""
        cursors = [json.loads(p).get("cursor") for p in pages]

        def pick(_: int) -> None:
            query = parse_qs(self.lb.requests_for(SCRAPE)[-1].query)
            cursor = query.get("cursor", [None])[0]
            self.lb.route(SCRAPE).body = pages[cursors.index(cursor) + 1 if cursor else 0]

        self.lb.serve(SCRAPE, pages[0], content_type="application/json", on_request=pick,
                      **route)


def _scrape_page(realdata: Path, identifiers: list[str], cursor: str | None) -> bytes:
    """The real scrape reply with its items replaced (the only change) and, on the last page,
    no cursor."""
    doc = json.loads((realdata / API / "scrape_response.json").read_bytes())
    doc["items"] = [{"identifier": i} for i in identifiers]
    doc["count"] = len(identifiers)
    if cursor is None:
        doc.pop("cursor")
    else:
        doc["cursor"] = cursor
    return json.dumps(doc).encode()


@pytest.fixture
def mirror(loopback, realdata: Path) -> Mirror:  # type: ignore[no-untyped-def]
    return Mirror(loopback, realdata)


def _photos(mirror: Mirror, realdata: Path, **faults: dict) -> dict[str, bytes]:
    """Serve the six real photos as six items (``faults``: route options per identifier)."""
    served = {}
    for ident, photo in {**KAZAKHSTAN, **WASHINGTON}.items():
        served[ident] = (realdata / "images" / photo).read_bytes()
        mirror.item(ident, served[ident], **faults.get(ident, {}))
    return served


def _h5(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# parsing the real replies


def test_parse_real_replies(realdata: Path) -> None:
    items, cursor, total = ia.parse_scrape(
        json.loads((realdata / API / "scrape_response.json").read_bytes()), "scrape")
    assert len(items) == 100 and items[0] == {"identifier": "00-042-154"}
    assert cursor == REAL_CURSOR and total == 100
    docs, found = ia.parse_advanced(
        json.loads((realdata / API / "advanced_search_response.json").read_bytes()), "adv")
    assert found == 50 and len(docs) == 50 and docs[1]["identifier"] == "A-11464"
    item = ia.parse_metadata(json.loads((realdata / API / "nasa.json").read_bytes()), "nasa",
                             "meta")
    assert item is not None and item.identifier == "nasa" and item.title == "NASA Images"
    assert len(item.files) == 6
    globe = item.files[1]
    assert (globe.name, globe.format, globe.size) == ("globe_west_540.jpg", "JPEG", 66065)
    assert globe.md5 == "9366a4b09386bf673c447e33d806d904"
    assert globe.sha1 == "3e20a009994405f535cdf07cdc2974cef2fce8f2"
    assert globe.cache_name == "9366a4b09386bf673c447e33d806d904.jpg"
    files_xml = item.files[5]
    assert (files_xml.size, files_xml.sha1, files_xml.md5[:6]) == (-1, "", "c0db07")
    # the collection header JPEG has another format; metadata files are never taken
    assert ia.select_files(item, "JPEG", 0) == ([globe], 0)
    assert ia.select_files(item, "Text", 0) == ([], 0)
    assert ia.parse_metadata({}, "gone", "meta") is None
    with pytest.raises(FormatError, match="no items"):
        ia.parse_scrape({"count": 0}, "scrape")
    with pytest.raises(FormatError, match="response.docs"):
        ia.parse_advanced({"response": {"numFound": 0}}, "adv")


def test_label_rule_for_multi_valued_fields(realdata: Path) -> None:
    docs = {d["identifier"]: d for d in json.loads(
        (realdata / API / "advanced_search_response.json").read_bytes())["response"]["docs"]}

    def item(ident: str) -> ia.IaItem:
        return ia.IaItem(ident, docs[ident])

    soyuz = item("201006020009HQ")  # Who x2, What x2, Where -- Kazakhstan
    assert label_of(soyuz, "subject", None) == ("Who -- Soichi Noguchi", "")
    assert label_of(soyuz, "subject", ["where -- KAZAKHSTAN", "Where -- Washington"]) == \
        ("where -- KAZAKHSTAN", "")
    assert label_of(soyuz, "subject", ["What -- Soyuz TM", "Where -- Kazakhstan"]) == \
        (None, "subject names two or more of --classes")
    assert label_of(item("A-11464"), "subject", ["Where -- Washington"]) == \
        (None, "subject names none of --classes")
    assert label_of(item("1redRoverGoesToMars-studentAstronautB-rollCompilation"), "subject",
                    None) == (None, "no subject value")
    assert label_of(soyuz, "collection", None) == ("nasa", "")
    # one string with IA's ';' separator is several values; numbers are text
    assert ia.field_values("cats; dogs ;") == ["cats", "dogs"]
    assert ia.field_values([1947, "x"]) == ["1947", "x"]


# ---------------------------------------------------------------------------------------------
# images end to end


def test_jpeg_dataset_end_to_end_with_faults(mirror: Mirror, realdata: Path, cache_dir: Path,
                                              loopback) -> None:  # type: ignore[no-untyped-def]
    # one photo answers 503 first (5xx then OK)
    served = _photos(mirror, realdata, **{"201005260004HQ": {
        "fail_first": 1, "fail_status": 503, "retry_after": "0"}})
    photo = (realdata / "images" / "rocket.jpg").read_bytes()
    # the metadata of each faulty item lists other bytes than the good ones (files are cached
    # by md5: the same md5 would find the good copy)
    mirror.item("201003180011HQ", photo, listed=photo + b"1", serve=False)  # the datanode 404s
    mirror.item("201003180003HQ", photo, listed=photo + b"2", html_error=True)  # an HTML page
    bad = mirror.item("201003180019HQ", photo, listed=photo[:-1] + b"\0")  # md5/sha1 disagree
    mirror.advanced()
    for ident in mirror.docs:
        if f"/metadata/{ident}" not in loopback.routes:
            mirror.empty(ident)
    flaky = loopback.route("/metadata/201003180008HQ")  # metadata: a 502, then the reply
    flaky.fail_first, flaky.fail_status, flaky.retry_after = 1, 502, "0"
    r = invoke_cli("fetch", "internet-archive", "--query", "collection:nasa", "--format", "JPEG",
                   "--search", "advancedsearch", "--max-items", "0", "--label", "subject",
                   "--classes", CLASSES, "--size", "32", "--api-base", mirror.base,
                   "--name", "nasa", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    with h5py.File(_h5(r.stdout), "r") as f:
        assert f["images"].shape == (6, 32, 32, 3)
        assert [c.decode() for c in f["classes"][()]] == CLASSES.split(",")
        ids = [x.decode() for x in f["meta/identifier"][()]]
        labels = f["labels"][()].tolist()
        assert {i: labels[k] for k, i in enumerate(ids)} == {
            **{i: 0 for i in KAZAKHSTAN}, **{i: 1 for i in WASHINGTON}}
        assert [x.decode() for x in f["meta/file"][()]] == [f"{i}.jpg" for i in ids]
        assert {x.decode() for x in f["meta/license"][()]} == {"unknown"}
        assert f["meta/title"][0].decode() == mirror.docs[ids[0]]["title"]
        assert f["meta/url"][0].decode() == f"{mirror.base}/details/{ids[0]}"
        skipped = {s["name"]: s["reason"] for s in json.loads(f.attrs["skipped"])}
        counts = json.loads(f.attrs["ia_skipped"])
    assert skipped == {"201003180011HQ/201003180011HQ.jpg": "HTTP 404",
                       "201003180003HQ/201003180003HQ.jpg": "HTML page instead of the file",
                       f"201003180019HQ/{bad}": "checksum disagrees with the item metadata"}
    assert counts["HTTP 404"] == 1 and counts["HTML page instead of the file"] == 1
    assert counts["checksum disagrees with the item metadata"] == 1
    assert counts["no such item (metadata {})"] == 50 - 9  # the items not served
    assert "skipped" in r.stderr and "HTTP 404" in r.stderr
    # every kept file is the verified bytes, content-addressed; the refused one left nothing
    raw = cache_dir / "raw" / "internet-archive" / "files"
    kept = {p.name for p in raw.iterdir()}
    assert kept == {hashlib.md5(b).hexdigest() + ".jpg" for b in served.values()}
    assert not any(hashlib.md5(p.read_bytes()).hexdigest() != p.stem for p in raw.iterdir())
    # every download went through the redirect; the datanode served each body once
    assert all(loopback.requests(f"/download/{i}/{i}.jpg") == 1 for i in KAZAKHSTAN)
    assert loopback.requests(ADVANCED) == 1
    assert [e.status for e in loopback.requests_for("/metadata/201003180008HQ")] == [502, 200]
    assert all(e.headers["User-Agent"].startswith("dlprep/") for e in loopback.log)

    # offline, another name: search, metadata and files all come from the cache
    before = loopback.requests()
    r2 = invoke_cli("--offline", "fetch", "internet-archive", "--query", "collection:nasa",
                    "--format", "JPEG", "--search", "advancedsearch", "--max-items", "0",
                    "--classes", CLASSES, "--size", "32", "--api-base", mirror.base,
                    "--name", "nasa-again", cache_dir=cache_dir)
    assert r2.returncode == 0, r2.stderr
    assert loopback.requests() == before
    with h5py.File(_h5(r2.stdout), "r") as f:
        assert f["images"].shape == (6, 32, 32, 3)

    pytest.importorskip("torch")
    assert 0.0 <= _train(cache_dir, "cnn", "nasa")["final"]["accuracy"] <= 1.0


def test_resume_after_a_cut_through_the_redirect(mirror: Mirror, realdata: Path,
                                                 cache_dir: Path, loopback) -> None:  # type: ignore[no-untyped-def]
    body = (realdata / "images" / "hubble_deep_field.jpg").read_bytes()  # > 256 KiB: resumable
    ident = "201005260004HQ"
    mirror.item(ident, body, cut_after=100_000)
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, [ident], None),
                    content_type="application/json")
    r = invoke_cli("fetch", "internet-archive", "--query", "subject:Armstrong", "--format",
                   "JPEG", "--label", "collection", "--size", "16", "--api-base", mirror.base,
                   "--name", "one", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    datanode = [e for e in loopback.log if e.path.startswith("/datanode/")]
    assert len(datanode) == 2 and "Range" not in datanode[0].headers
    assert datanode[1].headers["Range"] == "bytes=100000-" and datanode[1].status == 206
    assert loopback.bytes_sent(datanode[0].path) == len(body)  # nothing fetched twice
    (path,) = (cache_dir / "raw" / "internet-archive" / "files").glob("*.jpg")
    assert path.read_bytes() == body


# ---------------------------------------------------------------------------------------------
# texts end to end


def test_text_dataset_with_cursor_pages_and_429(mirror: Mirror, realdata: Path,
                                                cache_dir: Path, loopback) -> None:  # type: ignore[no-untyped-def]
    texts = {"alicesadventures00011gut": ("11-0.txt", "Fantasy fiction"),
             "prideandprejudic01342gut": ("pg1342.txt", "Love stories; England -- Fiction")}
    for ident, (name, subject) in texts.items():
        mirror.item(ident, (realdata / "gutenberg" / name).read_bytes(), "Text", name=name,
                    fields={"title": name, "mediatype": "texts", "collection": ["gutenberg"],
                            "subject": subject,
                            "licenseurl": "http://creativecommons.org/publicdomain/mark/1.0/"})
    ids = list(texts)
    mirror.scrape_pages([_scrape_page(realdata, ids[:1], REAL_CURSOR),
                         _scrape_page(realdata, ids[1:], None)],
                        fail_first=1, fail_status=429, retry_after="0")
    r = invoke_cli("fetch", "internet-archive", "--query", "collection:gutenberg", "--format",
                   "Text", "--label", "subject", "--chunk-chars", "4000", "--api-base",
                   mirror.base, "--name", "books", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    queries = [parse_qs(e.query) for e in loopback.requests_for(SCRAPE)]
    assert [e.status for e in loopback.requests_for(SCRAPE)] == [429, 200, 200]
    assert queries[1]["q"] == ["collection:gutenberg"] and int(queries[1]["count"][0]) >= 100
    assert "cursor" not in queries[1] and queries[2]["cursor"] == [REAL_CURSOR]
    with h5py.File(_h5(r.stdout), "r") as f:
        assert [c.decode() for c in f["classes"][()]] == ["Fantasy fiction", "Love stories"]
        idents = {x.decode() for x in f["meta/identifier"][()]}
        assert idents == set(texts)
        assert len(f["meta/identifier"]) > 20  # chunked into many documents
        assert f["meta/license"][0].decode().startswith("http://creativecommons.org/")
        assert json.loads(f.attrs["ia_skipped"]) == {}
    pytest.importorskip("torch")
    _train(cache_dir, "mlp", "books")  # bag of tokens: seconds (rnn: the slow test below)


def _train(cache_dir: Path, family: str, dataset: str) -> dict:
    t = invoke_cli("train-baseline", family, dataset, "--epochs", "1", "--max-batches", "2",
                   "--threads", "1", "--device", "cpu", "--max-minutes", "2",
                   cache_dir=cache_dir)
    assert t.returncode == 0, t.stderr
    return json.loads((_h5(t.stdout) / "metrics.json").read_text())


@pytest.mark.slow
def test_text_dataset_trains_an_rnn(mirror: Mirror, realdata: Path, cache_dir: Path) -> None:
    pytest.importorskip("torch")
    for ident, name, subject in (("alicesadventures00011gut", "11-0.txt", "Fantasy fiction"),
                                 ("prideandprejudic01342gut", "pg1342.txt", "Love stories")):
        mirror.item(ident, (realdata / "gutenberg" / name).read_bytes(), "DjVuTXT",
                    name=name, fields={"title": name, "subject": subject})
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, ["alicesadventures00011gut",
                                                    "prideandprejudic01342gut"], None),
                    content_type="application/json")
    r = invoke_cli("fetch", "internet-archive", "--query", "collection:gutenberg", "--format",
                   "Text", "--chunk-chars", "1000", "--api-base", mirror.base, "--name", "b",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert 0.0 <= _train(cache_dir, "rnn", "b")["final"]["accuracy"] <= 1.0


def test_advancedsearch_pages(mirror: Mirror, realdata: Path, tmp_path: Path) -> None:
    """Page 2 is asked for while fewer docs than numFound came back."""
    real = json.loads((realdata / API / "advanced_search_response.json").read_bytes())
    first = copy.deepcopy(real)
    first["response"]["numFound"] = 60
    second = copy.deepcopy(real)
    second["response"]["docs"] = second["response"]["docs"][:10]
    second["response"]["docs"][0]["identifier"] = "page-two"
    pages = [json.dumps(first).encode(), json.dumps(second).encode()]

    def pick(_: int) -> None:
        page = parse_qs(mirror.lb.requests_for(ADVANCED)[-1].query)["page"][0]
        mirror.lb.route(ADVANCED).body = pages[int(page) - 1]

    mirror.lb.serve(ADVANCED, pages[0], content_type="application/json", on_request=pick)
    client = ia.InternetArchive(mirror.base, tmp_path / "api", FetchOptions())
    ids = client.search("collection:nasa", limit=0, method="advancedsearch")
    assert len(ids) == 51 and ids[0] == real["response"]["docs"][0]["identifier"]
    assert ids[-1] == "page-two"
    queries = [parse_qs(e.query) for e in mirror.lb.requests_for(ADVANCED)]
    assert [q["page"] for q in queries] == [["1"], ["2"]]
    assert queries[0]["fl[]"] == ["identifier"] and queries[0]["output"] == ["json"]


def test_search_pages_and_retry_after_in_process(mirror: Mirror, realdata: Path,
                                                 tmp_path: Path) -> None:
    """The real first page (100 identifiers and a cursor) then a last page; a 429's
    Retry-After is what the client waits (injected sleep, no real wait)."""
    real = (realdata / API / "scrape_response.json").read_bytes()
    mirror.scrape_pages([real, _scrape_page(realdata, ["extra-1", "00-042-154"], None)],
                        fail_first=1, fail_status=429, retry_after="7")
    sleeps: list[float] = []
    options = FetchOptions(retry=RetryPolicy(sleep=sleeps.append, jitter=0))
    client = ia.InternetArchive(mirror.base, tmp_path / "api", options)
    ids = client.search("collection:nasa", limit=0)
    assert len(ids) == 101 and ids[0] == "00-042-154" and ids[-1] == "extra-1"  # deduplicated
    assert 7.0 in sleeps
    # limit: the client stops after the first page and never sends a count under 100
    client2 = ia.InternetArchive(mirror.base, tmp_path / "api2", options)
    assert client2.search("collection:nasa", limit=5) == ids[:5]
    last = parse_qs(mirror.lb.requests_for(SCRAPE)[-1].query)
    assert last["count"] == ["100"] and "cursor" not in last


# ---------------------------------------------------------------------------------------------
# bad answers: one line, non-zero exit, nothing prepared


def _fetch(mirror: Mirror, cache_dir: Path, *extra: str):  # type: ignore[no-untyped-def]
    return invoke_cli("fetch", "internet-archive", "--query", "collection:nasa", "--format",
                      "JPEG", "--api-base", mirror.base, "--name", "bad", *extra,
                      cache_dir=cache_dir)


def _nothing_prepared(cache_dir: Path) -> bool:
    return not list((cache_dir / "prepared").glob("bad/*.h5"))


def test_malformed_json_and_empty_result(mirror: Mirror, realdata: Path,
                                         cache_dir: Path) -> None:
    mirror.lb.serve(SCRAPE, b'{"items": [{"identifier": "00-0', content_type="application/json")
    r = _fetch(mirror, cache_dir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "malformed JSON from" in line and "/services/search/v1/scrape" in line
    assert _nothing_prepared(cache_dir)
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, [], None), content_type="application/json")
    r = _fetch(mirror, cache_dir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "the search 'collection:nasa' found no items" in r.stderr.strip().splitlines()[-1]
    assert _nothing_prepared(cache_dir)
    # metadata that is not JSON: the item's URL is named
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, ["201003180014HQ"], None),
                    content_type="application/json")
    mirror.lb.serve("/metadata/201003180014HQ", b"<?xml version='1.0'?><error/>")
    r = _fetch(mirror, cache_dir)
    assert r.returncode == 1 and "malformed JSON from" in r.stderr
    assert "/metadata/201003180014HQ" in r.stderr and _nothing_prepared(cache_dir)


def test_every_file_refused_is_one_line(mirror: Mirror, realdata: Path, cache_dir: Path) -> None:
    photo = (realdata / "images" / "china.jpg").read_bytes()
    mirror.item("201003180014HQ", photo, listed=photo + b"x")  # size and hashes disagree
    # only a sha1 (no md5), and it disagrees: caught after the download, the file deleted
    mirror.item("201006020009HQ", photo, listed=photo[:-1] + b"y", drop=("md5",))
    # neither hash: never downloaded
    mirror.item("201003180008HQ", photo, drop=("md5", "sha1"))
    ids = ["201003180014HQ", "201006020009HQ", "201003180008HQ"]
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, ids, None), content_type="application/json")
    r = _fetch(mirror, cache_dir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "no file could be downloaded and verified" in line
    assert "2 checksum disagrees with the item metadata" in line
    assert "1 no md5/sha1 in the item metadata" in line and _nothing_prepared(cache_dir)
    assert "sha1 mismatch" in r.stderr
    assert mirror.lb.requests("/download/201003180008HQ/201003180008HQ.jpg") == 0
    raw = cache_dir / "raw" / "internet-archive" / "files"
    assert not raw.exists() or not any(raw.iterdir())


def test_options_checked_before_any_request(mirror: Mirror, cache_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke_cli("fetch", "internet-archive", "--format", "JPEG", "--api-base", mirror.base,
                   cache_dir=cache_dir)
    assert r.returncode == 1 and "give a search with --query" in r.stderr
    r = _fetch(mirror, cache_dir, "--label", "none")
    assert r.returncode == 1 and "--format JPEG needs --label FIELD" in r.stderr
    monkeypatch.setenv("IA_ACCESS_KEY", "AKIAEXAMPLEKEY1")
    monkeypatch.delenv("IA_SECRET_KEY", raising=False)
    monkeypatch.setenv("DLPREP_SECRETS", str(cache_dir / "no-secrets.toml"))
    r = _fetch(mirror, cache_dir)
    assert r.returncode == 1 and "IA_SECRET_KEY" in r.stderr
    assert "AKIAEXAMPLEKEY1" not in r.stderr
    assert mirror.lb.requests() == 0


def test_keys_sent_as_low_authorization(mirror: Mirror, realdata: Path, cache_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    access, secret = "IAaccessKEY42xyz", "IAsecretKEY99abc"
    monkeypatch.setenv("IA_ACCESS_KEY", access)
    monkeypatch.setenv("IA_SECRET_KEY", secret)
    photos = {i: (realdata / "images" / p).read_bytes() for i, p in KAZAKHSTAN.items()}
    for ident, body in photos.items():
        mirror.item(ident, body)
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, list(photos), None),
                    content_type="application/json")
    r = _fetch(mirror, cache_dir, "--label", "collection", "--size", "16")
    assert r.returncode == 0, r.stderr
    sent = {e.path.split("/")[1]: e.headers.get("authorization") for e in mirror.lb.log}
    assert sent["metadata"] == sent["download"] == f"LOW {access}:{secret}"
    for path in cache_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and access.encode() not in data, path
            assert secret not in path.name


def test_client_refuses_without_checksum(tmp_path: Path) -> None:
    client = ia.InternetArchive("http://127.0.0.1:9", tmp_path / "api", FetchOptions())
    with pytest.raises(DlprepError, match="gives no md5 or sha1"):
        client.fetch_one("x", ia.IaFile("a.jpg", "JPEG"), tmp_path / "files")
    assert not (tmp_path / "files").exists()


def test_offline_without_cache_is_one_line(mirror: Mirror, cache_dir: Path) -> None:
    r = invoke_cli("--offline", "fetch", "internet-archive", "--query", "collection:nasa",
                   "--api-base", mirror.base, cache_dir=cache_dir)
    assert r.returncode != 0 and "not in the cache" in r.stderr
    assert mirror.lb.requests() == 0


def test_prepare_in_process_is_idempotent(mirror: Mirror, realdata: Path,
                                          tmp_path: Path) -> None:
    for ident, photo in WASHINGTON.items():
        mirror.item(ident, (realdata / "images" / photo).read_bytes())
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, list(WASHINGTON), None),
                    content_type="application/json")
    cache = Cache(tmp_path / "c")
    opts = {"query": "x", "label": "collection", "size": "16", "api_base": mirror.base}
    first = prepare(find_recipe("internet-archive"), cache, options=opts, name="w")
    n = mirror.lb.requests()
    again = prepare(find_recipe("internet-archive"), cache, options=opts, name="w")
    assert again == first and mirror.lb.requests() == n  # all from the caches
    with h5py.File(first, "r") as f:
        assert f["images"].shape == (3, 16, 16, 3)
        assert json.loads(f.attrs["config"])["options"]["format"] == "JPEG"
        assert "tokenizer" not in json.loads(f.attrs["config"])["options"]


def test_keys_from_the_private_secrets_file(mirror: Mirror, realdata: Path, cache_dir: Path,
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ia.KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('IA_ACCESS_KEY = "fileACCESSkey7"\nIA_SECRET_KEY = "fileSECRETkey8"\n')
    secrets.chmod(0o644)
    monkeypatch.setenv("DLPREP_SECRETS", str(secrets))
    mirror.item("201003180014HQ", (realdata / "images" / "china.jpg").read_bytes())
    mirror.lb.serve(SCRAPE, _scrape_page(realdata, ["201003180014HQ"], None),
                    content_type="application/json")
    r = _fetch(mirror, cache_dir, "--label", "collection", "--size", "16")
    assert r.returncode == 1 and "readable by others" in r.stderr
    assert "fileSECRETkey8" not in r.stderr and mirror.lb.requests() == 0
    secrets.chmod(0o600)
    r = _fetch(mirror, cache_dir, "--label", "collection", "--size", "16")
    assert r.returncode == 0, r.stderr
    assert {e.headers.get("authorization") for e in mirror.lb.log} == \
        {"LOW fileACCESSkey7:fileSECRETkey8"}
