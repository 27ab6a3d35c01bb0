"""dlprep fetch commoncrawl over a loopback CDX index + data host built from the real WARCs."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h5py
import pytest
from conftest import invoke_cli

from dlprep.formats.warc import records_in
from dlprep.text.extract import parse_http

pytest.importorskip("resiliparse")

CRAWL = "CC-MAIN-2025-33"
CC_FILE = ("crawl-data/CC-MAIN-2025-33/segments/1754151279781.29/warc/"
           "CC-MAIN-20250804083340-20250804113340-00340.warc.gz")
PER_PAGE = 3


def _members(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(offset, length, inflated)`` of each gzip member of ``data``."""
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        raw = d.decompress(data[pos:])
        length = len(data) - pos - len(d.unused_data)
        yield pos, length, raw
        pos += length


def _cdx_rows(data: bytes, filename: str) -> list[dict[str, str]]:
    """CDX lines for every response record in ``data`` (offsets computed here)."""
    rows = []
    for offset, length, raw in _members(data):
        (rec,), _ = records_in(raw)
        http = parse_http(rec.block, 1 << 24) if rec.type == "response" else None
        if http is None:
            continue
        payload = rec.block[rec.block.find(b"\r\n\r\n") + 4:]
        rows.append({"urlkey": rec.url, "timestamp": rec.date, "url": rec.url,
                     "mime": http.mime, "status": str(http.status),
                     "digest": base64.b32encode(hashlib.sha1(payload).digest()).decode(),
                     "length": str(length), "offset": str(offset), "filename": filename})
    return rows


class _Index:
    """A CDX server (pywb API subset): collinfo.json, showNumPages, page=N, 503 faults. It
    serves its rows whatever the pattern (the tests check the query the client sent)."""

    def __init__(self, collinfo: bytes, rows: list[dict[str, str]], fail_page: int | None) -> None:
        self.collinfo = collinfo
        self.rows = rows
        self.fail_page = fail_page
        self.queries: list[dict[str, list[str]]] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status, body = index.answer(self.path)
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, bytes]:
        parts = urlsplit(path)
        if parts.path == "/collinfo.json":
            return 200, self.collinfo
        if parts.path != f"/{CRAWL}-index":
            return 404, b"no such index\n"
        q = parse_qs(parts.query)
        self.queries.append(q)
        pages = (len(self.rows) + PER_PAGE - 1) // PER_PAGE
        if q.get("showNumPages") == ["true"]:
            return 200, json.dumps({"pages": max(1, pages), "pageSize": PER_PAGE,
                                    "blocks": pages}).encode()
        page = int(q.get("page", ["0"])[0])
        if page == self.fail_page:
            self.fail_page = None
            return 503, (b"<Error><Code>SlowDown</Code><Message>Please reduce your request "
                         b"rate.</Message></Error>")
        chunk = self.rows[page * PER_PAGE:(page + 1) * PER_PAGE]
        if not chunk:
            return 404, b"No Captures found for: " + q["url"][0].encode() + b"\n"
        return 200, "".join(json.dumps(r) + "\n" for r in chunk).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cc(realdata: Path, loopback):  # type: ignore[no-untyped-def]
    warc = realdata / "warc"
    real_cc = (warc / "CC-MAIN-20250804083340-20250804113340-00340.offset667474763.warc.gz")
    iana = (warc / "iana.warc.gz").read_bytes()
    data = iana + real_cc.read_bytes() + (warc / "example-wpull.warc.gz").read_bytes()
    rows = [r for r in _cdx_rows(data, CC_FILE)]
    loopback.serve("/" + CC_FILE, data, fail_first=1, fail_status=503, retry_after="0")
    index = _Index((warc / "collinfo.json").read_bytes(), rows, fail_page=1)
    yield index, rows, data, loopback
    index.close()


def _meta(stdout: str) -> dict[str, list[str]]:
    with h5py.File(stdout.strip().splitlines()[-1]) as f:
        return {k: [v.decode() for v in f["meta"][k][:]] for k in f["meta"]}


def test_fetch_commoncrawl_ranged_records_pagination_and_503(cc, cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    index, rows, data, lb = cc
    args = ("fetch", "commoncrawl", "--crawl", "latest", "--url", "*.iana.org", "--limit", "0",
            "--name", "cc", "--index-base", index.base, "--data-base", lb.base_url)
    r = invoke_cli(*args, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    wanted = [x for x in rows if x["status"] == "200" and "html" in x["mime"]]
    assert len(wanted) >= 4 and len(rows) > len(wanted)  # the index also lists non-HTML/3xx
    meta = _meta(r.stdout)
    assert "https://www.commoncrawl.org/" in meta["url"]          # the real CC record
    assert {u for u in meta["url"]} <= {x["url"] for x in wanted}
    assert all(t[:4] in ("2014", "2015", "2025") and "T" in t for t in meta["timestamp"])
    # the crawl was resolved from collinfo.json; the query carried the pattern and filters
    assert all(q["url"] == ["*.iana.org"] for q in index.queries)
    assert all(set(q["filter"]) == {"=status:200", "~mime:html"} for q in index.queries)
    pages = sorted(int(q["page"][0]) for q in index.queries if "page" in q)
    n_pages = (len(rows) + PER_PAGE - 1) // PER_PAGE
    assert pages == sorted([*range(n_pages), 1])                 # page 1 twice: 503, then OK
    # one Range request per record (plus the one answered 503), never the whole file
    log = lb.requests_for("/" + CC_FILE)
    assert len(log) == len(wanted) + 1
    assert all(e.headers["Range"].startswith("bytes=") for e in log)
    assert {e.status for e in log} == {503, 206}
    total = sum(int(x["length"]) for x in wanted)
    assert lb.bytes_sent("/" + CC_FILE) <= 1.05 * total
    assert total < len(data)
    # replay offline: the same dataset, not one request more
    before = len(lb.requests_for("/" + CC_FILE)), len(index.queries)
    r2 = invoke_cli("--offline", *args, cache_dir=cache_dir)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.strip().splitlines()[-1] == r.stdout.strip().splitlines()[-1]
    assert (len(lb.requests_for("/" + CC_FILE)), len(index.queries)) == before
    # the dataset trains
    pytest.importorskip("torch")
    t = invoke_cli("train-baseline", "rnn", "cc", "--max-minutes", "2", "--max-batches", "2",
                   "--epochs", "1", "--threads", "1", "--device", "cpu", cache_dir=cache_dir)
    assert t.returncode == 0, t.stderr


def test_limit_stops_paging(cc, cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    index, rows, _, lb = cc
    index.fail_page = None
    r = invoke_cli("fetch", "commoncrawl", "--crawl", CRAWL, "--url", "www.iana.org/*",
                   "--limit", "2", "--name", "cc2", "--index-base", index.base,
                   "--data-base", lb.base_url, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert len(lb.requests_for("/" + CC_FILE)) == 2 + 1          # 2 records + the 503
    html_at = [i for i, x in enumerate(rows) if x["status"] == "200" and "html" in x["mime"]]
    last_page = html_at[1] // PER_PAGE  # the page holding the 2nd HTML row: paging stops there
    assert (len(rows) + PER_PAGE - 1) // PER_PAGE > last_page + 1
    assert sorted(int(q["page"][0]) for q in index.queries if "page" in q) == list(
        range(last_page + 1))


def test_bad_offset_digest_and_crawl_are_one_line_and_no_dataset(cc, cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    index, rows, _, lb = cc
    index.fail_page = None
    base = ("fetch", "commoncrawl", "--url", "*.iana.org", "--limit", "1",
            "--index-base", index.base, "--data-base", lb.base_url)
    r = invoke_cli(*base, "--crawl", "CC-MAIN-1999-01", "--name", "x", cache_dir=cache_dir)
    assert r.returncode == 1 and "CC-MAIN-1999-01" in r.stderr and "collinfo" in r.stderr
    first = next(x for x in rows if x["status"] == "200" and "html" in x["mime"])
    index.rows = [dict(first, offset=str(int(first["offset"]) + 7))]
    r = invoke_cli(*base, "--crawl", CRAWL, "--name", "off", cache_dir=cache_dir)
    assert r.returncode == 1, r.stderr
    assert "gzip" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    index.rows = [dict(first, digest="A" * 32)]
    r = invoke_cli(*base, "--crawl", CRAWL, "--name", "dig", "--force", cache_dir=cache_dir)
    assert r.returncode == 1 and "payload digest" in r.stderr
    assert not list((cache_dir / "prepared").rglob("*.h5"))
    index.rows = []  # the index answers 404 "No Captures found"
    r = invoke_cli(*base, "--crawl", CRAWL, "--name", "empty", "--force", cache_dir=cache_dir)
    assert r.returncode == 1 and "no status-200 HTML captures of '*.iana.org'" in r.stderr


def test_refused_index_is_not_called_throttling(cache_dir: Path) -> None:
    """A refused connection is reported as such, at once; the throttling hint is kept for
    HTTP 429/503 (tested above with the 503 pages)."""
    r = invoke_cli("fetch", "commoncrawl", "--crawl", CRAWL, "--url", "*.iana.org", "--limit",
                   "1", "--index-base", "http://127.0.0.1:1", "--data-base",
                   "http://127.0.0.1:1", "--name", "refused", cache_dir=cache_dir)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "connection refused" in r.stderr and "throttling" not in r.stderr
    assert not list((cache_dir / "prepared").rglob("*.h5"))
