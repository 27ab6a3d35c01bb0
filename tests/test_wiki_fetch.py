"""`fetch wikipedia --wiki ... --base-url`: dumpstatus.json discovery over a loopback mirror
serving a multistream dump built from the real excerpt, checksums verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import pytest
from test_wiki_dump import EXCERPT, build_multistream

from dlprep.cli import main
from dlprep.errors import DlprepError, FormatError
from dlprep.sources.wikipedia import DumpsClient, parse_dumpstatus

DATE = "20261120"
DUMP = f"enwiki-{DATE}-pages-articles-multistream.xml.bz2"
INDEX = f"enwiki-{DATE}-pages-articles-multistream-index.txt.bz2"
RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
  <channel>
    <title>Wikimedia Downloads</title>
    <link>https://dumps.wikimedia.org/enwiki/latest/</link>
    <description>enwiki dump updated</description>
    <item>
      <title>enwiki-latest-pages-articles-multistream-index.txt.bz2</title>
      <link>https://dumps.wikimedia.org/enwiki/{date}</link>
      <description>&lt;a href="https://dumps.wikimedia.org/enwiki/{date}/{index}"&gt;</description>
    </item>
  </channel>
</rss>
"""


def _meta(path: Path, url: str) -> dict:
    data = path.read_bytes()
    return {"size": len(data), "url": url, "md5": hashlib.md5(data).hexdigest(),
            "sha1": hashlib.sha1(data).hexdigest()}


def _serve(loopback, realdata: Path, tmp_path: Path, *, status: str = "done",  # type: ignore[no-untyped-def]
           bad_md5: bool = False) -> dict:
    dump, index = tmp_path / DUMP, tmp_path / INDEX
    build_multistream(realdata / EXCERPT, dump, index)
    files = {DUMP: _meta(dump, f"/enwiki/{DATE}/{DUMP}"),
             INDEX: _meta(index, f"/enwiki/{DATE}/{INDEX}")}
    if bad_md5:
        files[DUMP]["md5"] = "0" * 32
    manifest = {"jobs": {
        "articlesmultistreamdump": {"status": status, "updated": "2026-11-21 03:12:44",
                                    "files": files},
        "xmlstubsdump": {"status": "done", "files": {}}}, "version": "0.8"}
    loopback.serve(f"/enwiki/{DATE}/dumpstatus.json", json.dumps(manifest).encode(),
                   content_type="application/json")
    loopback.serve("/enwiki/latest/enwiki-latest-pages-articles-multistream-index.txt.bz2-rss.xml",
                   RSS.format(date=DATE, index=INDEX).encode(), content_type="application/rss+xml")
    loopback.serve(f"/enwiki/{DATE}/{DUMP}", dump.read_bytes())
    loopback.serve(f"/enwiki/{DATE}/{INDEX}", index.read_bytes())
    return manifest


def _run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_latest_dump_found_through_dumpstatus(loopback, realdata: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              cache_dir: Path, capsys) -> None:
    _serve(loopback, realdata, tmp_path)
    loopback.route(f"/enwiki/{DATE}/dumpstatus.json").fail_first = 1  # 503, Retry-After: 0
    loopback.route(f"/enwiki/{DATE}/dumpstatus.json").retry_after = "0"
    args = ["fetch", "wikipedia", "--cache-dir", str(cache_dir), "--wiki", "enwiki",
            "--base-url", loopback.base_url, "--name", "enwiki-sample", "--workers", "2"]
    rc, out, err = _run(capsys, *args)
    assert rc == 0, err
    path = Path(out.strip().splitlines()[-1])
    with h5py.File(path, "r") as f:
        assert len(f["meta/title"]) == 106
        sources = json.loads(f.attrs["sources"])
        config = json.loads(f.attrs["config"])
    assert {s["name"] for s in sources} == {f"enwiki/{DATE}/{DUMP}", f"enwiki/{DATE}/{INDEX}"}
    assert config["inputs"]["dump"] == f"enwiki/{DATE}"
    assert loopback.requests(f"/enwiki/{DATE}/dumpstatus.json") == 2
    for req in loopback.log:  # manifest, RSS and both downloads: the Wikimedia User-Agent
        agent = req.headers["User-Agent"]
        assert agent.startswith("dlprep/") and "python-requests/" in agent, req.path
    # cached: offline, the same dataset without any request
    before = loopback.requests()
    rc, out2, err = _run(capsys, *args[:2], "--offline", *args[2:])
    assert rc == 0, err
    assert out2.strip().splitlines()[-1] == str(path) and loopback.requests() == before


def test_checksum_mismatch_and_unfinished_job(loopback, realdata: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              cache_dir: Path, capsys) -> None:
    _serve(loopback, realdata, tmp_path, bad_md5=True)
    args = ["fetch", "wikipedia", "--cache-dir", str(cache_dir), "--wiki", "enwiki", "--date",
            DATE, "--base-url", loopback.base_url]
    rc, _, err = _run(capsys, *args)
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith(f"error: could not fetch {DUMP}: ")
    assert f"md5 mismatch for {DUMP}: expected {'0' * 32}" in last
    assert not list(cache_dir.glob(f"raw/**/{DUMP}")) and not list(cache_dir.glob("**/*.h5"))
    (tmp_path / "x").mkdir()
    _serve(loopback, realdata, tmp_path / "x", status="in-progress")
    rc, _, err = _run(capsys, *args, "--cache-dir", str(tmp_path / "c2"))
    assert rc == 1
    assert "the articlesmultistreamdump job is 'in-progress', not 'done'" in err


def test_dumpstatus_parsing_split_files_and_bad_bodies() -> None:
    files = {}
    for n, rng in ((2, "p41243p151573"), (1, "p1p41242")):
        files[f"enwiki-{DATE}-pages-articles-multistream{n}.xml-{rng}.bz2"] = {"size": 10}
        files[f"enwiki-{DATE}-pages-articles-multistream-index{n}.txt-{rng}.bz2"] = {"size": 1}
    body = json.dumps({"jobs": {"articlesmultistreamdump": {"status": "done", "files": files}}})
    ds = parse_dumpstatus(body.encode(), wiki="enwiki", date=DATE,
                          base_url="https://mirror.example/dumps/", where="x")
    assert [d.name for d in ds.dumps] == [
        f"enwiki-{DATE}-pages-articles-multistream1.xml-p1p41242.bz2",
        f"enwiki-{DATE}-pages-articles-multistream2.xml-p41243p151573.bz2"]
    assert ds.indexes[0].name == f"enwiki-{DATE}-pages-articles-multistream-index1.txt-p1p41242.bz2"
    assert ds.dumps[0].url == f"https://mirror.example/dumps/enwiki/{DATE}/{ds.dumps[0].name}"
    with pytest.raises(FormatError, match="not a dumpstatus.json manifest"):
        parse_dumpstatus(b"<!DOCTYPE html><html>", wiki="enwiki", date=DATE, base_url="", where="u")
    with pytest.raises(DlprepError, match="no articlesmultistreamdump job"):
        parse_dumpstatus(b'{"jobs": {}}', wiki="enwiki", date=DATE, base_url="", where="u")


def test_offline_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(DlprepError, match="offline: no dumpstatus.json of enwiki in the cache"):
        DumpsClient(tmp_path, offline=True).dump_set("enwiki", "latest")
