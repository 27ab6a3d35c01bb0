"""Wikidata: SPARQL queries (polite, cached, replayable offline) and the JSON entity dump.

SPARQL (``https://query.wikidata.org/sparql``): one request at a time per process and per
cache (a lock file), the Wikimedia User-Agent, ``Accept: application/sparql-results+json``,
429/503 retried after ``Retry-After``, a timeout; a 400 (query syntax error) is reported with
the server's message on one line, an HTML answer is refused. Results are cached by the hash of
(endpoint, query) under ``api/wikidata/sparql/`` so ``--offline`` replays them. Tables have one
column per SPARQL variable; entity URIs are shortened to their ids (``Q42``, ``P31``).

Entity dump (``latest-all.json.gz|bz2``): a JSON array with one entity per line; read line by
line (never all at once), a truncated file yields every complete entity and one warning.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DlprepError, FetchError, FormatError, OfflineError
from ..fetch.http import RetryPolicy, looks_like_html
from ..locks import PathLock
from ..magic import file_compression
from ..redact import redact_url
from .wikipedia import polite_get

log = logging.getLogger("dlprep")

DEFAULT_ENDPOINT = "https://query.wikidata.org/sparql"
ENTITY_PREFIXES = ("http://www.wikidata.org/entity/", "https://www.wikidata.org/entity/",
                   "http://www.wikidata.org/prop/direct/", "http://www.wikidata.org/prop/",
                   "http://www.wikidata.org/wiki/")
_ID = re.compile(r"^[QPL]\d+$")
_ONE_AT_A_TIME = threading.Lock()


def shorten(uri: str) -> str:
    """``http://www.wikidata.org/entity/Q42`` -> ``Q42`` (other URIs unchanged)."""
    for prefix in ENTITY_PREFIXES:
        if uri.startswith(prefix):
            rest = uri[len(prefix):]
            if _ID.match(rest):
                return rest
    return uri


def _one_line(body: bytes, limit: int = 300) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    # Blazegraph puts the parser's message after the stack trace header; keep the useful part
    m = re.search(r"(MalformedQueryException|QueryParseException|ParseException)[:\s]+(.*)",
                  text)
    if m:
        text = m.group(2)
    return text[:limit] + ("..." if len(text) > limit else "")


@dataclass
class SparqlResult:
    """Variables (in order) and rows of shortened values (None for unbound)."""

    variables: list[str]
    rows: list[list[str | None]]
    cached: bool = False


def parse_results(data: bytes, where: str) -> SparqlResult:
    """Parse ``application/sparql-results+json`` into a table. ``FormatError`` otherwise."""
    if looks_like_html(data[:256]):
        raise FormatError(where, 0, "the endpoint answered with an HTML page, not SPARQL JSON "
                                    "results (wrong --endpoint?)")
    try:
        doc = json.loads(data)
        variables = list(doc["head"]["vars"])
        bindings = doc["results"]["bindings"]
    except (ValueError, KeyError, TypeError) as exc:
        start = data[:60].decode("utf-8", "replace").replace("\n", " ")
        raise FormatError(where, -1, f"not SPARQL JSON results (starts {start!r})") from exc
    rows = []
    for b in bindings:
        row: list[str | None] = []
        for var in variables:
            cell = b.get(var)
            if cell is None:
                row.append(None)
            elif cell.get("type") == "uri":
                row.append(shorten(cell.get("value", "")))
            elif cell.get("type") == "bnode":
                row.append("_:" + cell.get("value", ""))
            else:
                row.append(cell.get("value"))
        rows.append(row)
    return SparqlResult(variables, rows)


@dataclass
class SparqlClient:
    """Runs SPARQL queries against ``endpoint`` with a cache in ``cache_dir``."""

    cache_dir: Path
    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    timeout: float = 65.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=5))
    refresh: bool = False

    def cache_path(self, query: str) -> Path:
        key = hashlib.sha256(f"{self.endpoint}\n{query.strip()}".encode()).hexdigest()
        return self.cache_dir / "sparql" / f"{key[:32]}.json"

    def query(self, query: str) -> SparqlResult:
        """The results of ``query`` (from the cache when present, unless ``refresh``)."""
        if not query.strip():
            raise DlprepError("the SPARQL query is empty")
        path = self.cache_path(query)
        if path.is_file() and not self.refresh:
            result = parse_results(path.read_bytes(), str(path))
            result.cached = True
            return result
        if self.offline:
            raise OfflineError(f"offline: this query's results are not in the cache ({path}); "
                               f"run it once without --offline")
        data = self._request(query)
        result = parse_results(data, redact_url(self.endpoint))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return result

    def _request(self, query: str) -> bytes:
        where = redact_url(self.endpoint)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        lock = PathLock(self.cache_dir / ".sparql.lock")  # one request at a time, all processes
        with _ONE_AT_A_TIME:
            lock.acquire()
            try:
                resp = polite_get(self.endpoint, params={"query": query, "format": "json"},
                                  headers={"Accept": "application/sparql-results+json"},
                                  retry=self.retry, timeout=self.timeout, what=where)
            finally:
                lock.release()
        if resp.status == 400:
            raise DlprepError(f"{where}: the query was rejected (HTTP 400): "
                              f"{_one_line(resp.body)}")
        if resp.status in (429, 503):
            raise FetchError(f"{where}: still HTTP {resp.status} after {self.retry.attempts} "
                             f"tries (rate limited); wait and rerun")
        if resp.status != 200:
            raise FetchError(f"{where}: HTTP {resp.status}: {_one_line(resp.body, 160)}")
        return resp.body


def write_table(result: SparqlResult | tuple[list[str], Sequence[Sequence[Any]]],
                out: Path) -> None:
    """Write a table as CSV (``.csv``/``.tsv``) or parquet (``.parquet``), atomically."""
    variables, rows = (result.variables, result.rows) if isinstance(result, SparqlResult) \
        else result
    suffix = out.suffix.lower()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if suffix in (".csv", ".tsv"):
            import csv

            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, delimiter="\t" if suffix == ".tsv" else ",")
                w.writerow(variables)
                for row in rows:
                    w.writerow(["" if v is None else v for v in row])
        elif suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise DlprepError("parquet output needs pyarrow: pip install 'dlprep[wiki]'") \
                    from exc
            cols = {v: [None if r[i] is None else str(r[i]) for r in rows]
                    for i, v in enumerate(variables)}
            pq.write_table(pa.table({v: pa.array(c, pa.string()) for v, c in cols.items()}),
                           tmp)
        else:
            raise DlprepError(f"--out: {out} should end in .csv, .tsv or .parquet")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the JSON entity dump


def _open_text(path: Path):  # type: ignore[no-untyped-def]
    kind = file_compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


@dataclass
class EntityReport:
    entities: int = 0
    matched: int = 0
    truncated: str = ""


def iter_entities(path: Path, report: EntityReport | None = None) -> Iterator[dict[str, Any]]:
    """Every entity of a dump (``[`` / one entity per line with a trailing comma / ``]``).

    A truncated file (compressed stream cut, or a last line that is not complete JSON) ends
    the iteration with ``report.truncated`` set; a file that does not start like the dump
    raises ``FormatError``."""
    report = report if report is not None else EntityReport()
    closed = False
    with _open_text(path) as fh:
        n = 0
        while True:
            try:
                line = fh.readline()
            except (EOFError, OSError) as exc:
                report.truncated = f"compressed stream ends early ({exc})"
                return
            if not line:
                if not closed and n:
                    report.truncated = "no closing ']' (the file is cut)"
                return
            n += 1
            s = line.strip()
            if n == 1 and s not in (b"[", b"") and not s.startswith(b"{"):
                raise FormatError(path, 0, f"not a Wikidata JSON dump (starts {s[:40]!r}; "
                                           f"expected '[' then one entity per line)")
            if s == b"]":
                closed = True
                continue
            if s in (b"[", b""):
                continue
            if s.endswith(b","):
                s = s[:-1]
            try:
                entity = json.loads(s)
            except ValueError as exc:
                if not report.entities:
                    raise FormatError(path, 0, "not a Wikidata JSON dump (line "
                                               f"{n} is not one JSON entity: {exc})") from exc
                if not line.endswith(b"\n"):
                    report.truncated = f"line {n} is cut short"
                    return
                raise FormatError(path, -1, f"line {n}: not a JSON entity ({exc})") from exc
            report.entities += 1
            yield entity


def claim_values(entity: dict[str, Any], prop: str) -> list[str]:
    """The main-snak values of property ``prop`` (ids for items, text for strings, the time
    or amount for those types, ``lat,lon`` for coordinates)."""
    out = []
    for claim in entity.get("claims", {}).get(prop, []):
        snak = claim.get("mainsnak", {})
        value = snak.get("datavalue", {}).get("value")
        if value is None:
            continue
        if isinstance(value, dict):
            if "id" in value:
                out.append(value["id"])
            elif "numeric-id" in value:
                out.append(("P" if value.get("entity-type") == "property" else "Q")
                           + str(value["numeric-id"]))
            elif "time" in value:
                out.append(value["time"])
            elif "amount" in value:
                out.append(value["amount"])
            elif "latitude" in value:
                out.append(f"{value['latitude']},{value['longitude']}")
            elif "text" in value:
                out.append(value["text"])
            else:
                out.append(json.dumps(value, sort_keys=True))
        else:
            out.append(str(value))
    return out


@dataclass(frozen=True)
class PropertyFilter:
    """``P31`` (has any value) or ``P31=Q5`` (has that value)."""

    prop: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> PropertyFilter:
        prop, eq, value = text.strip().partition("=")
        if not re.match(r"^P\d+$", prop) or (eq and not value):
            raise DlprepError(f"--where: {text!r} should be P31 or P31=Q5")
        return cls(prop, value or None)

    def matches(self, entity: dict[str, Any]) -> bool:
        values = claim_values(entity, self.prop)
        return bool(values) if self.value is None else self.value in values


def entity_rows(entities: Iterator[dict[str, Any]], *, where: Sequence[PropertyFilter] = (),
                props: Sequence[str] = (), lang: str = "en",
                report: EntityReport | None = None) -> tuple[list[str], Iterator[list[str]]]:
    """Columns ``id, label, description`` + one per property (values joined by ``|``), for
    the entities that match every filter."""
    columns = ["id", "label", "description", *props]

    def rows() -> Iterator[list[str]]:
        for e in entities:
            if not all(f.matches(e) for f in where):
                continue
            if report is not None:
                report.matched += 1
            label = e.get("labels", {}).get(lang, {}).get("value", "")
            desc = e.get("descriptions", {}).get(lang, {}).get("value", "")
            yield [e.get("id", ""), label, desc, *("|".join(claim_values(e, p)) for p in props)]

    return columns, rows()
