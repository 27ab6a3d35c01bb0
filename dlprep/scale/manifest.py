"""The manifest of a sharded build: which shards are finished, next to their part files.

``<parts_dir>/manifest.jsonl``: a header line ``{"manifest": 1, "key": KEY}`` then one line per
finished shard ``{"id", "digest", "size", "seconds", "stats"}``, appended (and fsynced) only
after the shard's part file was renamed into place. ``KEY`` digests the build's configuration
and the whole plan: a run whose key differs starts over (its parts are deleted). A torn last
line (a crash while appending) and records whose part file is missing or has another size are
ignored, so those shards run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .shards import ShardResult, ShardSpec

log = logging.getLogger("dlprep")

NAME = "manifest.jsonl"
PART_SUFFIX = ".shard"  # not ".part": `cache prune` takes those for partial downloads
TMP_SUFFIX = ".tmp"


def part_path(parts_dir: Path, spec_id: str) -> Path:
    return parts_dir / f"{spec_id}{PART_SUFFIX}"


def temp_part_path(parts_dir: Path, spec_id: str, token: str) -> Path:
    """Where a shard writes before the rename (hidden, unique per attempt)."""
    return parts_dir / f".{spec_id}.{token}{TMP_SUFFIX}"


class Manifest:
    """Finished shards of one parts folder (open with :meth:`open`, then :meth:`record`)."""

    def __init__(self, parts_dir: Path, key: str) -> None:
        self.parts_dir = Path(parts_dir)
        self.key = key
        self.path = self.parts_dir / NAME
        self.done: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(cls, parts_dir: Path, key: str) -> Manifest:
        """Read the manifest (when its key matches) and clear what a crash left: stray temp
        parts, and every part when the key changed or there was no manifest."""
        m = cls(parts_dir, key)
        m.parts_dir.mkdir(parents=True, exist_ok=True)
        lines, torn = m._read_lines()
        if lines and lines[0].get("manifest") == 1 and lines[0].get("key") == key:
            for rec in lines[1:]:
                if isinstance(rec.get("id"), str):
                    m.done[rec["id"]] = rec
            if torn:  # rewrite without the torn line, so that new records can follow
                m._write_header(list(m.done.values()))
        else:
            if lines:
                log.info("%s: the configuration or the plan changed; starting over", m.path)
            for p in m.parts_dir.glob(f"*{PART_SUFFIX}"):
                p.unlink(missing_ok=True)
            m._write_header()
        for p in m.parts_dir.glob(f".*{TMP_SUFFIX}"):
            p.unlink(missing_ok=True)
        return m

    def _read_lines(self) -> tuple[list[dict[str, Any]], bool]:
        """The records up to the first unreadable line, and whether there was one."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return [], False
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                return out, True  # a torn line: what follows it cannot be trusted
            if not isinstance(rec, dict):
                return out, True
            out.append(rec)
        return out, False

    def _write_header(self, records: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        tmp = self.path.with_name(f".{NAME}{TMP_SUFFIX}")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"manifest": 1, "key": self.key}) + "\n")
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def finished(self, spec: ShardSpec) -> ShardResult | None:
        """The recorded result of ``spec`` when its record and part file are intact."""
        rec = self.done.get(spec.id)
        if rec is None or rec.get("digest") != spec.digest():
            return None
        try:
            size = part_path(self.parts_dir, spec.id).stat().st_size
        except OSError:
            return None
        if size != rec.get("size"):
            return None
        return ShardResult(spec.id, dict(rec.get("stats") or {}), float(rec.get("seconds", 0)),
                           size, resumed=True)

    def record(self, spec: ShardSpec, result: ShardResult) -> None:
        """Append ``result`` (its part is already in place) and fsync."""
        rec = {"id": spec.id, "digest": spec.digest(), "size": result.size,
               "seconds": round(result.seconds, 6), "stats": result.stats}
        line = json.dumps(rec, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.done[spec.id] = rec

    def clear_temps(self) -> None:
        for p in self.parts_dir.glob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()
