"""OSM over HTTP (loopback only): Geofabrik-style .pbf + .md5 downloads, and the Overpass API
(status slots, 429/504, remark errors, JSON and XML replies, caching by query hash, --offline).

The Overpass replies are the real aguascalientes extract written out in Overpass's ``out geom``
shape (JSON and XML), so the same area can be compared with the PBF path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs

import h5py
import numpy as np
import pytest
from conftest import invoke_cli

from dlprep.errors import FetchError
from dlprep.fetch.http import RetryPolicy
from dlprep.sources.osm import OverpassClient, overpass_query

osmium = pytest.importorskip("osmium")

AGUAS = "aguascalientes.osm.pbf"
BBOX = "21.8625789,-102.2799068,21.8752057,-102.2634632"
STATUS_FREE = (b"Connected as: 2130706433\nCurrent time: 2026-11-30T17:00:00Z\nRate limit: 2\n"
               b"2 slots available now.\nCurrently running queries (pid, space limit, time "
               b"limit, start time):\n")
REMARK = 'runtime error: Query timed out in "query" at line 3 after 181 seconds.'


def _geom(points: list[tuple[float, float]]) -> list[dict[str, float]]:
    return [{"lat": round(lat, 7), "lon": round(lon, 7)} for lon, lat in points]


def overpass_elements(pbf: Path, keys: set[str]) -> list[dict]:
    """The ways and multipolygon relations of ``pbf`` with one of ``keys``, as Overpass
    ``out geom`` elements."""
    ways: dict[int, tuple[list[int], list[tuple[float, float]], dict[str, str]]] = {}
    for w in osmium.FileProcessor(str(pbf)).with_locations().with_filter(
            osmium.filter.EntityFilter(osmium.osm.WAY)):
        ways[w.id] = ([nd.ref for nd in w.nodes], [(nd.lon, nd.lat) for nd in w.nodes],
                      dict(w.tags))
    out = [{"type": "way", "id": wid, "nodes": refs, "geometry": _geom(pts), "tags": tags}
           for wid, (refs, pts, tags) in ways.items() if keys & tags.keys()]
    for r in osmium.FileProcessor(str(pbf), osmium.osm.RELATION):
        tags = dict(r.tags)
        if tags.get("type") != "multipolygon" or not keys & tags.keys():
            continue
        members = [{"type": "way", "ref": m.ref, "role": m.role,
                    "geometry": _geom(ways[m.ref][1])}
                   for m in r.members if m.type == "w" and m.ref in ways]
        out.append({"type": "relation", "id": r.id, "members": members, "tags": tags})
    return out


def json_reply(elements: list[dict], remark: str | None = None) -> bytes:
    doc = {"version": 0.6, "generator": "Overpass API 0.7.62.1 087a1a6b",
           "osm3s": {"timestamp_osm_base": "2026-11-30T16:59:00Z",
                     "copyright": "The data included in this document is from "
                                  "www.openstreetmap.org. The data is made available under "
                                  "ODbL."},
           "elements": elements}
    if remark:
        doc["remark"] = remark
    return json.dumps(doc, ensure_ascii=False).encode()


def xml_reply(elements: list[dict]) -> bytes:
    from xml.sax.saxutils import quoteattr as q

    def nds(geom: list[dict], refs: list[int] | None = None) -> str:
        return "".join(f'<nd{f" ref={q(str(refs[i]))}" if refs else ""} lat="{g["lat"]}" '
                       f'lon="{g["lon"]}"/>' for i, g in enumerate(geom))

    def tags(t: dict) -> str:
        return "".join(f"<tag k={q(k)} v={q(v)}/>" for k, v in t.items())

    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="Overpass '
             'API 0.7.62.1 087a1a6b">\n<note>The data included in this document is from '
             'www.openstreetmap.org.</note>\n']
    for el in elements:
        if el["type"] == "way":
            parts.append(f'<way id="{el["id"]}">{nds(el["geometry"], el["nodes"])}'
                         f'{tags(el["tags"])}</way>\n')
        else:
            members = "".join(f'<member type="way" ref="{m["ref"]}" role={q(m["role"])}>'
                              f'{nds(m["geometry"])}</member>' for m in el["members"])
            parts.append(f'<relation id="{el["id"]}">{members}{tags(el["tags"])}</relation>\n')
    parts.append("</osm>\n")
    return "".join(parts).encode()


@pytest.fixture(scope="module")
def elements(request: pytest.FixtureRequest) -> list[dict]:
    from tests.conftest import REALDATA

    return overpass_elements(REALDATA / "osm" / AGUAS, {"highway", "building", "natural",
                                                        "waterway", "landuse", "leisure"})


def _fetch(cache_dir: Path, *args: str) -> Path:
    proc = invoke_cli("fetch", "osm", *args, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _fails(cache_dir: Path, *args: str, lines: int = 1) -> str:
    """A fetch that must fail: the error is the last of ``lines`` stderr lines (the download
    layer logs a failed checksum before giving up), non-zero exit, no file left."""
    proc = invoke_cli("fetch", "osm", *args, cache_dir=cache_dir)
    out = proc.stderr.strip().splitlines()
    err = out[-1] if out else ""
    assert proc.returncode != 0 and err.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and len(out) == lines, proc.stderr
    assert not list(cache_dir.rglob("*.h5")) and not list(cache_dir.rglob(".tmp-*"))
    return err


def test_pbf_url_and_region_are_verified_against_their_md5(realdata: Path, cache_dir: Path,
                                                            loopback) -> None:
    data = (realdata / "osm" / AGUAS).read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    loopback.serve("/north-america/mexico/aguas-latest.osm.pbf", data)
    loopback.serve("/north-america/mexico/aguas-latest.osm.pbf.md5",
                   f"{md5}  aguas-latest.osm.pbf\n".encode(), content_type="text/plain")
    out = _fetch(cache_dir, "--region", "north-america/mexico/aguas", "--base-url",
                 loopback.base_url)
    with h5py.File(out) as f:
        sources = json.loads(f.attrs["sources"])
        assert sources[0]["name"] == "pbf/aguas-latest.osm.pbf"
        assert sources[0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["images"].shape[0] > 100
    before = loopback.requests()
    again = _fetch(cache_dir, "--pbf", loopback.url("north-america/mexico/aguas-latest.osm.pbf"))
    assert again.is_file() and loopback.requests() == before  # cached: no request at all


def test_pbf_with_a_wrong_md5_is_refused(realdata: Path, cache_dir: Path, loopback) -> None:
    data = (realdata / "osm" / AGUAS).read_bytes()
    loopback.serve("/x-latest.osm.pbf", data)
    loopback.serve("/x-latest.osm.pbf.md5", b"0123456789abcdef0123456789abcdef  x.pbf\n",
                   content_type="text/plain")
    err = _fails(cache_dir, "--pbf", loopback.url("x-latest.osm.pbf"), lines=2)
    assert "x-latest.osm.pbf" in err and "md5 mismatch" in err
    assert not list(cache_dir.rglob("x-latest.osm.pbf"))
    loopback.serve("/y-latest.osm.pbf", data)
    loopback.serve("/y-latest.osm.pbf.md5", b"<html>nope</html>", content_type="text/plain")
    err = _fails(cache_dir, "--pbf", loopback.url("y-latest.osm.pbf"))
    assert "md5" in err
    # a server that publishes no .md5 at all (404): a warning, and the file is still read
    loopback.serve("/extracts/town.osm.bz2", (realdata / "osm" / "West-Oakland.osm.bz2")
                   .read_bytes())
    proc = invoke_cli("fetch", "osm", "--pbf", loopback.url("extracts/town.osm.bz2"),
                      cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "town.osm.bz2.md5: not found (HTTP 404)" in proc.stderr


@pytest.mark.parametrize("fmt,reply", [("json", json_reply), ("xml", xml_reply)])
def test_overpass_replies_give_the_same_tiles_as_the_extract(realdata: Path, tmp_path: Path,
                                                             loopback, elements: list[dict],
                                                             fmt: str, reply) -> None:
    loopback.serve("/api/status", STATUS_FREE, content_type="text/plain")
    loopback.serve("/api/interpreter", reply(elements),
                   content_type="application/json" if fmt == "json" else "application/osm3s+xml")
    url = loopback.url("api/interpreter")
    out = _fetch(tmp_path / "c", "--bbox", BBOX, "--overpass", url, "--overpass-format", fmt)
    post = loopback.requests_for("/api/interpreter")[0]
    assert post.method == "POST"
    query = parse_qs(post.body.decode())["data"][0]
    assert f"[out:{fmt}]" in query and "[timeout:180]" in query and "out geom;" in query
    assert '[bbox:21.8625789,-102.2799068,21.8752057,-102.2634632]' in query
    assert 'way["highway"];' in query and 'relation["landuse"]["type"="multipolygon"];' in query
    assert [e.path for e in loopback.log[:2]] == ["/api/status", "/api/interpreter"]
    ref = _fetch(tmp_path / "p", "--pbf", str(realdata / "osm" / AGUAS), "--bbox", BBOX)
    with h5py.File(out) as fo, h5py.File(ref) as fr:
        assert fo.attrs["attribution"] == "© OpenStreetMap contributors, ODbL 1.0"
        assert np.array_equal(fo["meta/col"][()], fr["meta/col"][()])
        assert np.array_equal(fo["images"][()], fr["images"][()])
        assert np.array_equal(fo["labels"][()], fr["labels"][()])


def test_overpass_busy_answers_are_retried_and_replies_cached(cache_dir: Path, loopback,
                                                              elements: list[dict]) -> None:
    loopback.serve("/api/status", STATUS_FREE, content_type="text/plain")
    loopback.serve("/api/interpreter", json_reply(elements), content_type="application/json",
                   fail_first=1, fail_status=429, retry_after="0")
    url = loopback.url("api/interpreter")
    out = _fetch(cache_dir, "--bbox", BBOX, "--overpass", url, "--format", "ways")
    assert [e.status for e in loopback.requests_for("/api/interpreter")] == [429, 200]
    assert loopback.requests("/api/status") == 2  # a slot is checked before every request
    cached = list((cache_dir / "raw" / "osm" / "overpass").glob("*.json"))
    assert len(cached) == 1
    # the same query again: from the cache, also offline; another area offline: a clear error
    proc = invoke_cli("--offline", "fetch", "osm", "--bbox", BBOX, "--overpass", url, "--format",
                   "ways", cache_dir=cache_dir)
    assert proc.returncode == 0 and Path(proc.stdout.strip().splitlines()[-1]) == out
    assert loopback.requests("/api/interpreter") == 2
    proc = invoke_cli("--offline", "fetch", "osm", "--bbox", "21.87,-102.27,21.875,-102.265",
                   "--overpass", url, "--format", "ways", cache_dir=cache_dir)
    assert proc.returncode != 0 and "offline" in proc.stderr and "Traceback" not in proc.stderr
    loopback.serve("/api/interpreter", json_reply(elements), content_type="application/json",
                   fail_first=2, fail_status=504, retry_after="0")
    _fetch(cache_dir, "--bbox", BBOX, "--overpass", url, "--format", "ways", "--label-key",
           "building")
    assert [e.status for e in loopback.requests_for("/api/interpreter")][-3:] == [504, 504, 200]


def test_overpass_remark_errors_and_empty_areas_are_one_line(cache_dir: Path, loopback,
                                                             elements: list[dict]) -> None:
    loopback.serve("/api/status", STATUS_FREE, content_type="text/plain")
    loopback.serve("/api/interpreter", json_reply(elements[:5], remark=REMARK),
                   content_type="application/json")
    url = loopback.url("api/interpreter")
    err = _fails(cache_dir, "--bbox", BBOX, "--overpass", url)
    assert "runtime error: Query timed out" in err
    assert not list(cache_dir.rglob("overpass/*.json"))  # a cut-short reply is not cached
    xml = xml_reply(elements[:5]).replace(b"</osm>", f"<remark> {REMARK} </remark></osm>"
                                          .encode())
    loopback.serve("/api/interpreter", xml, content_type="application/osm3s+xml")
    err = _fails(cache_dir, "--bbox", BBOX, "--overpass", url, "--overpass-format", "xml")
    assert "runtime error" in err
    loopback.serve("/api/interpreter", json_reply([]), content_type="application/json")
    err = _fails(cache_dir, "--bbox", BBOX, "--overpass", url)
    assert "empty area" in err
    loopback.serve("/api/interpreter", b"", fail_first=1, fail_status=400)
    err = _fails(cache_dir, "--bbox", BBOX, "--overpass", url, "--label-key", "aeroway")
    assert "api/interpreter: HTTP 400" in err
    err = _fails(cache_dir, "--overpass", url)
    assert "--bbox" in err


def test_overpass_waits_for_a_free_slot(tmp_path: Path, loopback) -> None:
    loopback.serve("/api/status", b"Connected as: 1\nRate limit: 2\nSlot available after: "
                   b"2026-11-30T17:00:12Z, in 5 seconds.\nSlot available after: "
                   b"2026-11-30T17:00:40Z, in 33 seconds.\n", content_type="text/plain")
    loopback.serve("/api/interpreter", json_reply([]), content_type="application/json")
    slept: list[float] = []
    client = OverpassClient(loopback.url("api/interpreter"), tmp_path, max_wait=10,
                            retry=RetryPolicy(sleep=slept.append))
    with pytest.raises(FetchError, match="no free Overpass slot within 10 s"):
        client.run(overpass_query(["highway"], (21.86, -102.28, 21.87, -102.26)))
    assert slept == [6] and loopback.requests("/api/interpreter") == 0
    loopback.serve("/api/status", STATUS_FREE, content_type="text/plain")
    path = client.run(overpass_query(["highway"], (21.86, -102.28, 21.87, -102.26)))
    assert path.is_file() and slept == [6]
