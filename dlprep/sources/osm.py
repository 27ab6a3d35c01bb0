"""OpenStreetMap sources: Geofabrik-style extracts (with their ``.md5``) and the Overpass API.

* Extracts: ``<base>/<region>-latest.osm.pbf`` next to ``<...>.osm.pbf.md5`` (``md5sum`` output);
  the md5 is fetched first and the extract is verified against it by ``fetch_file``.
* Overpass (``/api/interpreter``, POST ``data=``): one query at a time. Before each request
  ``/api/status`` is asked whether a slot is free (and, if not, when one will be); HTTP 429 and
  504 are retried after ``Retry-After`` or the retry policy's backoff; a reply whose ``remark``
  reports a runtime error is refused. Replies are cached under ``overpass/<hash>.<json|xml>``,
  keyed by the sha256 of the query text, so the same query is sent once and ``--offline``
  replays it from the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FetchError, FormatError, OfflineError
from ..fetch.http import RetryPolicy, parse_retry_after, shared_session
from ..redact import redact_url

log = logging.getLogger("dlprep")

GEOFABRIK = "https://download.geofabrik.de/"
DEFAULT_OVERPASS = "https://overpass-api.de/api/interpreter"
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"
_MD5 = re.compile(r"^\s*([0-9a-fA-F]{32})\b")
_REGION = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$")
_SLOTS_NOW = re.compile(r"(\d+) slots? available now", re.I)
_SLOT_AFTER = re.compile(r"Slot available after: \S+, in (-?\d+) seconds?", re.I)
_HTML_ERROR = re.compile(r"Error</strong>:\s*(.*?)</p>", re.S)
MAX_REPLY_BYTES = 1 << 31  # an Overpass reply larger than this is refused (use an extract)


def region_url(region: str, base_url: str = GEOFABRIK) -> str:
    """``europe/monaco`` -> ``<base>/europe/monaco-latest.osm.pbf``."""
    region = region.strip().strip("/").lower()
    if not _REGION.match(region):
        raise FetchError(f"--region {region!r}: expected a Geofabrik path such as europe/monaco")
    return base_url.rstrip("/") + "/" + region + "-latest.osm.pbf"


def parse_md5(text: str, where: str) -> str:
    """The hex digest at the start of an ``md5sum``-style ``.md5`` file."""
    m = _MD5.match(text)
    if not m:
        raise FormatError(where, 0, f"not an md5 sidecar (starts {text[:40]!r}); expected "
                                    f"'<32 hex digits>  <file name>'")
    return m.group(1).lower()


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``S,W,N,E`` degrees -> a tuple, checked (S < N, W < E, within the globe)."""
    if text is None or str(text).strip() == "":
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        s, w, n, e = (float(p) for p in parts)
    except ValueError:
        raise FetchError(f"--bbox {text!r}: expected four numbers S,W,N,E (degrees)") from None
    if not (-90 <= s <= 90 and -90 <= n <= 90 and -180 <= w <= 180 and -180 <= e <= 180):
        raise FetchError(f"--bbox {text}: latitudes must be within -90..90 and longitudes "
                         f"within -180..180 (order S,W,N,E)")
    if s >= n:
        raise FetchError(f"--bbox {text}: south {s} is not below north {n} (order S,W,N,E)")
    if w >= e:
        raise FetchError(f"--bbox {text}: west {w} is not left of east {e} (order S,W,N,E)")
    return s, w, n, e


def overpass_query(keys: list[str], bbox: tuple[float, float, float, float], *,
                   timeout: int = 180, fmt: str = "json") -> str:
    """One Overpass QL query: ways and multipolygon relations with any of ``keys`` in ``bbox``,
    returned with their geometry (``out geom``)."""
    s, w, n, e = bbox
    lines = [f"[out:{fmt}][timeout:{int(timeout)}][bbox:{s},{w},{n},{e}];", "("]
    for key in keys:
        k = key.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'  way["{k}"];')
        lines.append(f'  relation["{k}"]["type"="multipolygon"];')
    lines += [");", "out geom;"]
    return "\n".join(lines) + "\n"


def status_url(interpreter: str) -> str:
    """``.../api/interpreter`` -> ``.../api/status``."""
    base = interpreter.rstrip("/")
    if base.endswith("/interpreter"):
        base = base[: -len("/interpreter")]
    return base + "/status"


@dataclass
class OverpassClient:
    """Send Overpass queries politely and cache the replies in ``cache_dir``.

    ``retry`` carries the attempts, backoff and the injectable ``sleep``/``clock``;
    ``max_wait`` bounds the seconds spent waiting for a free slot per request.
    """

    url: str
    cache_dir: Path
    offline: bool = False
    force: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: Any = None
    max_wait: float = 300.0
    max_bytes: int = MAX_REPLY_BYTES
    last_url: str = ""

    def cache_path(self, query: str) -> Path:
        key = hashlib.sha256(query.encode()).hexdigest()[:24]
        ext = "xml" if "[out:xml]" in query else "json"
        return self.cache_dir / f"{key}.{ext}"

    def run(self, query: str) -> Path:
        """The cached reply of ``query``, sent now if it is not cached (or ``force``)."""
        path = self.cache_path(query)
        self.last_url = redact_url(self.url)
        if path.is_file() and not self.force:
            return path
        if self.offline:
            raise OfflineError(f"offline: no cached Overpass reply for this query ({path.name} "
                               f"in {self.cache_dir}); run once without --offline")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        session = self.session or shared_session()
        failures = 0
        while True:
            self.wait_for_slot(session)
            status, headers, body = self._post(session, query)
            if status == 200:
                break
            if status in (429, 502, 503, 504):
                failures += 1
                if failures >= self.retry.attempts:
                    raise FetchError(f"{self.last_url}: HTTP {status} (gave up after {failures} "
                                     f"attempts); Overpass is busy, try later or use an extract")
                wait = parse_retry_after(headers.get("Retry-After"), self.retry.clock())
                wait = self.retry.delay(failures, wait)
                log.info("%s: HTTP %d; retrying in %.1f s", self.last_url, status, wait)
                self.retry.sleep(wait)
                continue
            text = body[:4096].decode("utf-8", "replace")
            m = _HTML_ERROR.search(text)
            detail = " ".join(re.sub(r"<[^>]+>", "", m.group(1)).split()) if m else \
                " ".join(text.split())[:200]
            raise FetchError(f"{self.last_url}: HTTP {status}: {detail}")
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(body)
        try:
            check_reply(tmp, self.last_url)
        except FormatError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return path

    def _post(self, session: Any, query: str) -> tuple[int, Any, bytes]:
        import requests

        try:
            resp = session.post(self.url, data={"data": query}, stream=True,
                                timeout=(self.retry.connect_timeout, self.retry.read_timeout))
        except requests.exceptions.RequestException as exc:
            raise FetchError(f"{self.last_url}: {' '.join(str(exc).split())[:200]}") from None
        with resp:
            chunks, size = [], 0
            for chunk in resp.iter_content(1 << 20):
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"{self.last_url}: reply larger than {self.max_bytes} "
                                     f"bytes; use a smaller --bbox or a PBF extract")
                chunks.append(chunk)
            return resp.status_code, resp.headers, b"".join(chunks)

    def wait_for_slot(self, session: Any) -> None:
        """Ask ``/api/status`` until a slot is free (at most ``max_wait`` seconds of waiting).
        A server without a status page (or an unreadable one) is not waited for."""
        url = status_url(self.url)
        waited = 0.0
        while True:
            try:
                resp = session.get(url, timeout=(self.retry.connect_timeout, 30))
                text = resp.text if resp.status_code == 200 else ""
            except Exception:  # noqa: BLE001 - a status page is advice, not a requirement
                return
            if not text or _SLOTS_NOW.search(text):
                return
            waits = [int(s) for s in _SLOT_AFTER.findall(text)]
            if not waits:
                return
            wait = max(0, min(waits)) + 1
            if waited + wait > self.max_wait:
                raise FetchError(f"{redact_url(url)}: no free Overpass slot within "
                                 f"{self.max_wait:.0f} s; try later")
            log.info("Overpass: no free slot; waiting %d s (%s)", wait, redact_url(url))
            self.retry.sleep(wait)
            waited += wait


def check_reply(path: Path, where: str) -> None:
    """Refuse a reply whose ``remark`` reports a runtime error (a cut-short answer)."""
    from ..formats.osm_overpass import check_remark

    head = path.read_bytes()
    m = re.search(rb'"remark"\s*:\s*"((?:[^"\\]|\\.)*)"', head) or \
        re.search(rb"<remark>(.*?)</remark>", head, re.S)
    if m:
        check_remark(m.group(1).decode("utf-8", "replace"), where)

