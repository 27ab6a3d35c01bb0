"""dlprep import-warc: the real WARC/ARC samples, damaged archives, charsets, language, dedupe."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import pytest
from conftest import invoke_cli
from webdata import http_response, page, warc_record, write_warc

from dlprep.errors import FormatError
from dlprep.formats.warc import ReadReport, read_records

pytest.importorskip("resiliparse")
pytest.importorskip("py3langid")

SAMPLES = ("example.warc", "example.warc.gz", "example.arc.gz", "example-iana.org-chunked.warc",
           "example-wget-1-14.warc.gz", "example-wpull.warc.gz", "example-resource.warc.gz",
           "post-test.warc.gz", "iana.warc.gz",
           "CC-MAIN-20250804083340-20250804113340-00340.offset667474763.warc.gz",
           "CC-MAIN-20250804145214-20250804175214-00905.robotstxt.offset71720.warc.gz")
EN = ("The quick brown fox jumps over the lazy dog near the river bank. " * 6).strip()
DE = ("Der schnelle braune Fuchs springt über den faulen Hund am Ufer des Flusses. " * 6).strip()


def _import(cache: Path, *args: str):  # type: ignore[no-untyped-def]
    return invoke_cli("import-warc", *args, cache_dir=cache)


def _meta(out: str) -> dict[str, list[str]]:
    with h5py.File(out.strip().splitlines()[-1]) as f:
        return {k: [v.decode() for v in f["meta"][k][:]] for k in f["meta"]}


def test_every_real_sample_is_read_with_checked_digests(realdata: Path) -> None:
    counts = {}
    for name in SAMPLES:
        report = ReadReport()
        records = list(read_records(realdata / "warc" / name, report))
        counts[name] = len(records)
        assert report.warnings(name) == [], name
        assert records and all(r.type for r in records)
    assert counts["example.warc"] == counts["example.warc.gz"] == 6
    assert counts["iana.warc.gz"] == 343
    assert counts["example.arc.gz"] == 1


def test_import_real_samples_gives_text_with_provenance(realdata: Path, cache_dir: Path) -> None:
    files = [str(realdata / "warc" / n) for n in SAMPLES]
    r = _import(cache_dir, *files, "--name", "webreal", "--dedupe", "none")
    assert r.returncode == 0, r.stderr
    meta = _meta(r.stdout)
    assert {"url", "timestamp", "warc_record_id", "language"} <= set(meta)
    urls = meta["url"]
    assert "https://www.commoncrawl.org/" in urls          # the real Common Crawl record
    assert "http://example.com/" in urls                    # from the ARC file too
    assert any(u.startswith("http://www.iana.org/") for u in urls)
    assert "http://commoncrawl.org" not in urls              # the 301 in the robotstxt sample
    assert all(t[:4].isdigit() and "T" in t for t in meta["timestamp"])
    assert all(i.startswith("<") for i in meta["warc_record_id"])
    assert set(meta["language"]) == {"en"}
    title = dict(zip(urls, meta["title"], strict=True))["https://www.commoncrawl.org/"]
    assert "Common Crawl" in title


def test_truncated_warc_keeps_complete_records_and_warns_once(realdata: Path, tmp_path: Path,
                                                              cache_dir: Path) -> None:
    data = (realdata / "warc" / "iana.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[:len(data) // 2])
    report = ReadReport()
    got = list(read_records(cut, report))
    full = list(read_records(realdata / "warc" / "iana.warc.gz"))
    assert report.truncated and 0 < len(got) < len(full)
    assert [r.record_id for r in got] == [r.record_id for r in full[:len(got)]]
    r = _import(cache_dir, str(cut), "--name", "cut")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "truncated" in line]
    assert len(warnings) == 1 and "cut.warc.gz" in warnings[0]
    assert len(_meta(r.stdout)["url"]) >= 1


@pytest.mark.parametrize("gz", [True, False])
def test_wrong_length_and_wrong_digest_skip_only_that_record(tmp_path: Path, gz: bool) -> None:
    good1 = warc_record("http://a.test/1", http_response(page("One", f"<p>{EN}</p>")))
    bad_len = warc_record("http://a.test/2", http_response(page("Two", f"<p>{EN} two</p>")),
                          declared=50)
    block = http_response(page("Three", f"<p>{EN} three</p>"))
    bad_digest = warc_record("http://a.test/3", block).replace(b"three", b"THREE")
    good2 = warc_record("http://a.test/4", http_response(page("Four", f"<p>{EN} four</p>")))
    path = write_warc(tmp_path / ("x.warc.gz" if gz else "x.warc"),
                      [good1, bad_len, bad_digest, good2], gz=gz)
    report = ReadReport()
    urls = [r.url for r in read_records(path, report)]
    assert urls == ["http://a.test/1", "http://a.test/4"]
    assert len(report.bad_length) == 1 and len(report.bad_digest) == 1
    lines = report.warnings(path.name)
    assert len(lines) == 2 and all(path.name in line for line in lines)


def test_not_a_warc_is_one_line_and_no_dataset(realdata: Path, tmp_path: Path,
                                               cache_dir: Path) -> None:
    bogus = realdata / "warc" / "collinfo.json"
    with pytest.raises(FormatError, match="not a WARC or ARC"):
        list(read_records(bogus))
    r = _import(cache_dir, str(bogus), "--name", "bogus")
    assert r.returncode != 0
    assert "not a WARC or ARC" in r.stderr and "collinfo" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not list((cache_dir / "prepared").rglob("*.h5"))
    gz = tmp_path / "random.warc.gz"
    gz.write_bytes(gzip.compress(b"hello, not a warc\n" * 10))
    r = _import(cache_dir, str(gz), "--name", "bogus2")
    assert r.returncode != 0 and "not a WARC or ARC" in r.stderr


def test_charsets_header_meta_and_detection(tmp_path: Path, cache_dir: Path) -> None:
    text = "Über die Straße gehen wir zum Café, während draußen Schnee fällt. " * 4
    latin = page("Café", f"<p>{text}</p>", "de").decode().encode("latin-1")
    meta_html = page("Café", f"<p>{text}</p>", "de").decode().replace(
        "<head>", "<head><meta charset='windows-1252'>").encode("cp1252")
    records = [
        # the header is wrong (utf-8) for latin-1 bytes: strict decoding fails -> detection
        warc_record("http://c.test/wrong", http_response(latin, "text/html; charset=utf-8")),
        # no header charset: the <meta> tag says windows-1252
        warc_record("http://c.test/meta", http_response(meta_html, "text/html")),
        # no charset anywhere: detected
        warc_record("http://c.test/none", http_response(latin, "text/html")),
        # a charset name nobody knows
        warc_record("http://c.test/bogus", http_response(latin, "text/html; charset=x-nope")),
    ]
    path = write_warc(tmp_path / "charsets.warc.gz", records)
    from dlprep.prepare.web import read_pages

    opts = {"keep_text": False, "language": None, "min_chars": 1, "max_page_bytes": 1 << 24}
    pages, _ = read_pages([("charsets", path)], opts)
    assert len(pages) == 4
    for p in pages:
        assert "Straße" in p.text and "Café" in p.text, (p.url, p.text[:80])
        assert p.language == "de"


def test_boilerplate_removed_and_titles_kept(tmp_path: Path) -> None:
    from dlprep.prepare.web import read_pages

    path = write_warc(tmp_path / "b.warc.gz", [
        warc_record("http://b.test/", http_response(page("Main Title", f"<p>{EN}</p>")))])
    opts = {"keep_text": False, "language": None, "min_chars": 1, "max_page_bytes": 1 << 24}
    (p,), _ = read_pages([("b", path)], opts)
    assert p.title == "Main Title" and "quick brown fox" in p.text
    assert "All rights reserved" not in p.text and "About us" not in p.text


def test_big_single_line_page_binary_as_html_and_plain_text(tmp_path: Path,
                                                            cache_dir: Path) -> None:
    big = ("<html><body><p>" + "word " * 2_000_000 + "</p></body></html>").encode()  # 10 MB
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    plain = (EN + "\n").encode()
    path = write_warc(tmp_path / "odd.warc.gz", [
        warc_record("http://o.test/big", http_response(big)),
        warc_record("http://o.test/png", http_response(png)),
        warc_record("http://o.test/plain", http_response(plain, "text/plain")),
        warc_record("http://o.test/redirect", http_response(b"", status="301 Moved")),
    ])
    r = _import(cache_dir, str(path), "--name", "odd", "--val-fraction", "0",
                "--test-fraction", "0")
    assert r.returncode == 0, r.stderr
    assert _meta(r.stdout)["url"] == ["http://o.test/big"]
    r = _import(cache_dir, str(path), "--name", "odd2", "--keep-text", "--val-fraction", "0",
                "--test-fraction", "0")
    assert r.returncode == 0, r.stderr
    assert sorted(_meta(r.stdout)["url"]) == ["http://o.test/big", "http://o.test/plain"]
    only_png = write_warc(tmp_path / "png.warc.gz", [
        warc_record("http://o.test/png", http_response(png))])
    r = _import(cache_dir, str(only_png), "--name", "png")
    assert r.returncode == 1
    assert "binary body" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (cache_dir / "prepared" / "png").is_dir() or not list(
        (cache_dir / "prepared" / "png").glob("*.h5"))


def test_language_filter_and_minhash_dedupe(tmp_path: Path, cache_dir: Path) -> None:
    long = " ".join(f"On day {i} the {w} walked to the market and bought {i + 2} apples."
                    for i, w in enumerate(["farmer", "baker", "teacher", "doctor"] * 15))
    near = long.replace("bought 61 apples", "bought 61 pears")  # one word of ~840
    path = write_warc(tmp_path / "lang.warc.gz", [
        warc_record("http://l.test/en1", http_response(page("A", f"<p>{long}</p>"))),
        warc_record("http://l.test/en2", http_response(page("A", f"<p>{near}</p>"))),
        warc_record("http://l.test/de", http_response(page("B", f"<p>{DE}</p>", "de"))),
        warc_record("http://l.test/en3", http_response(page("C", "<p>" + " ".join(
            f"Sentence number {i} talks about something else entirely." for i in range(20))
            + "</p>"))),
    ])
    common = ("--val-fraction", "0", "--test-fraction", "0")
    r = _import(cache_dir, str(path), "--name", "de", "--language", "de", *common)
    assert r.returncode == 0, r.stderr
    assert _meta(r.stdout)["url"] == ["http://l.test/de"]
    r = _import(cache_dir, str(path), "--name", "exact", "--dedupe", "exact", *common)
    assert len(_meta(r.stdout)["url"]) == 4
    r = _import(cache_dir, str(path), "--name", "mh", "--dedupe", "minhash", *common)
    assert r.returncode == 0, r.stderr
    assert sorted(_meta(r.stdout)["url"]) == ["http://l.test/de", "http://l.test/en1",
                                              "http://l.test/en3"]


def test_imported_pages_train_an_rnn(realdata: Path, cache_dir: Path) -> None:
    pytest.importorskip("torch")
    files = [str(realdata / "warc" / n) for n in ("iana.warc.gz", "example.arc.gz")]
    r = _import(cache_dir, *files, "--name", "webtrain")
    assert r.returncode == 0, r.stderr
    r = invoke_cli("train-baseline", "rnn", "webtrain", "--max-minutes", "2", "--max-batches",
                   "3", "--epochs", "1", "--threads", "1", "--device", "cpu",
                   cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    assert run_dir.is_dir() and any(run_dir.iterdir())


def test_import_by_url_over_loopback(realdata: Path, cache_dir: Path, loopback) -> None:  # type: ignore[no-untyped-def]
    loopback.serve("/crawl/example.warc.gz", (realdata / "warc" / "example.warc.gz").read_bytes())
    r = _import(cache_dir, loopback.url("/crawl/example.warc.gz"), "--name", "byurl",
                "--val-fraction", "0", "--test-fraction", "0")
    assert r.returncode == 0, r.stderr
    meta = _meta(r.stdout)
    assert meta["url"] == ["http://example.com/"]
    assert meta["file"] == [loopback.url("/crawl/example.warc.gz")]
    assert loopback.requests("/crawl/example.warc.gz") == 1


def test_gzip_bomb_member_stops_at_the_limits(tmp_path: Path, cache_dir: Path) -> None:
    from dlprep.errors import ExtractionError

    head = warc_record("http://z.test/", http_response(page("Z", f"<p>{EN}</p>")))
    bomb = tmp_path / "bomb.warc.gz"
    bomb.write_bytes(gzip.compress(head, mtime=0) + gzip.compress(
        b"WARC/1.0\r\nContent-Length: 90000000\r\n\r\n" + bytes(90_000_000), 9, mtime=0))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ExtractionError, match="ratio"):
        list(read_records(bomb))
    r = _import(cache_dir, str(bomb), "--name", "bomb")
    assert r.returncode == 1 and "decompression bomb" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
