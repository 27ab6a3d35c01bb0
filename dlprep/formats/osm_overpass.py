"""Overpass API replies (``out geom``, JSON or XML) -> the same :class:`Feature` records as files.

Ways become lines (and areas too when closed, as libosmium does); multipolygon relations become
areas whose rings are joined from their member ways' geometry. A reply with a ``remark`` that
reports a runtime error (timeout, out of memory) is refused with that remark: such replies are
cut short and silently incomplete otherwise.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .osm import Feature, ReadStats

_SCALE = 10_000_000


def _fixed(lon: float, lat: float) -> tuple[int, int]:
    return int(round(float(lon) * _SCALE)), int(round(float(lat) * _SCALE))


def _ring_array(points: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray(points, dtype=np.int64).reshape(-1, 2)


def check_remark(remark: str | None, where: str) -> None:
    """Raise ``FormatError`` for a remark that reports an error (``runtime error: ...``)."""
    if remark and ("error" in remark.lower()):
        text = " ".join(remark.split())
        raise FormatError(where, -1, f"Overpass reported: {text}")


def join_rings(parts: list[list[tuple[int, int]]]) -> tuple[list[list[tuple[int, int]]], int]:
    """Join open way geometries end to end into closed rings; returns (rings, parts left over)."""
    todo = [list(p) for p in parts if len(p) >= 2]
    rings: list[list[tuple[int, int]]] = []
    while todo:
        ring = todo.pop(0)
        while ring[0] != ring[-1]:
            for i, part in enumerate(todo):
                if part[0] == ring[-1]:
                    ring.extend(part[1:])
                elif part[-1] == ring[-1]:
                    ring.extend(reversed(part[:-1]))
                else:
                    continue
                todo.pop(i)
                break
            else:
                break
        if ring[0] == ring[-1] and len(ring) >= 4:
            rings.append(ring)
        else:
            return rings, len(todo) + 1
    return rings, 0


def _closed_way_area(nodes: list[Any], tags: dict[str, str]) -> bool:
    return len(nodes) >= 4 and nodes[0] == nodes[-1] and tags.get("area") != "no"


def _way_features(osm_id: int, tags: dict[str, str], points: list[tuple[int, int]],
                  refs: list[Any], stats: ReadStats) -> Iterator[Feature]:
    if len(points) < 2:
        stats.skip(osm_id)
        return
    coords = _ring_array(points)
    stats.ways += 1
    yield Feature(osm_id, "way", False, tags, [coords])
    if _closed_way_area(refs or points, tags):
        stats.areas += 1
        yield Feature(osm_id, "way", True, tags, [coords], [True])


def _relation_feature(osm_id: int, tags: dict[str, str],
                      members: list[tuple[str, list[tuple[int, int]]]],
                      stats: ReadStats) -> Feature | None:
    if tags.get("type") not in ("multipolygon", "boundary"):
        return None
    outer_rings, left_o = join_rings([g for role, g in members if role != "inner"])
    inner_rings, left_i = join_rings([g for role, g in members if role == "inner"])
    if left_o or left_i or not outer_rings:
        stats.skip(osm_id)
        return None
    rings = [_ring_array(r) for r in outer_rings] + [_ring_array(r) for r in inner_rings]
    stats.areas += 1
    return Feature(osm_id, "relation", True, tags, rings,
                   [True] * len(outer_rings) + [False] * len(inner_rings))


def read_overpass(path: Path, stats: ReadStats | None = None) -> Iterator[Feature]:
    """Features of a cached Overpass reply (JSON or XML, told apart by the first byte)."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    raw = path.read_bytes()
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"{":
        yield from _read_json(raw, path, stats)
    elif head == b"<":
        yield from _read_xml(raw, path, stats)
    else:
        raise FormatError(path, 0, f"not an Overpass JSON or XML reply (starts {raw[:16]!r})")


def _geometry(items: Any) -> list[tuple[int, int]] | None:
    """(lon, lat) points of an ``out geom`` geometry list; None if one is missing (clipped)."""
    points = []
    for g in items or ():
        if not g or "lat" not in g or "lon" not in g:
            return None
        points.append(_fixed(g["lon"], g["lat"]))
    return points


def _read_json(raw: bytes, path: Path, stats: ReadStats) -> Iterator[Feature]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(path, getattr(exc, "pos", -1), f"invalid Overpass JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("elements"), list):
        raise FormatError(path, 0, "Overpass JSON without an 'elements' list")
    check_remark(doc.get("remark"), str(path))
    for el in doc["elements"]:
        kind, tags = el.get("type"), {str(k): str(v) for k, v in (el.get("tags") or {}).items()}
        if kind == "way":
            points = _geometry(el.get("geometry"))
            if points is None:
                stats.skip(int(el.get("id", 0)))
                continue
            yield from _way_features(int(el["id"]), tags, points, el.get("nodes") or [], stats)
        elif kind == "relation":
            members = []
            for m in el.get("members") or ():
                if m.get("type") != "way":
                    continue
                points = _geometry(m.get("geometry"))
                if points is None:
                    members = None
                    break
                members.append((str(m.get("role") or "outer"), points))
            if members is None:
                stats.skip(int(el["id"]))
                continue
            feat = _relation_feature(int(el["id"]), tags, members, stats)
            if feat is not None:
                yield feat


def _xml_points(parent: ET.Element) -> list[tuple[int, int]] | None:
    points = []
    for nd in parent.findall("nd"):
        if "lat" not in nd.attrib or "lon" not in nd.attrib:
            return None
        points.append(_fixed(nd.attrib["lon"], nd.attrib["lat"]))
    return points


def _read_xml(raw: bytes, path: Path, stats: ReadStats) -> Iterator[Feature]:
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise FormatError(path, -1, f"invalid Overpass XML: {exc}") from exc
    if root.tag != "osm":
        raise FormatError(path, 0, f"Overpass XML root <{root.tag}> is not <osm>")
    for remark in root.findall("remark"):
        check_remark(remark.text, str(path))
    for el in root:
        tags = {t.attrib["k"]: t.attrib.get("v", "") for t in el.findall("tag")}
        if el.tag == "way":
            points = _xml_points(el)
            if points is None:
                stats.skip(int(el.attrib["id"]))
                continue
            refs = [nd.attrib.get("ref") for nd in el.findall("nd")]
            yield from _way_features(int(el.attrib["id"]), tags, points, refs, stats)
        elif el.tag == "relation":
            members: list[tuple[str, list[tuple[int, int]]]] | None = []
            for m in el.findall("member"):
                if m.attrib.get("type") != "way":
                    continue
                points = _xml_points(m)
                if points is None:
                    members = None
                    break
                members.append((m.attrib.get("role") or "outer", points))
            if members is None:
                stats.skip(int(el.attrib["id"]))
                continue
            feat = _relation_feature(int(el.attrib["id"]), tags, members, stats)
            if feat is not None:
                yield feat
