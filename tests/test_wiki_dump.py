"""Wikipedia dumps: the real excerpts, streaming parse, multistream blocks, random access,
--workers, links, --template, bad input; all on real dump bytes."""

from __future__ import annotations

import bz2
import hashlib
import json
import sqlite3
from pathlib import Path

import h5py
import pytest

from dlprep.cli import main
from dlprep.formats import mediawiki as mw
from dlprep.formats.wikitext import clean_wikitext, template_fields, wikilinks
from dlprep.prepare.wiki_access import get_page
from dlprep.prepare.wiki_pages import Counts, DumpPart, PageOptions, iter_records
from dlprep.text.tokenizers import from_prepared

EXCERPT = "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLES = "wikipedia/enwiki-table-markup.xml.bz2"


def _run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def build_multistream(src: Path, dump: Path, index: Path, per_stream: int = 100) -> list[str]:
    """A multistream dump + index the way Wikimedia writes them, from the real pages of
    ``src`` (plain bz2, independent of dlprep's reader); returns the titles in order."""
    data = bz2.decompress(src.read_bytes())
    first = data.index(b"<page>")
    pages, pos = [], first
    while (start := data.find(b"<page>", pos)) >= 0:
        end = data.index(b"</page>", start) + len(b"</page>")
        pages.append(data[start:end])
        pos = end
    lines, titles = [], []
    with open(dump, "wb") as fh:
        fh.write(bz2.compress(data[:first]))
        for i in range(0, len(pages), per_stream):
            offset = fh.tell()
            for raw in pages[i:i + per_stream]:
                title = raw.split(b"<title>")[1].split(b"</title>")[0].decode()
                page_id = raw.split(b"<id>")[1].split(b"</id>")[0].decode()
                lines.append(f"{offset}:{page_id}:{title}\n")
                titles.append(title)
            fh.write(bz2.compress(b"  " + b"\n  ".join(pages[i:i + per_stream]) + b"\n"))
        fh.write(bz2.compress(b"</mediawiki>\n"))
    index.write_bytes(bz2.compress("".join(lines).encode()))
    return titles


@pytest.fixture
def multistream(realdata: Path, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    dump, index = tmp_path / "ms.xml.bz2", tmp_path / "ms-index.txt.bz2"
    titles = build_multistream(realdata / EXCERPT, dump, index, per_stream=40)
    return dump, index, titles


def _pages(path: Path) -> list[mw.Page]:
    report = mw.ReadReport()
    with mw.open_dump(path) as fh:
        pages = [mw.parse_page(r) for r in mw.iter_raw_pages(fh, str(path), report)]
    assert not report.truncated
    return pages


def test_real_excerpts_parse_and_clean(realdata: Path) -> None:
    pages = _pages(realdata / EXCERPT)
    assert len(pages) == 206
    assert [p.title for p in pages[:3]] == ["AccessibleComputing", "Anarchism",
                                           "AfghanistanHistory"]
    assert sum(p.redirect is not None for p in pages) == 100
    assert pages[0].redirect == "Computer accessibility"
    anarchism = pages[1]
    assert (anarchism.page_id, anarchism.ns) == (12, 0) and anarchism.revision_id > 0
    text = clean_wikitext(anarchism.text)
    assert text.startswith("Anarchism is a political philosophy that advocates self-governed "
                           "societies based on voluntary institutions.")
    assert "\nEtymology and terminology\n" in text  # a heading kept as a line
    assert "Etymology and terminology" not in clean_wikitext(anarchism.text, headings=False)
    tables = _pages(realdata / TABLES)  # no <siteinfo>, heavy table markup
    assert len(tables) == 5 and tables[0].title == "Constructive vote of no confidence"
    for page in pages + tables:
        if page.redirect is None and page.ns == 0:
            clean = clean_wikitext(page.text)
            for leftover in ("{{", "}}", "[[", "]]", "<ref", "{|", "<!--", "&lt;"):
                assert leftover not in clean, (page.title, leftover)


def test_cleaner_rules() -> None:
    wikitext = ("{{Infobox x|a={{b|c}}}}'''Bold''' [[Target|shown]] and [[plain]].<ref>cite "
                "{{x}}</ref> [[File:A.jpg|thumb|A [[nested]] caption]] [http://e.org Site]"
                "<!-- hidden -->\n{|\n| cell {{t}}\n|}\n== Head ==\n* item &amp; more\n"
                "[[Category:Things]] __NOTOC__ [[:Category:Shown]] {{unclosed")
    assert clean_wikitext(wikitext) == ("Bold shown and plain. Site\n\nHead\nitem & more\n"
                                        "Category:Shown {{unclosed")
    assert wikilinks(wikitext) == ["Target", "Plain", "Nested"]  # caption links count
    fields = template_fields("{{Infobox film | name = Star Wars | starring = {{Plainlist|\n"
                             "* [[Mark Hamill]]\n* [[Harrison Ford]]}}<ref>x</ref>\n"
                             "| released = {{Film date|1977|05|25}} }}", "infobox film")
    assert fields == {"name": "Star Wars", "starring": "Mark Hamill\nHarrison Ford",
                      "released": "1977, 05, 25"}


def test_fetch_excerpt_prepares_and_meta(realdata: Path, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", str(realdata / EXCERPT), "--name", "wiki-sample")
    assert rc == 0, err
    path = Path(out.strip().splitlines()[-1])
    assert path.parent == cache_dir / "prepared" / "wiki-sample"
    with h5py.File(path, "r") as f:
        titles = [t.decode() for t in f["meta/title"][()]]
        assert len(titles) == 106 and titles[0] == "Anarchism"  # redirects skipped
        assert "Wikipedia:Adding Wikipedia articles to Nupedia" not in titles
        assert f["meta/page_id"][0] == 12 and f["meta/revision_id"][0] > 0
        tok = from_prepared(list(f["vocab"][()]), f.attrs["tokenizer"])
        offsets = f["offsets"][()]
        first = tok.decode(f["tokens"][offsets[0]:offsets[1]])
    assert first.startswith("Anarchism is a political philosophy")
    assert not list(cache_dir.glob("prepared/**/*.pages"))  # the text spool is gone
    assert not list((realdata / "wikipedia").glob("*.sha256"))  # nothing written beside input


def test_workers_index_and_serial_are_identical(multistream, realdata: Path) -> None:  # type: ignore[no-untyped-def]
    dump, index, titles = multistream
    opts = PageOptions(links=True)

    def run(part: DumpPart, workers: int) -> tuple[list, Counts]:
        counts = Counts()
        return list(iter_records([part], opts, counts, workers=workers)), counts

    serial, c1 = run(DumpPart(realdata / EXCERPT), 1)
    blocks, c2 = run(DumpPart(dump, index), 1)
    stream, _ = run(DumpPart(dump), 1)
    assert len(serial) == 106 and c1.redirects == 100
    assert serial == blocks == stream  # on Dask workers: tests/test_scale.py
    assert (c2.pages, c2.kept, c2.redirects) == (206, 106, 100)


def test_shards_give_byte_identical_datasets(multistream, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """One shard (no index) or six (one per block): the same word vocabulary (counted per
    shard, summed) and tokens. Dask workers: tests/test_scale.py."""
    dump, index, _ = multistream
    results = []
    for name, given in (("whole", []), ("blocks", ["--index", str(index)])):
        rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                            "--dump", str(dump), *given, "--name", name, "--tokenizer", "word")
        assert rc == 0, err
        with h5py.File(out.strip().splitlines()[-1], "r") as f:
            results.append({k: f[k][()].tobytes() for k in ("tokens", "offsets")}
                           | {"titles": list(f["meta/title"][()]),
                              "vocab": list(f["vocab"][()])})
    assert results[0] == results[1]


def test_random_access_get(multistream, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    dump, index, titles = multistream
    pages = {p.title: p for p in _pages(dump)}
    for title in (titles[1], titles[45], titles[-1]):
        page, _ = get_page(title, dump, index, tmp_path, follow_redirects=False)
        assert page == pages[title]
    rc, out, err = _run(capsys, "wiki", "get", "Anarchism", "--cache-dir", str(tmp_path),
                        "--dump", str(dump), "--index", str(index))
    assert rc == 0, err
    assert out.startswith("Anarchism is a political philosophy")
    rc, out, err = _run(capsys, "wiki", "get", "anarchism", "--raw", "--cache-dir",
                        str(tmp_path), "--dump", str(dump), "--index", str(index))
    assert rc == 0 and out.rstrip("\n") == pages["Anarchism"].text
    rc, out, err = _run(capsys, "wiki", "get", "No Such Article", "--cache-dir", str(tmp_path),
                        "--dump", str(dump), "--index", str(index))
    assert rc == 1 and err.strip() == ("error: ms-index.txt.bz2: no page titled 'No Such "
                                       "Article' in the index")
    rc, out, err = _run(capsys, "wiki", "get", "AccessibleComputing", "--cache-dir",
                        str(tmp_path), "--dump", str(dump), "--index", str(index))
    assert rc == 1 and "no page titled 'Computer accessibility' in the index " \
        "('AccessibleComputing' redirects to it)" in err
    # the warm cache: every block decoded once (on Dask: tests/test_scale.py); pages come
    # back identical
    rc, out, err = _run(capsys, "wiki", "index", "--pages", "--cache-dir",
                        str(tmp_path / "warm"), "--dump", str(dump), "--index", str(index))
    assert rc == 0 and "206 pages of 6 blocks cached" in err
    db = next((tmp_path / "warm" / "wiki-index").glob("*.pages.sqlite"))
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM pages").fetchone()[0] == 206
    for title in titles[::17]:
        page, _ = get_page(title, dump, index, tmp_path / "warm", follow_redirects=False)
        assert page == pages[title]


def test_index_of_another_dump(multistream, realdata: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    dump, index, titles = multistream
    other = tmp_path / "other.xml.bz2"
    build_multistream(realdata / EXCERPT, other, tmp_path / "o.txt.bz2", per_stream=7)
    rc, _, err = _run(capsys, "wiki", "get", titles[45], "--cache-dir", str(tmp_path),
                      "--dump", str(dump), "--index", str(tmp_path / "o.txt.bz2"))
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "ms.xml.bz2 at byte" in err and "does the index belong to this dump?" in err


def test_template_subset_with_infobox(realdata: Path, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", str(realdata / EXCERPT), "--template", "Infobox country",
                        "--name", "countries")
    assert rc == 0, err
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        titles = [t.decode() for t in f["meta/title"][()]]
        boxes = [json.loads(b) for b in f["meta/infobox"][()]]
    assert sorted(titles) == ["Afghanistan", "Albania", "Algeria", "Andorra", "Angola", "Aruba",
                              "Azerbaijan"]
    by_title = dict(zip(titles, boxes, strict=True))
    assert by_title["Algeria"]["capital"] == "Algiers"
    assert by_title["Andorra"]["capital"] == "Andorra la Vella"
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", str(realdata / EXCERPT), "--template", "infobox_film",
                        "--name", "films")  # the cookbook's movie set
    assert rc == 0, err
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        assert [t.decode() for t in f["meta/title"][()]] == ["Actrius"]
        box = json.loads(f["meta/infobox"][0])
    assert box["director"] == "Ventura Pons" and box["starring"].startswith("Núria Espert, ")
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                      "--dump", str(realdata / EXCERPT), "--template", "Infobox spacecraft class")
    assert rc == 1 and "no page using template 'Infobox spacecraft class'" in err
    assert len(list((cache_dir / "prepared").glob("**/*.h5"))) == 2  # nothing for the failure


def test_links_parquet_resolves_redirects(multistream, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pq = pytest.importorskip("pyarrow.parquet")
    dump, index, _ = multistream
    out = tmp_path / "links.parquet"
    rc, stdout, err = _run(capsys, "wiki", "links", "--dump", str(dump), "--index", str(index),
                           "--out", str(out))
    assert rc == 0, err
    rows = pq.read_table(out).to_pylist()
    pairs = {(r["source"], r["target"]) for r in rows}
    assert ("Anarchism", "Political philosophy") in pairs
    # [[Argument form]] is a redirect page in the dump: resolved to its target
    assert ("Affirming the consequent", "Logical form") in pairs
    assert not any(t == "Argument form" for _, t in pairs)
    assert len(pairs) == len(rows)  # no repeated pair
    assert {r["target"] for r in rows if r["target_in_dump"]} >= {"Anarchism"}
    assert not list(tmp_path.glob(".links.parquet*"))


def test_truncated_dump_keeps_complete_pages(realdata: Path, tmp_path: Path, cache_dir: Path,
                                             capsys) -> None:  # type: ignore[no-untyped-def]
    data = (realdata / EXCERPT).read_bytes()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: len(data) // 2])
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", str(cut), "--name", "cut")
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if "ends early" in line]
    assert len(warnings) == 1 and "cut.xml.bz2" in warnings[0]
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        n = len(f["meta/title"])
    assert 10 < n < 106


def test_not_mediawiki_and_bad_options(realdata: Path, tmp_path: Path, cache_dir: Path,
                                       capsys) -> None:  # type: ignore[no-untyped-def]
    osm = realdata / "osm" / "West-Oakland.osm.bz2"
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                      "--dump", str(osm), "--name", "osm")
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "West-Oakland.osm.bz2 at byte 0: not a MediaWiki XML dump" in err
    assert not list((cache_dir / "prepared").glob("**/*.h5"))
    assert not list((cache_dir / "prepared").glob("**/*.pages"))
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir))
    assert rc == 1 and "choose a dump with --wiki" in err
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                      "--dump", str(tmp_path / "missing.bz2"))
    assert rc == 1 and "missing.bz2 does not exist" in err
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                      "--wiki", "en wiki")
    assert rc == 1 and "--wiki: 'en wiki' is not a wiki database name" in err
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                      "--wiki", "enwiki", "--date", "2024-01-01")
    assert rc == 1 and "--date: '2024-01-01' is not 'latest' or YYYYMMDD" in err


def test_two_dumps_given_as_repeated_option(realdata: Path, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", str(realdata / TABLES), "--dump", str(realdata / EXCERPT),
                        "--name", "two", "--headings", "false", "--max-pages", "7")
    assert rc == 0, err
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        titles = [t.decode() for t in f["meta/title"][()]]
    assert titles == [p.title for p in _pages(realdata / TABLES)] + ["Anarchism", "Autism"]
    rc, _, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                      "--dump", str(realdata / EXCERPT), "--template", "a", "--template", "b")
    assert rc == 1 and "--template: given more than once" in err


def test_a_broken_page_is_counted_not_fatal(realdata: Path, tmp_path: Path, cache_dir: Path,
                                            capsys) -> None:  # type: ignore[no-untyped-def]
    data = bz2.decompress((realdata / EXCERPT).read_bytes())
    at = data.index(b"<title>Autism</title>")
    broken = data[:at] + data[at:].replace(b"<ns>0</ns>", b"", 1)  # Autism loses its <ns>
    dump = tmp_path / "broken.xml.bz2"
    dump.write_bytes(bz2.compress(broken))
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", str(dump), "--name", "broken", "--max-pages", "3")
    assert rc == 0, err
    assert "1 page(s) could not be read and were skipped (Autism: page without <ns>)" in err
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        titles = [t.decode() for t in f["meta/title"][()]]
    assert "Autism" not in titles and titles[0] == "Anarchism" and len(titles) == 3


def test_dump_given_as_url(loopback, realdata: Path, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    loopback.serve("/dumps/excerpt.xml.bz2", (realdata / EXCERPT).read_bytes())
    url = loopback.url("/dumps/excerpt.xml.bz2")
    rc, out, err = _run(capsys, "fetch", "wikipedia", "--cache-dir", str(cache_dir),
                        "--dump", url, "--max-pages", "2", "--name", "from-url")
    assert rc == 0, err
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        assert [t.decode() for t in f["meta/title"][()]] == ["Anarchism", "Autism"]
        sources = json.loads(f.attrs["sources"])
    assert sources == [{"name": "given/excerpt.xml.bz2", "url": url,
                        "sha256": hashlib.sha256((realdata / EXCERPT).read_bytes()).hexdigest()}]
    agent = loopback.log[0].headers["User-Agent"]
    assert agent.startswith("dlprep/") and "python-requests/" in agent
