"""Wikidata SPARQL (real result bodies, 429-then-OK, User-Agent checked by the server, one
request at a time, cache + offline replay), the real entity-dump excerpt, and Commons
thumbnails served from real photos."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h5py
import pytest

from dlprep.cli import main
from dlprep.errors import DlprepError, FormatError
from dlprep.sources import commons
from dlprep.sources.wikidata import (
    EntityReport,
    PropertyFilter,
    entity_rows,
    iter_entities,
    parse_results,
    shorten,
)

RESULTS = "wikidata/results_with_labels_descriptions_and_aliases.json"
OPTIONAL = "wikidata/sparql_results_with_optional_values.json"
# a real Blazegraph answer to a query with a syntax error (HTTP 400), abridged to its first lines
SYNTAX_ERROR = (b"SPARQL-QUERY: queryStr=SELECT ?item WHERE { ?item wdt:P31 wd:Q146 \n"
                b"java.util.concurrent.ExecutionException: org.openrdf.query.MalformedQuery"
                b"Exception: Encountered \"<EOF>\" at line 1, column 39.\nWas expecting one of:"
                b"\n    \"}\" ...\n\tat java.util.concurrent.FutureTask.report("
                b"FutureTask.java:122)")


class SparqlServer:
    """A loopback SPARQL endpoint: answers from a queue of (status, headers, body); refuses
    requests without a descriptive User-Agent (403, as Wikimedia does); records the queries
    and the most requests it ever had in flight."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.files: dict[str, bytes] = {}  # other paths served as they are (thumbnails)
        self.delay = 0.0
        self.queries: list[str] = []
        self.agents: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                with owner.lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                counted = True
                try:
                    agent = self.headers.get("User-Agent", "")
                    owner.agents.append(agent)
                    owner.queries.append(parse_qs(urlsplit(self.path).query).get("query",
                                                                                  [""])[0])
                    if owner.delay:
                        time.sleep(owner.delay)
                    path = urlsplit(self.path).path
                    if not agent.startswith("dlprep/") or "python-requests/" not in agent:
                        status, headers, body = 403, {}, b"Please set a user-agent\n"
                    elif path in owner.files:
                        status, headers, body = 200, {"Content-Type": "image/jpeg"}, \
                            owner.files[path]
                    elif path != "/sparql":
                        status, headers, body = 404, {}, b"not found\n"
                    else:
                        with owner.lock:
                            status, headers, body = owner.answers.pop(0)
                    # the request is answered from here on: count it out BEFORE the client can
                    # read the answer (else its next request could overlap this decrement)
                    with owner.lock:
                        owner.in_flight -= 1
                        counted = False
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/sparql-results+json",
                                 **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    if counted:
                        with owner.lock:
                            owner.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sparql"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sparql():  # type: ignore[no-untyped-def]
    server = SparqlServer()
    yield server
    server.close()


def _run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_query_429_then_ok_cached_and_replayed_offline(sparql, realdata: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       cache_dir: Path, capsys) -> None:
    body = (realdata / RESULTS).read_bytes()
    sparql.answers = [(429, {"Retry-After": "0"}, b"Too Many Requests\n"), (200, {}, body)]
    rq = tmp_path / "pseudonyms.rq"
    rq.write_text("SELECT ?item ?pseudonyme ?itemLabel ?itemDescription ?itemAltLabel WHERE { "
                  "?item wdt:P742 ?pseudonyme . SERVICE wikibase:label { bd:serviceParam "
                  "wikibase:language \"[AUTO_LANGUAGE],en\". } } LIMIT 50\n")
    out_csv = tmp_path / "results.csv"
    rc, out, err = _run(capsys, "wikidata", "query", str(rq), "--endpoint", sparql.url,
                        "--out", str(out_csv), "--cache-dir", str(cache_dir))
    assert rc == 0, err
    assert len(sparql.queries) == 2 and "wdt:P742" in sparql.queries[1]
    assert all(a.startswith("dlprep/") for a in sparql.agents) and sparql.max_in_flight == 1
    rows = list(csv.reader(io.StringIO(out_csv.read_text("utf-8"))))
    assert rows[0] == ["item", "pseudonyme", "itemLabel", "itemDescription", "itemAltLabel"]
    assert len(rows) == 51 and rows[1][:3] == ["Q5798647", "11", "Daniel Rojo"]
    # replayed from the cache, offline: no request, same table (parquet this time)
    pq = pytest.importorskip("pyarrow.parquet")
    out_pq = tmp_path / "results.parquet"
    rc, _, err = _run(capsys, "wikidata", "query", str(rq), "--endpoint", sparql.url,
                      "--out", str(out_pq), "--offline", "--cache-dir", str(cache_dir))
    assert rc == 0, err
    assert len(sparql.queries) == 2
    table = pq.read_table(out_pq)
    assert table.column_names == rows[0]
    assert table.column("item").to_pylist() == [r[0] for r in rows[1:]]


def test_query_errors_one_line(sparql, tmp_path: Path, cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rq = tmp_path / "bad.rq"
    rq.write_text("SELECT ?item WHERE { ?item wdt:P31 wd:Q146 ")
    sparql.answers = [(400, {"Content-Type": "text/plain"}, SYNTAX_ERROR),
                      (200, {"Content-Type": "text/html"},
                       b"<!DOCTYPE html><html><body>Wikimedia Error</body></html>")]
    base = ["wikidata", "query", str(rq), "--endpoint", sparql.url, "--cache-dir",
            str(cache_dir), "--out", str(tmp_path / "r.csv")]
    rc, _, err = _run(capsys, *base)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "the query was rejected (HTTP 400): Encountered \"<EOF>\" at line 1, column 39." in err
    rc, _, err = _run(capsys, *base)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "answered with an HTML page, not SPARQL JSON results" in err
    assert not (tmp_path / "r.csv").exists() and not list(cache_dir.glob("api/**/*.json"))
    rc, _, err = _run(capsys, *base, "--offline")
    assert rc == 1 and "offline: this query's results are not in the cache" in err


def test_query_timeout(sparql, realdata: Path, tmp_path: Path, cache_dir: Path,  # type: ignore[no-untyped-def]
                       capsys) -> None:
    sparql.answers = [(200, {}, (realdata / RESULTS).read_bytes())]
    sparql.delay = 1.5
    rq = tmp_path / "q.rq"
    rq.write_text("SELECT ?item WHERE { ?item wdt:P742 ?p } LIMIT 50")
    rc, _, err = _run(capsys, "wikidata", "query", str(rq), "--endpoint", sparql.url,
                      "--timeout", "0.3", "--cache-dir", str(cache_dir))
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "no answer within 0.3 s" in err and not list(cache_dir.glob("api/**/*.json"))


def test_results_parsing_real_bodies(realdata: Path) -> None:
    opt = parse_results((realdata / OPTIONAL).read_bytes(), "x")
    assert len(opt.variables) == 15 and opt.variables[0] == "label"
    first = dict(zip(opt.variables, opt.rows[0], strict=True))
    assert first["composer"] == "Q952428" and first["countryOfOrigin"] == "Q183"
    assert first["label"] == "Tarzan" and first["duration"] == "94"
    assert any(v is None for row in opt.rows for v in row)  # OPTIONAL, unbound
    single = parse_results((realdata / "wikidata/single_var_sparql_results.json").read_bytes(),
                           "x")
    assert single.variables == ["genre"] and "_:t284055162" in [r[0] for r in single.rows]
    assert shorten("http://www.wikidata.org/prop/direct/P31") == "P31"
    assert shorten("https://fr.wikipedia.org/wiki/Tarzan") == "https://fr.wikipedia.org/wiki/Tarzan"
    with pytest.raises(FormatError, match="not SPARQL JSON results"):
        parse_results(b'{"error": 1}', "x")


def test_entity_dump_excerpt_with_filters(realdata: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    dump = realdata / "wikidata/entities.gz"
    report = EntityReport()
    entities = list(iter_entities(dump, report))
    assert len(entities) == 49 and entities[0]["id"] == "Q22"
    assert report.truncated == "no closing ']' (the file is cut)"  # it is `head -n 50`
    columns, rows = entity_rows(iter(entities), where=[PropertyFilter.parse("P31=Q5")],
                                props=["P569", "P18"])
    table = list(rows)
    assert columns == ["id", "label", "description", "P569", "P18"]
    assert [r[0] for r in table] == ["Q23", "Q185", "Q255", "Q306"]
    assert table[0][1] == "George Washington" and table[0][3].startswith("+1732-02-22")
    # cut mid-entity: every complete entity, one warning
    raw = gzip.decompress(dump.read_bytes())
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    out = tmp_path / "humans.csv"
    rc, _, err = _run(capsys, "wikidata", "entities", str(cut), "--where", "P31=Q5",
                      "--props", "P569", "--out", str(out))
    assert rc == 0, err
    assert sum("ends early" in line for line in err.splitlines()) == 1
    rows_cut = list(csv.reader(out.open(encoding="utf-8")))
    assert rows_cut[0] == ["id", "label", "description", "P569"]
    assert [r[0] for r in rows_cut[1:]] == [r[0] for r in table if r[0] in
                                            {e["id"] for e in iter_entities(cut)}]
    rc, _, err = _run(capsys, "wikidata", "entities", str(realdata / RESULTS), "--out",
                      str(out))
    assert rc == 1 and "not a Wikidata JSON dump" in err
    with pytest.raises(DlprepError, match="should be P31 or P31=Q5"):
        PropertyFilter.parse("instance of=human")


# --- Commons ---------------------------------------------------------------------------------

PHOTOS = {  # real photos in realdata/images, under the Commons names their sources give
    "Road_to_Versailles_at_Louveciennes_1869_Camille_Pissarro.jpg":
        ("road-to-versailles-at-louveciennes.jpg", "painting", "Public domain",
         "Camille Pissarro"),
    "Fundus_photograph_of_normal_left_eye.jpg":
        ("retina.jpg", "photograph", "CC0", "Mikael Häggström"),
    "Hubble_deep_field.jpg": ("hubble_deep_field.jpg", "photograph", "Public domain", "NASA"),
    "Saturn_V_rocket.jpg": ("rocket.jpg", "photograph", "Public domain", "NASA"),
}


def test_commons_md5_paths() -> None:
    # the example of Wikimedia's own documentation of the layout
    assert commons.thumb_url("Example.jpg", 250) == (
        "https://upload.wikimedia.org/wikipedia/commons/thumb/a/a9/Example.jpg/250px-Example.jpg")
    assert commons.file_name("http://commons.wikimedia.org/wiki/Special:FilePath/"
                             "Fundus%20photograph%20of%20normal%20left%20eye.jpg") == \
        "Fundus_photograph_of_normal_left_eye.jpg"
    assert commons.thumb_url("Flag.svg", 64, "http://m/c").endswith("/64px-Flag.svg.png")


def test_fetch_wikidata_images(loopback, sparql, realdata: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                               cache_dir: Path, capsys) -> None:
    bindings = []
    for name, (photo, label, _, _) in PHOTOS.items():
        md5 = hashlib.md5(name.encode()).hexdigest()
        sparql.files[f"/commons/thumb/{md5[0]}/{md5[:2]}/{name}/250px-{name}"] = \
            (realdata / "images" / photo).read_bytes()
        bindings.append({"kindLabel": {"type": "literal", "xml:lang": "en", "value": label},
                         "image": {"type": "uri", "value": "http://commons.wikimedia.org/wiki/"
                                   "Special:FilePath/" + name.replace("_", "%20")}})
    missing = "Not_on_the_mirror.jpg"
    bindings.append({"kindLabel": {"type": "literal", "value": "photograph"},
                     "image": {"type": "uri", "value": "http://commons.wikimedia.org/wiki/"
                               "Special:FilePath/" + missing}})
    sparql.answers = [(200, {}, json.dumps({"head": {"vars": ["kindLabel", "image"]},
                                            "results": {"bindings": bindings}}).encode())]
    pages = {str(-i): {"ns": 6, "title": "File:" + n.replace("_", " "), "imageinfo": [
        {"extmetadata": {"LicenseShortName": {"value": lic},
                         "Artist": {"value": f"<a href=\"//x\">{auth}</a>"}}}]}
        for i, (n, (_, _, lic, auth)) in enumerate(PHOTOS.items())}
    loopback.serve("/w/api.php", json.dumps({"query": {"pages": pages}}).encode(),
                   content_type="application/json")
    rq = tmp_path / "kinds.rq"
    rq.write_text("SELECT ?kindLabel ?image WHERE { ?item wdt:P18 ?image } LIMIT 5\n")
    sparql.delay = 0.05  # requests overlap: the cap of 2 in flight is what limits them
    rc, out, err = _run(capsys, "fetch", "wikidata-images", "--cache-dir", str(cache_dir),
                        "--query", str(rq), "--label-var", "kindLabel", "--image-var", "image",
                        "--size", "32", "--endpoint", sparql.url,
                        "--commons-base", sparql.url.replace("/sparql", "/commons"),
                        "--commons-api", loopback.url("/w/api.php"), "--name", "kinds")
    assert rc == 0, err
    with h5py.File(out.strip().splitlines()[-1], "r") as f:
        assert f["images"].shape == (4, 32, 32, 3)
        assert [c.decode() for c in f["classes"][()]] == ["painting", "photograph"]
        ids = [i.decode() for i in f["meta/ids"][()]]
        by_id = {i: (f["meta/license"][k].decode(), f["meta/author"][k].decode())
                 for k, i in enumerate(ids)}
        skipped = json.loads(f.attrs["skipped"])
    assert set(ids) == set(PHOTOS)
    assert by_id["Fundus_photograph_of_normal_left_eye.jpg"] == ("CC0", "Mikael Häggström")
    assert [s["name"] for s in skipped] == [missing]
    assert len(sparql.agents) == 6 and sparql.max_in_flight <= 2  # query + 5 thumbnails
    assert all(r.headers["User-Agent"].startswith("dlprep/") for r in loopback.log)
    rc, _, err = _run(capsys, "fetch", "wikidata-images", "--cache-dir", str(cache_dir),
                      "--query", str(rq), "--label-var", "itemLabel", "--endpoint", sparql.url)
    assert rc == 1 and "--label-var: the query has no variable 'itemLabel'" in err


def test_one_sparql_request_at_a_time(sparql, realdata: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from dlprep.sources.wikidata import SparqlClient

    body = (realdata / RESULTS).read_bytes()
    sparql.answers = [(200, {}, body) for _ in range(4)]
    sparql.delay = 0.1  # long enough for the four calls to overlap if nothing serialised them
    client = SparqlClient(tmp_path / "api", endpoint=sparql.url)
    queries = [f"SELECT ?item WHERE {{ ?item wdt:P742 ?p }} LIMIT {n}" for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client.query, queries))
    assert len(sparql.queries) == 4 and sparql.max_in_flight == 1
    assert all(len(r.rows) == 50 for r in results)


def test_query_refused_connection_is_one_plain_line(tmp_path: Path, cache_dir: Path,  # type: ignore[no-untyped-def]
                                                    capsys) -> None:
    """A refused connection fails at once with a classified reason, not requests' "Max retries
    exceeded with url ..." text that repeats the whole query string."""
    rq = tmp_path / "q.rq"
    rq.write_text("SELECT ?item WHERE { ?item wdt:P31 wd:Q146 }")
    rc, _, err = _run(capsys, "wikidata", "query", str(rq), "--endpoint",
                      "http://127.0.0.1:1/sparql", "--cache-dir", str(cache_dir),
                      "--out", str(tmp_path / "r.csv"))
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert "http://127.0.0.1:1/sparql: connection refused" in err
    assert "Max retries" not in err and "wdt:P31" not in err
