"""Builder parameters: declared once, validated from recipe defaults and CLI ``--key value``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DlprepError


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _csv_int(text: str) -> list[int]:
    return [int(part) for part in _csv(text)]


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": str, "int": int, "float": float, "bool": _bool, "list": _csv, "int-list": _csv_int,
}


@dataclass(frozen=True)
class Param:
    """One option of a builder/connector, e.g. ``Param("size", "int", 64, "output side in px")``."""

    name: str
    type: str = "str"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def convert(self, value: Any, where: str) -> Any:
        if value is None:
            return None
        if isinstance(value, list) and self.type not in {"list", "int-list"}:
            raise DlprepError(f"{where}: {self.flag}: given more than once")
        try:
            if isinstance(value, str) and self.type != "str":
                value = CONVERTERS[self.type](value)
            elif self.type == "int-list" and isinstance(value, int):
                value = [value]
            elif self.type in {"list", "int-list"} and isinstance(value, list):
                conv = int if self.type == "int-list" else str
                value = [x for v in value
                         for x in (CONVERTERS[self.type](v) if isinstance(v, str) else [conv(v)])]
            elif self.type == "int":
                value = int(value)
            elif self.type == "float":
                value = float(value)
        except (TypeError, ValueError) as exc:
            raise DlprepError(f"{where}: {self.flag}: {exc}") from exc
        if self.choices and value not in self.choices:
            raise DlprepError(f"{where}: {self.flag}: {value!r} is not one of "
                              f"{', '.join(self.choices)}")
        return value


def resolve_options(params: Sequence[Param], defaults: Mapping[str, Any],
                    overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge param defaults < recipe ``[options]`` < CLI overrides; unknown keys are errors."""
    known = {p.name: p for p in params}
    for source, table in (("recipe options", defaults), ("option", overrides)):
        for key in table:
            if key not in known:
                allowed = ", ".join(p.flag for p in params) or "(none)"
                flag = "--" + key.replace("_", "-")
                raise DlprepError(f"{where}: unknown {source} {flag}; this dataset takes: "
                                  f"{allowed}")
    out: dict[str, Any] = {}
    for p in params:
        value = overrides.get(p.name, defaults.get(p.name, p.default))
        out[p.name] = p.convert(value, where)
    return out


def parse_extra_args(args: Sequence[str], where: str) -> dict[str, Any]:
    """Turn ``["--per-class", "10", "--grayscale"]`` into
    ``{"per_class": "10", "grayscale": "true"}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise DlprepError(f"{where}: unexpected argument {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                value = "true"
        key = key.replace("-", "_")
        if key in out:  # a repeated option (e.g. --dump A --dump B) collects a list
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
        i += 1
    return out
