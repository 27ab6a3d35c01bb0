"""Gutenberg connector: catalog parsing/search (real column layout), file layouts, the 2 s rate
limit (fake clock, no sleeping), robots.txt, daily catalog refresh, and `dlprep fetch
gutenberg` end to end over a loopback server serving real ebooks."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from pathlib import Path

import h5py
import pytest

from dlprep.cli import main
from dlprep.errors import FetchError, FormatError, OfflineError
from dlprep.fetch.options import FetchOptions
from dlprep.sources.gutenberg import (
    CATALOG_COLUMNS,
    CATALOG_PATH,
    GutenbergClient,
    RateLimiter,
    RobotsPolicy,
    is_gutenberg_host,
    main_site_path,
    mirror_tree_dir,
    mirror_tree_paths,
    parse_ids,
    read_book,
    read_catalog,
    search_catalog,
)
from dlprep.text.clean import clean_text, strip_gutenberg
from dlprep.text.tokenizers import from_prepared

# Rows in the layout of the real pg_catalog.csv (quoted multi-line titles, "; " lists).
CATALOG_ROWS = [
    ["11", "Text", "2008-06-27", "Alice's Adventures in Wonderland", "en",
     "Carroll, Lewis, 1832-1898", "Fantasy fiction; Children's stories", "PR",
     "Category: Novels; Children's Literature"],
    ["100", "Text", "1994-01-01", "The Complete Works of William Shakespeare", "en",
     "Shakespeare, William, 1564-1616", "English drama -- Early modern and Elizabethan, 1500-1600",
     "PR", "Category: Plays/Films/Dramas"],
    ["1342", "Text", "1998-06-01", "Pride and Prejudice", "en", "Austen, Jane, 1775-1817",
     "Courtship -- Fiction; England -- Fiction", "PR", "Best Books Ever Listings"],
    ["4363", "Text", "2003-08-01", "Beyond Good and Evil", "en",
     "Nietzsche, Friedrich Wilhelm, 1844-1900; Zimmern, Helen, 1846-1934 [Translator]",
     "Philosophy, German", "B", "Philosophy"],
    ["7205", "Text", "2005-01-01", "Also sprach Zarathustra:\nEin Buch für Alle und Keinen",
     "de", "Nietzsche, Friedrich Wilhelm, 1844-1900", "Philosophy, German", "B", ""],
    ["19033", "Sound", "2006-08-01", "Beyond Good and Evil (audio)", "en",
     "Nietzsche, Friedrich Wilhelm, 1844-1900", "", "", ""],
    ["52190", "Text", "2016-05-30", "Thus Spake Zarathustra", "en; de",
     "Nietzsche, Friedrich Wilhelm, 1844-1900", "Philosophy, German; Superman (Philosophical "
     "concept)", "B", "Philosophy"],
]


def catalog_gz(rows: list[list[str]] = CATALOG_ROWS) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CATALOG_COLUMNS)
    writer.writerows(rows)
    return gzip.compress(buf.getvalue().encode("utf-8"))


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or ``tick`` is called)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingLimiter(RateLimiter):
    """The real limiter, remembering the (fake) time each request was let through."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(2.0, clock=clock, sleep=clock.sleep)
        self.sent: list[float] = []

    def wait(self) -> None:
        super().wait()
        self.sent.append(self.last)  # type: ignore[arg-type]


def test_layouts_and_hosts() -> None:
    assert main_site_path(100) == "cache/epub/100/pg100.txt"
    assert mirror_tree_dir(15453) == "1/5/4/5/15453" and mirror_tree_dir(1) == "0/1"
    assert mirror_tree_dir(12) == "1/12"
    assert mirror_tree_paths(15453) == ["1/5/4/5/15453/15453-0.txt", "1/5/4/5/15453/15453.txt",
                                        "1/5/4/5/15453/15453-8.txt"]
    assert is_gutenberg_host("https://www.gutenberg.org/cache/epub/1/pg1.txt")
    assert is_gutenberg_host("http://aleph.gutenberg.org/1/1.txt")
    assert is_gutenberg_host("https://gutenberg.pglaf.org/x")
    assert not is_gutenberg_host("http://127.0.0.1:8000/cache/epub/1/pg1.txt")
    assert not is_gutenberg_host("https://notgutenberg.org.evil.com/")
    assert parse_ids("100, 1342,100") == [100, 1342]
    with pytest.raises(Exception, match="--ids"):
        parse_ids("100,abc")


def test_catalog_parse_and_search(tmp_path: Path) -> None:
    path = tmp_path / "pg_catalog.csv.gz"
    path.write_bytes(catalog_gz())
    entries = read_catalog(path)
    assert len(entries) == 7
    zara = next(e for e in entries if e.id == 7205)
    assert zara.title == "Also sprach Zarathustra: Ein Buch für Alle und Keinen"
    assert zara.language == ("de",)
    ids = lambda found: [e.id for e in found]  # noqa: E731
    assert ids(search_catalog(entries, author="nietzsche")) == [4363, 7205, 52190]  # no Sound
    assert ids(search_catalog(entries, author="Nietzsche", language="en")) == [4363, 52190]
    assert ids(search_catalog(entries, author="Nietzsche", language="de")) == [7205, 52190]
    assert ids(search_catalog(entries, author="nietzsche", limit=2)) == [4363, 7205]
    assert ids(search_catalog(entries, title="pride")) == [1342]
    assert ids(search_catalog(entries, subject="children's literature")) == [11]  # bookshelf
    assert ids(search_catalog(entries, subject="courtship")) == [1342]
    assert ids(search_catalog(entries, ids=[100, 11, 999])) == [11, 100]
    assert ids(search_catalog(entries, author="nietzsche", types=())) == [4363, 7205, 19033,
                                                                         52190]


def test_catalog_format_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Text#,Type,Title\n1,Text,x\n")
    with pytest.raises(FormatError, match="lacks column.*Issued"):
        read_catalog(bad)
    bad.write_bytes(gzip.compress((",".join(CATALOG_COLUMNS) + "\nabc,Text,,,,,,,\n").encode()))
    with pytest.raises(FormatError, match="Text# 'abc' is not a number"):
        read_catalog(bad)
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FormatError, match="corrupt gzip"):
        read_catalog(bad)


def test_rate_limiter_with_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    limiter.wait()  # first request: no wait
    limiter.wait()  # immediately again: waits the full 2 s
    clock.now += 0.5
    limiter.wait()  # 0.5 s later: waits 1.5 s
    clock.now += 3.0
    limiter.wait()  # 3 s later: no wait
    assert clock.sleeps == [2.0, 1.5]


def test_robots_txt_disallow_crawl_delay_and_errors() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    robots_txt = "User-agent: *\nDisallow: /ebooks/search\nDisallow: /cache/epub/666/\n" \
                 "Crawl-delay: 5\n"
    asked: list[str] = []

    def get(url: str) -> tuple[int, str]:
        asked.append(url)
        return (200, robots_txt) if "www" in url else (403, "")

    policy = RobotsPolicy("dlprep/test", limiter, get=get)
    assert policy.allowed("https://www.gutenberg.org/cache/epub/100/pg100.txt")
    assert not policy.allowed("https://www.gutenberg.org/cache/epub/666/pg666.txt")
    assert not policy.allowed("https://www.gutenberg.org/ebooks/search?query=x")
    assert limiter.interval == 5.0  # Crawl-delay raises the 2 s minimum
    assert not policy.allowed("https://gutenberg.pglaf.org/1/0/100/100.txt")  # 403: all denied
    assert asked == ["https://www.gutenberg.org/robots.txt", "https://gutenberg.pglaf.org/robots.txt"]


def _serve_site(loopback, realdata: Path) -> None:  # type: ignore[no-untyped-def]
    loopback.serve("/robots.txt", b"User-agent: *\nDisallow: /cache/epub/666/\n",
                   content_type="text/plain")
    loopback.serve("/" + CATALOG_PATH, catalog_gz(), content_type="application/gzip")
    loopback.serve("/cache/epub/11/pg11.txt", realdata / "gutenberg/11-0.txt",
                   content_type="text/plain; charset=utf-8")
    loopback.serve("/cache/epub/1342/pg1342.txt", realdata / "gutenberg/pg1342.txt",
                   content_type="text/plain; charset=utf-8")


def test_client_rate_limits_every_request_to_gutenberg_hosts(loopback, realdata: Path,
                                                              tmp_path: Path) -> None:
    _serve_site(loopback, realdata)
    clock = FakeClock()
    limiter = RecordingLimiter(clock)
    client = GutenbergClient(tmp_path / "raw", base_url=loopback.base_url, limiter=limiter,
                             polite=lambda url: True)  # treat the loopback as gutenberg.org
    catalog = client.fetch_catalog()
    alice = client.fetch_book(11)
    pride = client.fetch_book(1342)
    with pytest.raises(FetchError, match="disallowed by robots.txt"):
        client.fetch_book(666)
    assert loopback.requests("/cache/epub/666/pg666.txt") == 0
    assert alice.read_bytes() == (realdata / "gutenberg/11-0.txt").read_bytes()
    assert pride.name == "pg1342.txt" and catalog.name == "pg_catalog.csv.gz"
    # robots.txt + catalog + 2 books: each request went through the limiter, >= 2 s apart
    assert loopback.requests() == 4 == len(limiter.sent)
    gaps = [b - a for a, b in zip(limiter.sent, limiter.sent[1:], strict=False)]
    assert gaps and all(g >= 2.0 for g in gaps)
    assert clock.sleeps == [2.0, 2.0, 2.0]
    # cached: no more requests, no more waiting
    assert client.fetch_book(11) == alice
    assert loopback.requests() == 4 and len(limiter.sent) == 4


def test_mirror_is_not_throttled_and_mirror_tree_fallback(loopback, realdata: Path,
                                                          tmp_path: Path) -> None:
    loopback.serve("/1/11/11-0.txt", realdata / "gutenberg/11-0.txt")
    latin1 = "\ufeff*** START OF THE PROJECT GUTENBERG EBOOK X ***\nCaf\u00e9 cr\u00e8me\n" \
             "*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
    loopback.serve("/1/2/123/123-8.txt", latin1.replace("\ufeff", "").encode("latin-1"))
    clock = FakeClock()
    limiter = RecordingLimiter(clock)
    client = GutenbergClient(tmp_path / "raw", FetchOptions(mirrors=(loopback.base_url,)),
                             base_url="", limiter=limiter)
    alice = client.fetch_book(11)
    assert alice.name == "11-0.txt" and alice.parent.name == "11"
    assert loopback.requests("/cache/epub/11/pg11.txt") == 1  # main layout tried first (404)
    book = client.fetch_book(123)
    assert strip_gutenberg(read_book(book)).body == "Caf\u00e9 cr\u00e8me"
    assert limiter.sent == [] and clock.sleeps == []  # a user mirror is not a gutenberg host
    with pytest.raises(FetchError, match="Gutenberg book 999"):
        client.fetch_book(999)


def test_catalog_refreshed_at_most_daily(loopback, tmp_path: Path) -> None:
    loopback.serve("/" + CATALOG_PATH, catalog_gz())
    day = [dt.date(2026, 11, 27)]
    client = GutenbergClient(tmp_path / "raw", base_url=loopback.base_url, today=lambda: day[0])
    first = client.fetch_catalog()
    assert client.fetch_catalog() == first and loopback.requests() == 1
    day[0] = dt.date(2026, 11, 28)
    loopback.serve("/" + CATALOG_PATH, catalog_gz(CATALOG_ROWS[:2]))
    second = client.fetch_catalog()
    assert second != first and loopback.requests() == 2 and len(read_catalog(second)) == 2
    day[0] = dt.date(2026, 11, 29)
    offline = GutenbergClient(tmp_path / "raw", FetchOptions(offline=True),
                              base_url=loopback.base_url, today=lambda: day[0])
    assert offline.fetch_catalog() == second and loopback.requests() == 2
    loopback.route("/" + CATALOG_PATH).fail_first = 100
    loopback.route("/" + CATALOG_PATH).fail_status = 404
    assert client.fetch_catalog() == second  # refresh failed: yesterday's copy is used
    with pytest.raises(OfflineError, match="catalog is not in the cache"):
        GutenbergClient(tmp_path / "empty", FetchOptions(offline=True)).fetch_catalog()


def _fetch(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_fetch_gutenberg_by_author_end_to_end(loopback, realdata: Path, cache_dir: Path,
                                              capsys) -> None:  # type: ignore[no-untyped-def]
    _serve_site(loopback, realdata)
    rc, out, err = _fetch(capsys, "fetch", "gutenberg", "--cache-dir", str(cache_dir),
                          "--mirror", loopback.base_url, "--base-url", "", "--author", "austen",
                          "--language", "en", "--name", "austen", "--tokenizer", "word")
    assert rc == 0, err
    path = Path(out.strip().splitlines()[-1])
    assert path.parent == cache_dir / "prepared" / "austen"
    with h5py.File(path, "r") as f:
        assert f.attrs["kind"] == "sequence" and f.attrs["recipe"] == "austen"
        assert list(f["meta/id"][()]) == [1342]
        assert f["meta/title"][0].decode() == "Pride and Prejudice"
        assert f["meta/author"][0].decode() == "Jane Austen"
        assert "Project Gutenberg License" in f["meta/license"][0].decode()
        config = json.loads(f.attrs["config"])
        assert config["inputs"]["gutenberg_ids"] == [1342]
        sources = json.loads(f.attrs["sources"])
        assert sources[0]["name"] == "books/1342/pg1342.txt"
        tok = from_prepared(list(f["vocab"][()]), f.attrs["tokenizer"])
        text = tok.decode(f["tokens"][()])
    body = strip_gutenberg((realdata / "gutenberg/pg1342.txt").read_text("utf-8")).body
    assert text == clean_text(body)  # one book, one document: decodes to the exact body
    before = loopback.requests()
    rc, out2, _ = _fetch(capsys, "fetch", "gutenberg", "--cache-dir", str(cache_dir), "--offline",
                         "--ids", "1342", "--tokenizer", "word", "--name", "austen")
    assert rc == 0 and loopback.requests() == before  # cached book, offline: same bytes
    assert Path(out2.strip().splitlines()[-1]) != path  # other options (no search) -> new hash


def test_fetch_gutenberg_errors(loopback, realdata: Path, cache_dir: Path,
                                capsys) -> None:  # type: ignore[no-untyped-def]
    _serve_site(loopback, realdata)
    common = ["fetch", "gutenberg", "--cache-dir", str(cache_dir), "--mirror", loopback.base_url,
              "--base-url", ""]
    rc, _, err = _fetch(capsys, *common)
    assert rc == 1 and "choose books with --ids" in err
    rc, _, err = _fetch(capsys, *common, "--author", "Nobody Atall")
    assert rc == 1 and "no Project Gutenberg text matches --author 'Nobody Atall'" in err
    rc, _, err = _fetch(capsys, "fetch", "gutenberg", "--cache-dir", str(cache_dir), "--offline",
                        "--ids", "77")
    assert rc == 1 and err.startswith("error: offline: Gutenberg book 77 is not in the cache")


def test_nietzsche_falls_back_to_gutenberg_politely(loopback, cache_dir: Path,
                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The real nietzsche recipe with its two URLs moved to the loopback server: the keras
    copy is gone (404), so the PG copy is fetched after robots.txt, through the rate limit."""
    import dataclasses

    from dlprep.cache import Cache
    from dlprep.fetch.download import FileSpec
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe
    from dlprep.sources import gutenberg

    clock = FakeClock()
    limiter = gutenberg.default_limiter()
    monkeypatch.setattr(limiter, "clock", clock)
    monkeypatch.setattr(limiter, "sleep", clock.sleep)
    monkeypatch.setattr(limiter, "last", None)
    monkeypatch.setattr(gutenberg, "_DEFAULT_ROBOTS", None)
    monkeypatch.setattr(gutenberg, "GUTENBERG_DOMAINS", ("127.0.0.1",))  # loopback = PG host
    body = "PREFACE\n\nSUPPOSING that Truth is a woman--what then?\n\nAPHORISM 1."
    loopback.serve("/robots.txt", b"User-agent: *\nDisallow: /ebooks/\n")
    loopback.serve("/cache/epub/4363/pg4363.txt",
                   ("\ufeffThe Project Gutenberg eBook of Beyond Good and Evil\r\n\r\nTitle: "
                    "Beyond Good and Evil\r\n\r\nAuthor: Friedrich Nietzsche\r\n\r\n*** START OF "
                    "THE PROJECT GUTENBERG EBOOK BEYOND GOOD AND EVIL ***\r\n\r\nProduced by John "
                    "Mamoun, Charles Franks and the Online Distributed Proofreading Team\r\n\r\n"
                    + body.replace("\n", "\r\n") + "\r\n\r\n*** END OF THE PROJECT GUTENBERG "
                    "EBOOK BEYOND GOOD AND EVIL ***\r\nlicence...\r\n").encode("utf-8"))
    recipe = find_recipe("nietzsche")
    urls = [f"http://localhost:{loopback.port}/text-datasets/nietzsche.txt",  # "S3"
            loopback.url("/cache/epub/4363/pg4363.txt")]  # 127.0.0.1: "gutenberg.org"
    recipe = dataclasses.replace(recipe, files=[FileSpec(name="nietzsche.txt", urls=urls)])
    path = prepare(recipe, Cache.open(cache_dir), options={"chunk_chars": 0})
    with h5py.File(path, "r") as f:
        text = from_prepared(list(f["vocab"][()]), f.attrs["tokenizer"]).decode(f["tokens"][()])
        assert f["meta/author"][0].decode() == "Friedrich Nietzsche"
    assert text == body
    assert [e.path for e in loopback.log] == ["/text-datasets/nietzsche.txt", "/robots.txt",
                                              "/cache/epub/4363/pg4363.txt"]
    assert clock.sleeps == [2.0]  # robots.txt, then the book 2 s later


def test_book_download_resumes_after_a_cut(loopback, realdata: Path, tmp_path: Path) -> None:
    from dlprep.fetch.http import RetryPolicy

    book = (realdata / "gutenberg/pg1342.txt").read_bytes()
    loopback.serve("/cache/epub/1342/pg1342.txt", book, cut_after=300_000)
    clock = FakeClock()
    retry = RetryPolicy(sleep=clock.sleep, clock=clock)
    client = GutenbergClient(tmp_path / "raw", FetchOptions(mirrors=(loopback.base_url,),
                                                            retry=retry), base_url="")
    path = client.fetch_book(1342)
    assert path.read_bytes() == book and not list(path.parent.glob("*.part"))
    assert loopback.requests("/cache/epub/1342/pg1342.txt") == 2
    assert loopback.requests_for("/cache/epub/1342/pg1342.txt")[1].headers["Range"] == \
        "bytes=300000-"
    assert loopback.bytes_sent() <= len(book) * 1.1


def test_fetch_from_a_local_mirror_tree_offline(realdata: Path, tmp_path: Path, cache_dir: Path,
                                                capsys) -> None:  # type: ignore[no-untyped-def]
    """An rsync'ed mirror (aleph.gutenberg.org::gutenberg layout) passed as --mirror DIR."""
    tree = tmp_path / "mirror"
    (tree / "1" / "11").mkdir(parents=True)
    (tree / "1" / "11" / "11-0.txt").write_bytes((realdata / "gutenberg/11-0.txt").read_bytes())
    rc, out, err = _fetch(capsys, "--offline", "fetch", "gutenberg", "--cache-dir",
                          str(cache_dir), "--mirror", str(tree), "--ids", "11", "--name", "alice")
    assert rc == 0, err
    with h5py.File(Path(out.strip().splitlines()[-1]), "r") as f:
        assert list(f["meta/id"][()]) == [11]
        assert f["meta/title"][0].decode() == "Alice\u2019s Adventures in Wonderland"
    assert (cache_dir / "raw/gutenberg/books/11/11-0.txt").is_file()


def test_fetch_gutenberg_from_a_flat_mirror_folder(realdata: Path, cache_dir: Path, tmp_path: Path,
                                                   capsys) -> None:  # type: ignore[no-untyped-def]
    """--mirror DIR with the files side by side (DIR/<file name>, the rule for every dataset),
    not only the Gutenberg site or mirror tree."""
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "pg1342.txt").write_bytes((realdata / "gutenberg/pg1342.txt").read_bytes())
    (flat / "pg_catalog.csv.gz").write_bytes(catalog_gz())
    rc, out, err = _fetch(capsys, "--offline", "fetch", "gutenberg", "--cache-dir",
                          str(cache_dir), "--mirror", str(flat), "--author", "austen",
                          "--language", "en", "--name", "austen")
    assert rc == 0, err
    with h5py.File(Path(out.strip().splitlines()[-1]), "r") as f:
        assert list(f["meta/id"][()]) == [1342]
        assert json.loads(f.attrs["sources"])[0]["name"] == "books/1342/pg1342.txt"
    cached = cache_dir / "raw" / "gutenberg" / "books" / "1342" / "pg1342.txt"
    assert cached.read_bytes() == (flat / "pg1342.txt").read_bytes()
