"""Shared fixtures: an isolated cache, the real upstream samples, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from loopback import loopback  # noqa: F401  (fault-injecting HTTP server fixture, tests/loopback.py)

ROOT = Path(__file__).resolve().parent.parent
REALDATA = ROOT / "tests" / "data" / "realdata"  # real upstream samples, see PROVENANCE.md there


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test touches the user's cache or recipes, and none reads DLPREP_* from the caller."""
    for var in ("DLPREP_CACHE", "DLPREP_OFFLINE", "DLPREP_RECIPES", "DLPREP_MAX_BYTES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty cache root."""
    d = tmp_path / "cache"
    d.mkdir()
    return d


@pytest.fixture
def realdata() -> Path:
    """tests/data/realdata: real upstream-format samples kept in the repository (never skips)."""
    return REALDATA


def run_cli(*args: str, cache_dir: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dlprep ARGS`` in a subprocess (real exit codes, real stdout/stderr)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "dlprep", *args]
    if cache_dir is not None:
        cmd[3:3] = ["--cache-dir", str(cache_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()
