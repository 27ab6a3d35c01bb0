"""CI (`.ci/run` -> `make test`) fails when pytest runs no tests: exit 5 never passes silently."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT


def _fake_venv(root: Path) -> Path:
    """A VENV for the Makefile whose python is this interpreter (pip refused) and ruff a no-op.

    Its install stamp is as new as the packaging files, so make installs nothing; the python
    wrapper refuses ``-m pip`` in case it ever tried (it must never touch the real environment).
    """
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text('#!/bin/sh\n[ "$1 $2" = "-m pip" ] && { echo "pip refused" >&2; exit 99; }\n'
                      f'exec {shlex.quote(sys.executable)} "$@"\n')
    (bin_dir / "ruff").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    stamp = root / ".dlprep-installed"
    stamp.touch()
    packaging = [ROOT / n for n in ("setup.cfg", "setup.py", "pyproject.toml")]
    newest = max([time.time()] + [p.stat().st_mtime for p in packaging if p.exists()])
    os.utime(stamp, (newest, newest))
    return root


def _ci(venv: Path, pytest_addopts: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VENV=str(venv), PYTEST_ADDOPTS=pytest_addopts)
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["bash", str(ROOT / ".ci" / "run")], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=120)


def test_ci_fails_when_pytest_collects_no_tests(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed (CI runs `make test`)")
    venv = _fake_venv(tmp_path / "venv")
    empty = _ci(venv, "--ignore-glob=*")  # pytest finds nothing: exit 5
    assert "no tests ran" in empty.stdout, empty.stdout + empty.stderr
    assert "pip refused" not in empty.stderr
    assert empty.returncode != 0 and "Error 5" in empty.stderr
    control = _ci(venv, "--help")  # the same harness passes when pytest exits 0
    assert control.returncode == 0, control.stdout + control.stderr
