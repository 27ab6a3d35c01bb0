"""Build small WARC files for the web tests (real format: WARC/1.0 headers, sha1 block digests,
one gzip member per record)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import uuid
from pathlib import Path


def http_response(body: bytes, content_type: str = "text/html; charset=utf-8",
                  status: str = "200 OK") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def warc_record(url: str, block: bytes, *, rtype: str = "response",
                date: str = "2024-05-01T12:00:00Z", digest: bool = True,
                declared: int | None = None) -> bytes:
    """One WARC/1.0 record (uncompressed). ``declared`` overrides Content-Length."""
    lines = ["WARC/1.0", f"WARC-Type: {rtype}", f"WARC-Target-URI: {url}",
             f"WARC-Date: {date}",
             f"WARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url + date)}>",
             "Content-Type: application/http; msgtype=response",
             f"Content-Length: {len(block) if declared is None else declared}"]
    if digest:
        sha1 = base64.b32encode(hashlib.sha1(block).digest()).decode()
        lines.append(f"WARC-Block-Digest: sha1:{sha1}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def write_warc(path: Path, records: list[bytes], gz: bool = True) -> Path:
    with open(path, "wb") as f:
        for rec in records:
            f.write(gzip.compress(rec, mtime=0) if gz else rec)
    return path


def page(title: str, body: str, lang_attr: str = "en") -> bytes:
    nav = "<nav><ul><li><a href='/'>Home</a></li><li><a href='/about'>About us</a></li></ul></nav>"
    foot = "<footer>Copyright 2024 Example Corp. All rights reserved. Privacy policy.</footer>"
    return (f"<!doctype html><html lang='{lang_attr}'><head><title>{title}</title></head><body>"
            f"{nav}<main><h1>{title}</h1><article>{body}</article></main>{foot}</body></html>"
            ).encode()
