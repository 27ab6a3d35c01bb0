"""Flickr: ``flickr.photos.search`` per tag through the polite API core, photo URLs from the
``url_*`` extras the search returns.

Search (``https://api.flickr.com/services/rest/``, ``format=json&nojsoncallback=1``): one
request at a time, 1 s apart (Flickr asks for at most 3,600 queries per hour and key); up to
500 results per page; the key (``FLICKR_API_KEY``) is a secret parameter, never cached or shown.
Flickr serves at most about 4,000 results per query: when a tag has more and more are wanted,
the upload-date range is halved (``min_upload_date``/``max_upload_date``, both inclusive) until
each part is under the cap, newest part first. Flickr reports errors inside an HTTP 200
(``{"stat": "fail", "code": 100, ...}``): code 100 (invalid key) is an ``AuthError``, any other
failure one line; neither is cached.

Photo URLs: the ``url_<size>`` extra of the search (so a mirror of the API can mirror the photos
too), else another ``url_*`` extra, else the static scheme
``https://live.staticflickr.com/{server}/{id}_{secret}{suffix}.jpg``. The photo page (the link
back the Flickr terms ask for) is ``https://www.flickr.com/photos/{owner}/{id}``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DlprepError
from ..fetch.api import ApiClient, ApiError, AuthError, HostPolicy

log = logging.getLogger("dlprep")

DEFAULT_API = "https://api.flickr.com/services/rest/"
STATIC_BASE = "https://live.staticflickr.com/"
KEY_VARIABLE = "FLICKR_API_KEY"
API_POLICY = HostPolicy(max_in_flight=1, min_interval=1.0)  # 3,600 queries/hour
PHOTO_POLICY = HostPolicy(max_in_flight=4)
PER_PAGE_MAX = 500
RESULT_CAP = 4000
FIRST_UPLOAD = 1072915200  # 2004-01-01: no Flickr photo is older
#: url_* extra -> the static URL suffix of the same size (url_m is the suffix-less 500 px)
SIZES = {"sq": "_s", "q": "_q", "t": "_t", "s": "_m", "n": "_n", "w": "_w", "m": "", "z": "_z",
         "c": "_c", "l": "_b"}
#: largest side in pixels of each size, to choose a fallback close to the one asked for
SIDES = {"sq": 75, "q": 150, "t": 100, "s": 240, "n": 320, "w": 400, "m": 500, "z": 640,
         "c": 800, "l": 1024}
LICENSES = {"0": "All Rights Reserved", "1": "CC BY-NC-SA 2.0", "2": "CC BY-NC 2.0",
            "3": "CC BY-NC-ND 2.0", "4": "CC BY 2.0", "5": "CC BY-SA 2.0", "6": "CC BY-ND 2.0",
            "7": "No known copyright restrictions", "8": "United States Government Work",
            "9": "CC0 1.0", "10": "Public Domain Mark 1.0"}


def license_name(code: object) -> str:
    """Flickr licence id -> its name (``Flickr licence <id>`` for an id not listed here)."""
    text = str(code if code is not None else "").strip()
    return LICENSES.get(text, f"Flickr licence {text or 'unknown'}")


def photo_page(owner: str, photo_id: str) -> str:
    return f"https://www.flickr.com/photos/{owner}/{photo_id}"


@dataclass(frozen=True)
class Photo:
    """One search result: what the dataset keeps about it."""

    id: str
    owner: str
    owner_name: str
    license: str
    title: str
    url: str  # the image to download
    uploaded: int

    @property
    def page(self) -> str:
        return photo_page(self.owner, self.id)


def photo_url(doc: dict[str, Any], size: str, static_base: str = STATIC_BASE) -> str | None:
    """The URL of ``doc``'s image: ``url_<size>``, else the closest other ``url_*`` extra, else
    the static scheme (needs ``server`` and ``secret``); None when nothing is known."""
    if doc.get(f"url_{size}"):
        return str(doc[f"url_{size}"])
    want = SIDES.get(size, 320)
    others = sorted((abs(SIDES[k] - want), SIDES[k] < want, k) for k in SIDES
                    if doc.get(f"url_{k}"))
    if others:
        return str(doc[f"url_{others[0][2]}"])
    server, secret, pid = doc.get("server"), doc.get("secret"), doc.get("id")
    if server and secret and pid:
        return f"{static_base.rstrip('/')}/{server}/{pid}_{secret}{SIZES.get(size, '_n')}.jpg"
    return None


def parse_photo(doc: Any, size: str, where: str) -> Photo | None:
    """A ``Photo`` from one search entry; None (logged) for an entry without id/owner/URL."""
    if not isinstance(doc, dict) or not doc.get("id") or not doc.get("owner"):
        log.info("%s: skipped a search entry without id or owner", where)
        return None
    url = photo_url(doc, size)
    if url is None:
        log.info("%s: photo %s has no URL (no url_* extra, no server/secret)", where, doc["id"])
        return None
    try:
        uploaded = int(str(doc.get("dateupload") or 0))
    except ValueError:
        uploaded = 0
    return Photo(id=str(doc["id"]), owner=str(doc["owner"]),
                 owner_name=str(doc.get("ownername") or ""),
                 license=license_name(doc.get("license")), title=str(doc.get("title") or ""),
                 url=url, uploaded=uploaded)


def check_reply(doc: Any) -> None:
    """Refuse a Flickr reply that is not ``stat: ok`` with a ``photos`` page (not cached)."""
    if not isinstance(doc, dict):
        raise ApiError("Flickr: the reply is not a JSON object")
    if doc.get("stat") != "ok":
        code, message = doc.get("code"), " ".join(str(doc.get("message", "")).split())[:200]
        if code in (98, 99, 100, "98", "99", "100"):
            raise AuthError(f"Flickr refused the key (error {code}: {message}): check "
                            f"{KEY_VARIABLE}")
        raise ApiError(f"Flickr: the search failed (error {code}: {message})")
    photos = doc.get("photos")
    if not isinstance(photos, dict) or not isinstance(photos.get("photo"), list):
        raise ApiError("Flickr: the reply has no photos.photo list")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


@dataclass
class FlickrSearch:
    """``flickr.photos.search`` for one tag at a time through ``client``."""

    client: ApiClient
    size: str = "n"
    licenses: Sequence[str] = ()
    per_page: int = PER_PAGE_MAX
    cap: int = RESULT_CAP
    min_date: int = FIRST_UPLOAD
    max_date: int | None = None
    requests: int = 0

    def _params(self, tag: str, page: int, lo: int | None, hi: int | None,
                per_page: int) -> dict[str, object]:
        extras = ",".join(dict.fromkeys(["license", "owner_name", "date_upload",
                                         f"url_{self.size}", "url_n", "url_z", "url_q"]))
        params: dict[str, object] = {
            "method": "flickr.photos.search", "format": "json", "nojsoncallback": 1,
            "tags": tag, "tag_mode": "all", "sort": "date-posted-desc", "content_type": 1,
            "media": "photos", "safe_search": 1, "extras": extras, "per_page": per_page,
            "page": page}
        if self.licenses:
            params["license"] = ",".join(self.licenses)
        if lo is not None:
            params["min_upload_date"] = lo
        if hi is not None:
            params["max_upload_date"] = hi
        return params

    def _page(self, tag: str, page: int, lo: int | None, hi: int | None,
              per_page: int) -> dict[str, Any]:
        self.requests += 1
        doc = self.client.get_json("", self._params(tag, page, lo, hi, per_page),
                                   check=check_reply)
        return doc["photos"]

    def photos(self, tag: str, want: int) -> Iterator[Photo]:
        """Up to ``want`` distinct photos tagged ``tag`` (newest first)."""
        if want < 1:
            return
        per_page = max(1, min(self.per_page, PER_PAGE_MAX, want))
        first = self._page(tag, 1, None, self.max_date, per_page)
        total = _int(first.get("total"))
        seen: set[str] = set()
        got = 0
        if total <= self.cap or want <= self.cap:
            ranges: Iterator[tuple[int | None, int | None, dict[str, Any]]] = \
                iter([(None, self.max_date, first)])
        else:
            newest = max((_int(p.get("dateupload")) for p in first["photo"]
                          if isinstance(p, dict)), default=0)
            hi = self.max_date or newest or None
            if hi is None:
                raise ApiError(f"Flickr: tag {tag!r} has {total} results (more than the "
                               f"{self.cap} a query serves) and the search gives no upload "
                               f"dates to split them by")
            ranges = self._split(tag, self.min_date, hi, per_page)
        for lo, hi, head in ranges:
            for photo in self._pages(tag, lo, hi, head, per_page, where=f"tag {tag!r}"):
                if photo.id in seen:
                    continue
                seen.add(photo.id)
                yield photo
                got += 1
                if got >= want:
                    return

    def _split(self, tag: str, lo: int, hi: int, per_page: int
               ) -> Iterator[tuple[int | None, int | None, dict[str, Any]]]:
        """Date ranges (newest first) each holding at most ``cap`` results, with page 1."""
        head = self._page(tag, 1, lo, hi, per_page)
        if _int(head.get("total")) <= self.cap or hi <= lo:
            yield lo, hi, head
            return
        mid = (lo + hi) // 2
        log.info("Flickr: tag %r has %s results from %d to %d; splitting the date range", tag,
                 head.get("total"), lo, hi)
        yield from self._split(tag, mid + 1, hi, per_page)
        yield from self._split(tag, lo, mid, per_page)

    def _pages(self, tag: str, lo: int | None, hi: int | None, head: dict[str, Any],
               per_page: int, where: str) -> Iterator[Photo]:
        pages = min(_int(head.get("pages"), 1), max(1, -(-self.cap // per_page)))
        page, doc = 1, head
        while True:
            for entry in doc["photo"]:
                photo = parse_photo(entry, self.size, where)
                if photo is not None:
                    yield photo
            if page >= pages or not doc["photo"]:
                return
            page += 1
            doc = self._page(tag, page, lo, hi, per_page)


def check_tags(tags: Sequence[str]) -> list[str]:
    """Clean ``--tags`` (at least one, no duplicates)."""
    clean = [t.strip() for t in tags if t and t.strip()]
    if not clean:
        raise DlprepError("flickr: give --tags, e.g. --tags cat,dog")
    dupes = sorted({t for t in clean if clean.count(t) > 1})
    if dupes:
        raise DlprepError(f"--tags: {', '.join(dupes)} given twice")
    return clean


def check_licenses(values: Sequence[str]) -> list[str]:
    """``--license 4,5,9``: Flickr licence ids (see ``LICENSES``)."""
    out = []
    for v in values:
        v = str(v).strip()
        if not v.isdigit():
            raise DlprepError(f"--license: {v!r} is not a Flickr licence id (e.g. 4 = CC BY "
                              f"2.0, 9 = CC0; ids: {', '.join(LICENSES)})")
        out.append(str(int(v)))
    return out
