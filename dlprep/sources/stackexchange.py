"""Stack Exchange data dumps on the Internet Archive: which item, which file, which checksums.

Two kinds of items hold the per-site ``.7z`` archives:

* ``stackexchange`` (legacy, updated until the April 2024 dump):
  ``https://archive.org/download/stackexchange/<site>.7z``; Stack Overflow is split per table
  (``stackoverflow.com-Posts.7z``).
* ``stackexchange_YYYYMMDD`` (mid-2024 on, e.g. ``stackexchange_20250930``; a re-upload may be
  ``stackexchange_20240630_revised``), found with the search
  ``subject:"Stack Exchange Data Dump" AND creator:"Stack Exchange, Inc."``.

``--item latest`` (the default) asks ``advancedsearch.php`` for those items and takes the
newest date (a suffixed re-upload wins over the plain one of the same date); ``--item
stackexchange`` or ``--item stackexchange_YYYYMMDD`` names one. ``metadata/<item>`` lists the
item's files with ``size``, ``md5`` and ``sha1``: the archive is downloaded from
``download/<item>/<file>`` and verified against them. ``--api-base`` replaces
``https://archive.org`` for all three (a mirror, or a loopback server in tests). Every reply
goes through the polite API core (:mod:`dlprep.fetch.api`): cached, so ``--offline`` replays
the item choice and its metadata; ``--force`` asks again.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import DlprepError, FormatError

DEFAULT_API_BASE = "https://archive.org"
LEGACY_ITEM = "stackexchange"
LATEST = "latest"
SEARCH_QUERY = 'subject:"Stack Exchange Data Dump" AND creator:"Stack Exchange, Inc."'
SEARCH_ROWS = 200
_DATED = re.compile(r"^stackexchange_(\d{8})(?:_([A-Za-z0-9]+))?$")
_ITEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SITE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,120}$")
#: sites whose dump is named by their own domain, not ``<name>.stackexchange.com``
_OWN_DOMAINS = ("stackoverflow.com", "superuser.com", "serverfault.com", "askubuntu.com",
                "mathoverflow.net", "stackapps.com")


def check_site(site: str | None) -> str:
    """A site's domain, e.g. ``travel.stackexchange.com``; a short name (``travel``,
    ``travel.meta``) gets ``.stackexchange.com`` appended, except for the sites with their own
    domain (``stackoverflow`` -> ``stackoverflow.com``)."""
    s = (site or "").strip().lower()
    if not _SITE.match(s):
        raise DlprepError(f"--site: {site!r} is not a Stack Exchange site (e.g. "
                          f"travel.stackexchange.com, stackoverflow.com)")
    if not s.endswith((".com", ".net", ".org")):
        own = [d for d in _OWN_DOMAINS if d.split(".")[0] == s]
        s = own[0] if own else f"{s}.stackexchange.com"
    return s


def check_item(item: str | None) -> str:
    value = (item or LATEST).strip()
    if value != LATEST and not _ITEM.match(value):
        raise DlprepError(f"--item: {item!r} is not an Internet Archive identifier (e.g. "
                          f"latest, {LEGACY_ITEM}, stackexchange_20250930)")
    return value


def newest_item(identifiers: list[str]) -> str | None:
    """The newest ``stackexchange_YYYYMMDD[_suffix]`` identifier (by date; a suffixed
    re-upload of a date wins over the plain one), or None."""
    dated = [(m.group(1), m.group(2) is not None, i) for i in identifiers
             if isinstance(i, str) and (m := _DATED.match(i))]
    return max(dated)[2] if dated else None


@dataclass(frozen=True)
class DumpFile:
    """One site's archive in an item, as ``metadata/<item>`` lists it."""

    item: str
    name: str
    url: str
    size: int | None
    md5: str | None
    sha1: str | None


def candidate_names(site: str) -> list[str]:
    """The file names a site's Posts may have in an item, best first."""
    return [f"{site}-Posts.7z", f"{site}.7z"]


def _int(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None


def _hex(value: Any, length: int) -> str | None:
    text = str(value).strip().lower() if isinstance(value, str) else ""
    return text if re.fullmatch(f"[0-9a-f]{{{length}}}", text) else None


def find_site_file(meta: Any, *, item: str, site: str, api_base: str,
                   where: str) -> DumpFile:
    """The archive of ``site`` in the ``metadata/<item>`` document ``meta``. An empty
    document (what the API answers for an unknown item) or one without ``files`` is an error
    naming the item; a missing site lists the closest names."""
    if not isinstance(meta, dict):
        raise FormatError(where, -1, "not an item metadata document (expected a JSON object)")
    if not meta:
        raise DlprepError(f"{where}: no Internet Archive item {item!r} (empty metadata); "
                          f"see --item")
    files = meta.get("files")
    if not isinstance(files, list):
        raise FormatError(where, -1, "item metadata without a 'files' list")
    by_name = {f["name"]: f for f in files if isinstance(f, dict) and isinstance(f.get("name"),
                                                                                  str)}
    for name in candidate_names(site):
        f = by_name.get(name)
        if f is not None:
            url = f"{api_base.rstrip('/')}/download/{item}/{name}"
            return DumpFile(item=item, name=name, url=url, size=_int(f.get("size")),
                            md5=_hex(f.get("md5"), 32), sha1=_hex(f.get("sha1"), 40))
    archives = sorted(n for n in by_name if n.endswith(".7z"))
    close = difflib.get_close_matches(f"{site}.7z", archives, n=3, cutoff=0.6)
    hint = f"; close: {', '.join(close)}" if close else (
        f"; it has {len(archives)} archives, e.g. {', '.join(archives[:3])}" if archives else
        "; it has no .7z archive")
    raise DlprepError(f"{where}: item {item} has no dump of {site} (looked for "
                      f"{' or '.join(candidate_names(site))}){hint}")


class DumpLocator:
    """Finds a site's archive on the Internet Archive through an API client
    (:class:`dlprep.fetch.api.ApiClient` whose ``base_url`` is the ``--api-base``)."""

    def __init__(self, client: Any, api_base: str = DEFAULT_API_BASE) -> None:
        self.client = client
        self.api_base = api_base

    def latest_item(self) -> str:
        """The newest ``stackexchange_YYYYMMDD`` item, by an advancedsearch query."""
        params = {"q": SEARCH_QUERY, "fl[]": "identifier", "sort[]": "identifier desc",
                  "rows": str(SEARCH_ROWS), "output": "json"}

        def check(doc: Any) -> None:
            docs = doc.get("response", {}).get("docs") if isinstance(doc, dict) else None
            if not isinstance(docs, list):
                raise FormatError(f"{self.api_base} advancedsearch", -1,
                                  "not a search reply (no response.docs list)")

        doc = self.client.get_json("advancedsearch.php", params, check=check)
        ids = [d.get("identifier") for d in doc["response"]["docs"] if isinstance(d, dict)]
        found = newest_item([i for i in ids if isinstance(i, str)])
        if found is None:
            raise DlprepError(f"{self.api_base}: the search for Stack Exchange dump items found "
                              f"none ({len(ids)} results); name one with --item "
                              f"{LEGACY_ITEM} or --item stackexchange_YYYYMMDD")
        return found

    def metadata(self, item: str) -> Any:
        """``metadata/<item>``; an unknown item (the API answers ``{}``) is an error, and
        that answer is not cached."""
        where = f"{self.api_base.rstrip('/')}/metadata/{item}"

        def check(doc: Any) -> None:
            if isinstance(doc, dict) and not doc:
                raise DlprepError(f"{where}: no Internet Archive item {item!r} (empty "
                                  f"metadata); see --item")

        return self.client.get_json(f"metadata/{item}", check=check)

    def dump_file(self, item: str, site: str) -> DumpFile:
        """The archive of ``site`` in ``item`` (``latest``: the newest dated item)."""
        item = check_item(item)
        if item == LATEST:
            item = self.latest_item()
        where = f"{self.api_base.rstrip('/')}/metadata/{item}"
        return find_site_file(self.metadata(item), item=item, site=check_site(site),
                              api_base=self.api_base, where=where)
