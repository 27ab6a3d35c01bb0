"""The tag -> layer map of OSM map tiles (one image channel per layer) and line widths.

A layer spec is a TOML table of layers, in channel order::

    [highway]
    color = [70, 70, 70]          # preview colour
    lines = ["highway"]           # rules for ways drawn as lines
    widths = {motorway = 14, residential = 6, "*" = 4}   # metres, by the rule key's value
    [water]
    areas = ["natural=water", "landuse=reservoir|basin"]  # rules for filled areas
    lines = ["waterway=river|stream|canal|drain|ditch"]

A rule is ``key`` (any value) or ``key=v1|v2``. The keys of all rules (plus the label key) are
the tag filter handed to libosmium.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DlprepError

DEFAULT_LAYERS: dict[str, dict[str, Any]] = {
    "highway": {
        "color": [70, 70, 70],
        "lines": ["highway"],
        "widths": {"motorway": 14, "trunk": 12, "primary": 10, "secondary": 8, "tertiary": 7,
                   "motorway_link": 6, "trunk_link": 6, "primary_link": 6,
                   "residential": 6, "unclassified": 6, "living_street": 5, "service": 4,
                   "pedestrian": 4, "track": 3, "footway": 2, "path": 2, "cycleway": 2,
                   "steps": 2, "*": 4},
    },
    "building": {"color": [205, 95, 75], "areas": ["building"]},
    "water": {
        "color": [70, 130, 230],
        "areas": ["natural=water", "waterway=riverbank|dock", "landuse=reservoir|basin"],
        "lines": ["waterway=river|stream|canal|drain|ditch"],
        "widths": {"river": 10, "canal": 8, "stream": 3, "*": 2},
    },
    "green": {
        "color": [95, 175, 80],
        "areas": ["landuse=forest|grass|meadow|orchard|vineyard|recreation_ground|"
                  "village_green|allotments|cemetery|farmland|greenfield",
                  "leisure=park|garden|golf_course|nature_reserve|pitch|playground",
                  "natural=wood|scrub|grassland|heath"],
    },
}


@dataclass(frozen=True)
class Rule:
    """``key`` or ``key=v1|v2``: matches a tag set with that key (and one of those values)."""

    key: str
    values: frozenset[str] | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> Rule:
        key, eq, vals = str(text).partition("=")
        key = key.strip()
        values = frozenset(v.strip() for v in vals.split("|") if v.strip()) if eq else None
        if not key or (eq and not values):
            raise DlprepError(f"{where}: bad tag rule {text!r}; use key or key=value|value")
        return cls(key, values)

    def match(self, tags: Mapping[str, str]) -> str | None:
        """The matched tag value, or None."""
        value = tags.get(self.key)
        if value is None or (self.values is not None and value not in self.values):
            return None
        return value

    def text(self) -> str:
        return self.key if self.values is None else f"{self.key}={'|'.join(sorted(self.values))}"


@dataclass(frozen=True)
class Layer:
    """One channel: rules for lines and for areas, line widths (metres) and a preview colour."""

    name: str
    color: tuple[int, int, int]
    lines: tuple[Rule, ...] = ()
    areas: tuple[Rule, ...] = ()
    widths: tuple[tuple[str, float], ...] = ()
    default_width: float = 4.0

    def line_width(self, tags: Mapping[str, str]) -> float | None:
        """Width in metres when a line rule matches, else None."""
        for rule in self.lines:
            value = rule.match(tags)
            if value is not None:
                return dict(self.widths).get(value, self.default_width)
        return None

    def takes_area(self, tags: Mapping[str, str]) -> bool:
        return any(rule.match(tags) is not None for rule in self.areas)


@dataclass(frozen=True)
class LayerSpec:
    layers: tuple[Layer, ...]

    @property
    def names(self) -> list[str]:
        return [la.name for la in self.layers]

    def keys(self) -> list[str]:
        return sorted({r.key for la in self.layers for r in (*la.lines, *la.areas)})

    def line_matcher(self) -> Callable[[Mapping[str, str]], list[tuple[int, float]]]:
        """``f(tags)`` -> ``[(layer index, width in metres)]`` of the layers whose line rules
        match (as :meth:`Layer.line_width`, with the rules and widths looked up once)."""
        rules = [(li, r.key, r.values, dict(la.widths), la.default_width)
                 for li, la in enumerate(self.layers) for r in la.lines]

        def match(tags: Mapping[str, str]) -> list[tuple[int, float]]:
            out: list[tuple[int, float]] = []
            for li, key, values, widths, default in rules:
                value = tags.get(key)
                if value is not None and (values is None or value in values) and \
                        (not out or out[-1][0] != li):  # a layer's first matching rule
                    out.append((li, widths.get(value, default)))
            return out
        return match

    def area_matcher(self) -> Callable[[Mapping[str, str]], list[int]]:
        """``f(tags)`` -> the indices of the layers whose area rules match (as
        :meth:`Layer.takes_area`)."""
        rules = [(li, r.key, r.values) for li, la in enumerate(self.layers) for r in la.areas]

        def match(tags: Mapping[str, str]) -> list[int]:
            out: list[int] = []
            for li, key, values in rules:
                value = tags.get(key)
                if value is not None and (values is None or value in values) and \
                        (not out or out[-1] != li):
                    out.append(li)
            return out
        return match

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (for the config hash and the file's ``osm_layers``)."""
        out: dict[str, Any] = {}
        for la in self.layers:
            entry: dict[str, Any] = {"color": list(la.color)}
            if la.lines:
                entry["lines"] = [r.text() for r in la.lines]
                entry["widths"] = {**dict(la.widths), "*": la.default_width}
            if la.areas:
                entry["areas"] = [r.text() for r in la.areas]
            out[la.name] = entry
        return out


def parse_layers(data: Mapping[str, Any], where: str) -> LayerSpec:
    """Validate a layer table (see the module docstring); errors name ``where`` and the key."""
    if not isinstance(data, Mapping) or not data:
        raise DlprepError(f"{where}: expected a table of layers, e.g. [highway] lines = "
                          f"[\"highway\"]")
    layers = []
    for name, raw in data.items():
        at = f"{where}: {name}"
        if not isinstance(raw, Mapping):
            raise DlprepError(f"{at}: expected a table with lines/areas")
        unknown = set(raw) - {"color", "lines", "areas", "widths"}
        if unknown:
            raise DlprepError(f"{at}: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(allowed: color, lines, areas, widths)")
        rules = {}
        for kind in ("lines", "areas"):
            items = raw.get(kind, [])
            if isinstance(items, str) or not isinstance(items, list):
                raise DlprepError(f"{at}.{kind}: expected a list of tag rules")
            rules[kind] = tuple(Rule.parse(t, f"{at}.{kind}") for t in items)
        if not rules["lines"] and not rules["areas"]:
            raise DlprepError(f"{at}: give lines and/or areas rules")
        color = raw.get("color", [128, 128, 128])
        if (not isinstance(color, list) or len(color) != 3
                or not all(isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise DlprepError(f"{at}.color: expected [r, g, b] with values 0..255")
        widths = dict(raw.get("widths", {}))
        for k, v in widths.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise DlprepError(f"{at}.widths.{k}: expected a positive width in metres")
        default = float(widths.pop("*", 4.0))
        layers.append(Layer(str(name), (color[0], color[1], color[2]), rules["lines"],
                            rules["areas"], tuple(sorted((str(k), float(v))
                                                         for k, v in widths.items())), default))
    if len(layers) > 32:
        raise DlprepError(f"{where}: {len(layers)} layers; at most 32")
    return LayerSpec(tuple(layers))


def load_layers(value: str | Mapping[str, Any] | None) -> LayerSpec:
    """The layer spec: the defaults, a table from the recipe, or a ``--layers FILE.toml``."""
    if value is None or value == "":
        return parse_layers(DEFAULT_LAYERS, "default layers")
    if isinstance(value, Mapping):
        return parse_layers(value, "recipe options.layers")
    path = Path(str(value)).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DlprepError(f"--layers {path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DlprepError(f"--layers {path}: invalid TOML: {exc}") from exc
    return parse_layers(data, f"--layers {path}")
