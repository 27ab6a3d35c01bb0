"""MediaWiki XML export dumps: streaming page reader, multistream blocks and their index.

A dump is ``<mediawiki xmlns=".../export-0.N/">`` with ``<siteinfo>`` then ``<page>`` elements
(``title``, ``ns``, ``id``, optional ``<redirect title=.../>``, one ``<revision>`` with ``id``
and ``<text>``). Pages are cut from the decompressed byte stream at ``</page>`` and their few
fields read with compiled regexes -- the export format is machine-written and flat, so no
general XML parser is needed, and a page fragment (one multistream block) parses the same way as
a whole file. Memory is one read chunk plus the page being cut, whatever the dump's size.

``pages-articles-multistream.xml.bz2`` is a concatenation of independent bz2 streams of 100
pages each; ``...-multistream-index.txt.bz2`` has one line ``offset:page_id:title`` per page,
``offset`` being the byte where that page's stream starts. :func:`read_block` decodes a single
stream, so a page can be read without a scan and blocks can be parsed in parallel.
"""

from __future__ import annotations

import bz2
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import FormatError
from ..magic import file_compression

log = logging.getLogger("dlprep")

READ_CHUNK = 1 << 20
MAX_PAGE_BYTES = 256 << 20  # one page's XML; a larger one is reported as an error and skipped
_HEAD_BYTES = 1 << 16

_PAGE_START = b"<page>"
_PAGE_END = b"</page>"
TITLE = re.compile(rb"<title>(.*?)</title>", re.S)
_NS = re.compile(rb"<ns>\s*(-?\d+)\s*</ns>")
_ID = re.compile(rb"<id>\s*(\d+)\s*</id>")
_REDIRECT = re.compile(rb"<redirect\s+title=\"(.*?)\"\s*/?>", re.S)
_REVISION = re.compile(rb"<revision>\s*<id>\s*(\d+)\s*</id>")
_TEXT = re.compile(rb"<text\b[^>]*?(?:/>|>(.*?)</text>)", re.S)
_NUMERIC = re.compile(r"&#(x[0-9a-fA-F]+|\d+);")
_ROOT = re.compile(rb"<mediawiki\b[^>]*>")
_XMLNS = re.compile(rb"xmlns=\"(http://www\.mediawiki\.org/xml/export-[0-9.]+/)\"")


@dataclass(frozen=True)
class Page:
    """One ``<page>`` of a dump. ``redirect`` is the target title of a redirect page."""

    title: str
    ns: int
    page_id: int
    revision_id: int
    text: str
    redirect: str | None = None


def _numeric(m: re.Match[str]) -> str:
    ref = m.group(1)
    try:
        return chr(int(ref[1:], 16) if ref[0] == "x" else int(ref))
    except (ValueError, OverflowError):
        return m.group()


def unescape_xml(text: str) -> str:
    """Decode the XML escapes a dump uses (``&lt; &gt; &quot; &apos; &amp;`` and ``&#N;``)."""
    if "&" not in text:
        return text
    text = (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'"))
    if "&#" in text:
        text = _NUMERIC.sub(_numeric, text)
    return text.replace("&amp;", "&")


def parse_page(raw: bytes) -> Page:
    """Parse one ``<page>...</page>`` element. Raises ``ValueError`` naming what is missing."""
    title = TITLE.search(raw)
    ns = _NS.search(raw)
    page_id = _ID.search(raw)
    if title is None or ns is None or page_id is None:
        missing = [k for k, v in (("title", title), ("ns", ns), ("id", page_id)) if v is None]
        raise ValueError(f"page without <{'>, <'.join(missing)}>")
    rev = _REVISION.search(raw)
    text = _TEXT.search(raw)
    redirect = _REDIRECT.search(raw)
    body = text.group(1) if text is not None and text.group(1) is not None else b""
    return Page(
        title=unescape_xml(title.group(1).decode("utf-8")),
        ns=int(ns.group(1)),
        page_id=int(page_id.group(1)),
        revision_id=int(rev.group(1)) if rev else 0,
        text=unescape_xml(body.decode("utf-8")),
        redirect=unescape_xml(redirect.group(1).decode("utf-8")) if redirect else None,
    )


def split_pages(data: bytes) -> list[bytes]:
    """The complete ``<page>...</page>`` elements in ``data`` (a block or a buffer)."""
    out = []
    pos = 0
    while True:
        start = data.find(_PAGE_START, pos)
        if start < 0:
            return out
        end = data.find(_PAGE_END, start)
        if end < 0:
            return out
        end += len(_PAGE_END)
        out.append(data[start:end])
        pos = end


def check_root(head: bytes, name: str) -> str:
    """The export schema URI of a dump whose first bytes are ``head``; ``FormatError`` when it
    is not MediaWiki export XML."""
    m = _ROOT.search(head)
    if m is None:
        shown = head[:60].decode("utf-8", "replace").replace("\n", " ").strip()
        raise FormatError(name, 0, f"not a MediaWiki XML dump (no <mediawiki> root element in "
                                   f"the first {len(head):,} bytes; it starts {shown!r})")
    ns = _XMLNS.search(m.group())
    return ns.group(1).decode() if ns else ""


def open_dump(path: Path, *, workers: int = 1) -> BinaryIO:
    """A binary stream of the decompressed dump (bz2, gzip, xz or plain XML). With
    ``workers > 1`` a bz2 file is decoded by ``indexed_bzip2`` on that many threads when it is
    installed (the 'wiki' extra)."""
    kind = file_compression(path)
    if kind == "bz2":
        if workers > 1:
            try:
                import indexed_bzip2

                return indexed_bzip2.open(str(path), parallelization=workers)  # type: ignore[no-any-return]
            except ImportError:
                log.info("indexed_bzip2 not installed; decoding %s on one thread", path.name)
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if kind == "gzip":
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "xz":
        import lzma

        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


@dataclass
class ReadReport:
    """What a streaming read saw: pages cut, and whether the dump ended early."""

    pages: int = 0
    truncated: str = ""
    schema: str = ""


def iter_raw_pages(stream: BinaryIO, name: str, report: ReadReport | None = None,
                   *, max_page_bytes: int = MAX_PAGE_BYTES) -> Iterator[bytes]:
    """Yield each complete ``<page>`` element of a dump stream, in order, as bytes.

    Checks the root element first (``FormatError`` if it is not MediaWiki XML). A dump that
    ends early (truncated compressed stream, or XML cut mid-page) yields every complete page
    and records why in ``report.truncated`` (the caller warns once).
    """
    report = report if report is not None else ReadReport()
    buf = bytearray()
    checked = False
    eof = False
    while not eof:
        try:
            chunk = stream.read(READ_CHUNK)
        except (EOFError, OSError, ValueError) as exc:
            report.truncated = f"compressed stream ends early ({exc})"
            chunk = b""
            eof = True
        if not chunk:
            eof = True
        buf += chunk
        if not checked and (len(buf) >= _HEAD_BYTES or eof):
            report.schema = check_root(bytes(buf[:_HEAD_BYTES]), name)
            checked = True
        if not checked:
            continue
        pos = 0
        while True:
            start = buf.find(_PAGE_START, pos)
            if start < 0:
                pos = max(pos, len(buf) - 64)  # keep enough to see a split tag
                break
            end = buf.find(_PAGE_END, start)
            if end < 0:
                pos = start
                if len(buf) - start > max_page_bytes:
                    raise FormatError(name, -1, f"a <page> longer than {max_page_bytes:,} bytes "
                                                f"(not a MediaWiki dump, or a corrupt one)")
                break
            end += len(_PAGE_END)
            report.pages += 1
            yield bytes(buf[start:end])
            pos = end
        del buf[:pos]
    if not report.truncated and (_PAGE_START in buf or b"</mediawiki>" not in buf):
        report.truncated = "the XML ends inside a page" if _PAGE_START in buf else \
            "the XML ends before </mediawiki>"


# ---------------------------------------------------------------------------------------------
# multistream blocks and the index


@dataclass(frozen=True)
class IndexEntry:
    """One index line: the byte offset of the page's bz2 stream, its page id and title."""

    offset: int
    page_id: int
    title: str


def read_index(path: Path) -> Iterator[IndexEntry]:
    """Stream the entries of a multistream index (``offset:page_id:title`` lines; bz2 or
    plain). Raises ``FormatError`` naming the line for a malformed one."""
    opener = bz2.open if file_compression(path) == "bz2" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        wrapper = io.TextIOWrapper(fh, encoding="utf-8", newline="\n")
        try:
            for n, line in enumerate(wrapper, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                offset, _, rest = line.partition(":")
                page_id, _, title = rest.partition(":")
                try:
                    yield IndexEntry(int(offset), int(page_id), title)
                except ValueError:
                    raise FormatError(path, -1, f"line {n}: expected offset:page_id:title, got "
                                                f"{line[:80]!r}") from None
        except (EOFError, OSError, UnicodeDecodeError) as exc:
            raise FormatError(path, -1, f"index is corrupt or truncated ({exc})") from exc


def block_ranges(offsets: list[int], file_size: int) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of the page streams from the sorted distinct index offsets
    (the last block ends at the file's end, where the closing ``</mediawiki>`` stream is)."""
    starts = sorted(set(offsets))
    return [(s, starts[i + 1] if i + 1 < len(starts) else file_size)
            for i, s in enumerate(starts)]


def read_block(path: Path | str, start: int, end: int | None = None) -> bytes:
    """Decode the bz2 stream that starts at byte ``start`` (with ``end``: every stream in
    ``[start, end)``). Raises ``FormatError`` when there is no complete bz2 stream there."""
    out: list[bytes] = []
    with open(path, "rb") as fh:
        fh.seek(start)
        if end is not None:
            data = fh.read(max(0, end - start))
            while data:
                dec = bz2.BZ2Decompressor()
                try:
                    out.append(dec.decompress(data))
                except OSError as exc:
                    raise FormatError(path, start, f"no bz2 stream at this offset ({exc}); "
                                                   f"does the index belong to this dump?") from exc
                if not dec.eof:
                    raise FormatError(path, start, "bz2 stream ends early (truncated dump?)")
                data = dec.unused_data
            return b"".join(out)
        dec = bz2.BZ2Decompressor()
        while not dec.eof:
            data = fh.read(1 << 18)
            if not data:
                raise FormatError(path, start, "bz2 stream ends early (truncated dump?)")
            try:
                out.append(dec.decompress(data))
            except OSError as exc:
                raise FormatError(path, start, f"no bz2 stream at this offset ({exc}); does "
                                               f"the index belong to this dump?") from exc
    return b"".join(out)


def write_multistream(pages: list[bytes], dump: Path, index: Path, *,
                      header: bytes = b"", footer: bytes = b"</mediawiki>\n",
                      per_stream: int = 100) -> None:
    """Write ``pages`` (raw ``<page>`` elements) as a multistream dump and its bz2 index, the
    way Wikimedia does: ``header`` (root + siteinfo) in its own stream, then one stream per
    ``per_stream`` pages, then the footer stream."""
    lines = []
    with open(dump, "wb") as fh:
        if header:
            fh.write(bz2.compress(header))
        for i in range(0, len(pages), per_stream):
            group = pages[i:i + per_stream]
            offset = fh.tell()
            for raw in group:
                page = parse_page(raw)
                title = page.title
                lines.append(f"{offset}:{page.page_id}:{title}\n")
            fh.write(bz2.compress(b"  " + b"\n  ".join(group) + b"\n"))
        if footer:
            fh.write(bz2.compress(footer))
    index.write_bytes(bz2.compress("".join(lines).encode("utf-8")))
