"""The real upstream samples live in the repository, so a fresh clone runs every test."""

from __future__ import annotations

import hashlib
import re

from conftest import REALDATA, ROOT


def _listed_checksums() -> dict[str, str]:
    """The ``sha256  path`` lines of the fenced list at the end of PROVENANCE.md."""
    text = (REALDATA / "PROVENANCE.md").read_text(encoding="utf-8")
    block = text.rsplit("## sha256 list", 1)[1]
    return {m[2]: m[1] for m in re.finditer(r"^([0-9a-f]{64})  (\S.*)$", block, re.M)}


def test_realdata_is_inside_the_checkout_and_matches_its_provenance() -> None:
    assert REALDATA.is_relative_to(ROOT / "tests"), REALDATA
    listed = _listed_checksums()
    assert len(listed) == 59
    on_disk = {p.relative_to(REALDATA).as_posix() for p in REALDATA.rglob("*") if p.is_file()}
    assert on_disk - {"PROVENANCE.md"} == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((REALDATA / name).read_bytes()).hexdigest() == digest, name


def test_no_test_benchmark_or_tool_reads_data_outside_the_repository() -> None:
    outside = re.compile(r"""(ROOT|root)\.parent\s*/\s*["']shared["']|\.\./shared""")
    offenders = [str(p.relative_to(ROOT))
                 for folder in ("tests", "benchmarks", "tools")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 if outside.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
