"""Wikimedia Commons: thumbnail URLs (the md5 path scheme) and per-file licence/author.

A file ``Foo bar.jpg`` is stored as ``Foo_bar.jpg`` under ``{base}/{m[0]}/{m[0:2]}/`` where
``m = md5("Foo_bar.jpg")``; its ``W``-pixel thumbnail is
``{base}/thumb/{m[0]}/{m[0:2]}/Foo_bar.jpg/{W}px-Foo_bar.jpg`` (SVG thumbnails are PNG:
``...px-Name.svg.png``). SPARQL gives P18 images as
``http://commons.wikimedia.org/wiki/Special:FilePath/<name>``. Licence and author come from the
Commons API (``prop=imageinfo&iiprop=extmetadata``, 50 titles per request), cached in the API
cache. Upload hosts allow at most 2 concurrent requests per client (Wikimedia robot policy).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..errors import DlprepError, FetchError, OfflineError
from .wikipedia import polite_get

log = logging.getLogger("dlprep")

DEFAULT_BASE = "https://upload.wikimedia.org/wikipedia/commons"
DEFAULT_API = "https://commons.wikimedia.org/w/api.php"
MAX_CONCURRENT = 2
_TAGS = re.compile(r"<[^>]+>")


def file_name(value: str) -> str:
    """The Commons file name (underscores) of a P18 value: a ``Special:FilePath`` URL, a
    ``File:`` page URL, or a bare name."""
    value = value.strip()
    if "://" in value:
        path = unquote(urlsplit(value).path)
        value = path.rsplit("/", 1)[-1]
    value = unquote(value)
    if value.lower().startswith("file:"):
        value = value[5:]
    name = value.replace(" ", "_").strip("_")
    if not name or "/" in name:
        raise DlprepError(f"{value!r} is not a Commons file name")
    return name[:1].upper() + name[1:]


def thumb_url(name: str, width: int, base: str = DEFAULT_BASE) -> str:
    """URL of the ``width``-pixel thumbnail of Commons file ``name`` (underscored)."""
    m = hashlib.md5(name.encode("utf-8")).hexdigest()
    q = quote(name)
    thumb = f"{width}px-{q}"
    if name.lower().endswith(".svg"):
        thumb += ".png"
    return f"{base.rstrip('/')}/thumb/{m[0]}/{m[:2]}/{q}/{thumb}"


def file_page(name: str) -> str:
    return f"https://commons.wikimedia.org/wiki/File:{quote(name)}"


def _plain(value: str) -> str:
    return " ".join(html.unescape(_TAGS.sub("", value or "")).split())


def licences(names: Sequence[str], cache_dir: Path, *, api: str = DEFAULT_API,
             offline: bool = False) -> dict[str, dict[str, str]]:
    """``{name: {"license": ..., "author": ..., "license_url": ...}}`` from the Commons API
    (responses cached by request); names the API does not know get empty strings."""
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(names), 50):
        batch = list(names[i:i + 50])
        titles = "|".join("File:" + n.replace("_", " ") for n in batch)
        key = hashlib.sha256(f"{api}\n{titles}".encode()).hexdigest()[:32]
        path = cache_dir / "extmetadata" / f"{key}.json"
        if path.is_file():
            data = path.read_bytes()
        elif offline:
            raise OfflineError(f"offline: Commons licence data is not in the cache ({path})")
        else:
            resp = polite_get(api, params={"action": "query", "format": "json",
                                           "prop": "imageinfo", "iiprop": "extmetadata",
                                           "titles": titles}, what="Commons API")
            if resp.status != 200:
                raise FetchError(f"Commons API: HTTP {resp.status}")
            data = resp.body
            try:
                json.loads(data)
            except ValueError as exc:
                raise FetchError("Commons API: the answer is not JSON") from exc
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        doc = json.loads(data)
        pages = (doc.get("query") or {}).get("pages") or {}
        found: dict[str, dict[str, str]] = {}
        for page in (pages.values() if isinstance(pages, dict) else pages):
            title = str(page.get("title", ""))[5:].replace(" ", "_")
            info = (page.get("imageinfo") or [{}])[0].get("extmetadata") or {}
            found[title] = {
                "license": _plain(info.get("LicenseShortName", {}).get("value", "")),
                "author": _plain(info.get("Artist", {}).get("value", "")),
                "license_url": _plain(info.get("LicenseUrl", {}).get("value", "")),
            }
        for n in batch:
            out[n] = found.get(n, {"license": "", "author": "", "license_url": ""})
    return out
