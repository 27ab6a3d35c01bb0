"""dlprep crawl against a loopback site: robots.txt, Crawl-delay, redirects, non-HTML."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import pytest
from conftest import invoke_cli

from dlprep.formats.warc import read_records
from dlprep.sources.crawler import Crawler, crawl_delay, normalize_url

pytest.importorskip("warcio")
pytest.importorskip("resiliparse")

TEXT = " ".join(f"Paragraph {i} of the page tells a small story about gardens." for i in range(12))


def _html(title: str, links: list[str]) -> bytes:
    a = "".join(f"<a href='{h}'>link {i}</a> " for i, h in enumerate(links))
    return (f"<html><head><title>{title}</title></head><body><nav>{a}</nav><main><h1>{title}"
            f"</h1><p>{title}: {TEXT}</p></main></body></html>").encode()


class Site:
    """A small site: path -> (status, headers, body); logs (arrival time, path, headers)."""

    def __init__(self, robots: str) -> None:
        self.pages: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/robots.txt": (200, {"Content-Type": "text/plain"}, robots.encode()),
            "/": (200, {"Content-Type": "text/html; charset=utf-8"}, _html("Home", [
                "/a", "b", "/private/secret", "/loop1", "/file.pdf", "/redir",
                "http://other.invalid/", "/a#section", "/./a", "mailto:x@y.z"])),
            "/a": (200, {"Content-Type": "text/html"}, _html("Alpha", ["/", "/c"])),
            "/b": (200, {"Content-Type": "text/html"}, _html("Beta", [])),
            "/c": (200, {"Content-Type": "text/html"}, _html("Gamma", ["/d"])),
            "/d": (200, {"Content-Type": "text/html"}, _html("Delta", [])),
            "/private/secret": (200, {"Content-Type": "text/html"}, _html("Secret", [])),
            "/loop1": (302, {"Location": "/loop2"}, b""),
            "/loop2": (302, {"Location": "/loop1"}, b""),
            "/redir": (301, {"Location": "/b"}, b""),
            "/file.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4 " + b"x" * 5000),
        }
        self.log: list[tuple[float, str, dict[str, str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.log.append((time.monotonic(), self.path, dict(self.headers.items())))
                status, headers, body = site.pages.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():  # type: ignore[no-untyped-def]
    s = Site("User-agent: *\nDisallow: /private/\nCrawl-delay: 0.2\n")
    yield s
    s.close()


def test_normalize_url() -> None:
    assert normalize_url("HTTP://Example.COM:80") == "http://example.com/"
    assert normalize_url("/a/./b/../c#frag", "https://x.org:443/z/") == "https://x.org/a/c"
    assert normalize_url("dir/", "http://x.org/a/b") == "http://x.org/a/dir/"
    assert normalize_url("mailto:a@b.c") is None and normalize_url("javascript:void(0)") is None


def test_crawl_delay_fractions_and_agent_groups() -> None:
    robots = ("User-agent: *\nCrawl-delay: 0.5\n\nUser-agent: dlprep-crawler\n"
              "User-agent: other\nCrawl-delay: 3 # slow\n")
    assert crawl_delay(robots, "dlprep-crawler") == 3.0
    assert crawl_delay(robots, "somebot") == 0.5
    assert crawl_delay("User-agent: *\nDisallow: /x\n", "dlprep-crawler") is None


def test_crawl_loopback_site(site: Site, tmp_path: Path, cache_dir: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(f"# my site\n{site.base}/\n")
    r = invoke_cli("crawl", "--seeds", str(seeds), "--name", "mysite", "--same-domain",
                   "--depth", "2", "--delay", "0", "--val-fraction", "0", "--test-fraction",
                   "0.25", cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    paths = [p for _, p, _ in site.log]
    # robots.txt first; breadth first in link order; each URL once; the disallowed, the
    # external and the non-http links never requested; the loop stopped after one round
    assert paths == ["/robots.txt", "/", "/a", "/b", "/loop1", "/loop2", "/file.pdf",
                     "/redir", "/c"]                          # /redir -> /b: not fetched again
    assert "/d" not in paths                                 # depth 3
    times = [t for t, _, _ in site.log]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 0.2 for g in gaps)                       # Crawl-delay: 0.2 (lower bound)
    assert all(h["User-Agent"].startswith("dlprep-crawler/") for _, _, h in site.log)
    warcs = list((cache_dir / "raw" / "crawl").glob("mysite-*.warc.gz"))
    assert len(warcs) == 1
    recs = [x for x in read_records(warcs[0]) if x.type == "response"]
    urls = [x.url for x in recs]
    assert urls == [f"{site.base}{p}" for p in ("/", "/a", "/b", "/loop1", "/loop2", "/redir",
                                                "/c")]
    with h5py.File(r.stdout.strip().splitlines()[-1]) as f:
        got = sorted(v.decode() for v in f["meta/url"][:])
    assert got == sorted(f"{site.base}{p}" for p in ("/", "/a", "/b", "/c"))
    pytest.importorskip("torch")
    t = invoke_cli("train-baseline", "rnn", "mysite", "--max-minutes", "2", "--max-batches", "2",
                   "--epochs", "1", "--threads", "1", "--device", "cpu", cache_dir=cache_dir)
    assert t.returncode == 0, t.stderr
    # the WARC re-imports on its own
    again = invoke_cli("import-warc", str(warcs[0]), "--name", "again", cache_dir=cache_dir)
    assert again.returncode == 0, again.stderr


def test_robots_disallowing_everything_is_one_line(tmp_path: Path, cache_dir: Path) -> None:
    s = Site("User-agent: *\nDisallow: /\n")
    try:
        seeds = tmp_path / "seeds.txt"
        seeds.write_text(site_url := f"{s.base}/\n")
        r = invoke_cli("crawl", "--seeds", str(seeds), "--name", "none", "--delay", "0",
                       cache_dir=cache_dir)
        assert r.returncode == 1
        assert "disallowed by robots.txt" in r.stderr and site_url.strip() in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert [p for _, p, _ in s.log] == ["/robots.txt"]
        assert not list((cache_dir / "raw" / "crawl").glob("*.warc.gz"))
        assert not list(cache_dir.rglob("*.h5"))
    finally:
        s.close()


def test_crawl_delay_spacing_with_a_fake_clock(site: Site) -> None:
    import io

    from warcio.warcwriter import WARCWriter

    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    crawler = Crawler(max_pages=3, depth=1, delay=0.05, clock=lambda: now[0], sleep=sleep)
    result = crawler.crawl([site.base + "/"], WARCWriter(io.BytesIO(), gzip=True))
    assert result.pages == 3
    times = [t for t, _ in result.requests]
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [0.2] * (len(times) - 1)
