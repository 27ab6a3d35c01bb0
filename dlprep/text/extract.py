"""Web pages -> clean main text: HTTP response parsing, charset decoding, boilerplate removal
(Resiliparse), language identification (py3langid, whose model ships in the wheel).

Needs the ``web`` extra (``pip install dlprep[web]``); imported lazily by the web builders.
docs/WEB.md compares the extractors this was chosen from.
"""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass

from ..errors import DlprepError

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)
#: first bytes of binary formats that servers sometimes label text/html
_BINARY_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"\x1f\x8b",
                 b"BZh", b"\xfd7zXZ", b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\x7fELF")


@dataclass
class HttpResponse:
    """A parsed HTTP response: ``status``, ``headers`` (lower-cased names), ``body`` (after
    chunked transfer and gzip/deflate content decoding)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def mime(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        m = _CHARSET.search(self.headers.get("content-type", ""))
        return m.group(1) if m else None


def _dechunk(body: bytes) -> bytes:
    out, pos = [], 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("no chunk size line")
        size = int(body[pos:eol].split(b";")[0].strip() or b"x", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2
        if pos > len(body):
            raise ValueError("chunk runs past the body")


def _inflate(body: bytes, wbits: int, cap: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(body, cap + 1)
    if len(out) > cap:
        raise ValueError(f"content inflates past {cap:,} bytes")
    return out


def parse_http(block: bytes, max_body: int) -> HttpResponse | None:
    """The HTTP response in a WARC ``response`` block (None when it is not one)."""
    if not block.startswith(b"HTTP/"):
        return None
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    if end < 0:
        return None
    lines = block[:end].splitlines()
    parts = lines[0].split(None, 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, s, v = line.partition(b":")
        if s:
            headers[k.strip().decode("latin-1").lower()] = v.strip().decode("latin-1")
    body = block[end + sep:]
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            try:
                body = _dechunk(body)
            except ValueError:
                pass  # archivers often store the de-chunked body under the original header
        coding = headers.get("content-encoding", "").strip().lower()
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 47, max_body)
        elif coding == "deflate":
            body = _inflate(body, 15, max_body)
        elif coding not in ("", "identity"):
            return HttpResponse(status, headers, b"")  # br/zstd: not decoded, skipped
    except (ValueError, zlib.error):
        return HttpResponse(status, headers, b"")
    return HttpResponse(status, headers, body)


def looks_binary(body: bytes) -> bool:
    """True for bytes that are not text (known magic numbers, or NULs in the first 4 KiB)."""
    head = body[:4096]
    return head.startswith(_BINARY_MAGIC) or head.count(b"\x00") > 0


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


def decode_page(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """``(text, how)``: decoded with the HTTP header's charset, else the ``<meta>`` charset,
    else a detected one (uchardet via Resiliparse); a declared charset that fails to decode
    strictly falls through to the next. ``how`` is ``header``, ``meta`` or ``detected``."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    for how, name in (("header", header_charset),
                      ("meta", (m.group(1).decode("ascii", "replace")
                                if (m := _META_CHARSET.search(body[:8192])) else None))):
        codec = _codec(name)
        if codec:
            try:
                return body.decode(codec), how
            except UnicodeDecodeError:
                continue
    guess = detect_encoding(body) or "utf-8"
    return bytes_to_str(body, guess, errors="replace"), "detected"


def extract_main_text(html: str) -> tuple[str, str]:
    """``(title, main text)`` of an HTML page: Resiliparse's main-content extraction
    (navigation, headers, footers, sidebars and scripts removed), paragraphs kept."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    title = (tree.title or "").strip()
    text = extract_plain_text(tree, preserve_formatting=True, main_content=True,
                              list_bullets=True, alt_texts=False, links=False,
                              form_fields=False, noscript=False)
    return title, text.strip()


_langid = None


def identify_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (py3langid, 97 languages), or ``""`` for under 20 letters."""
    global _langid
    sample = text[:2000]
    if sum(ch.isalpha() for ch in sample[:400]) < 20:
        return ""
    if _langid is None:
        import py3langid

        _langid = py3langid.classify
    return str(_langid(sample)[0])


def require_web_extra() -> None:
    """One clear line when the ``web`` extra is missing."""
    try:
        import py3langid  # noqa: F401
        import resiliparse  # noqa: F401
    except ImportError as exc:
        raise DlprepError(f"web pages need the 'web' extra: pip install 'dlprep[web]' "
                          f"({exc.name} is missing)") from exc
