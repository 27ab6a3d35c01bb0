"""Shared fixtures: an isolated cache, the real upstream samples, the CLI in or out of process."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from loopback import loopback  # noqa: F401  (fault-injecting HTTP server fixture)

ROOT = Path(__file__).resolve().parent.parent
REALDATA = ROOT / "tests" / "data" / "realdata"  # real upstream samples, see PROVENANCE.md there


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch,
                  tmp_path_factory: pytest.TempPathFactory) -> None:
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
    """Run ``python -m dlprep ARGS`` in a subprocess (real exit codes, real stdout/stderr).

    About a second per call: prefer :func:`invoke_cli` unless the test needs a real process.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "dlprep", *args]
    if cache_dir is not None:
        cmd[3:3] = ["--cache-dir", str(cache_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def invoke_cli(*args: str, cache_dir: Path | None = None, env: dict[str, str] | None = None,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dlprep ARGS`` in this process: what :func:`run_cli` does, without a new interpreter.

    Goes through ``dlprep.cli.main`` (the entry point's error handling and exit codes), with
    stdout/stderr captured separately, ``env`` set for the call and an empty stdin. An exception
    that ``main`` lets through (a crash) propagates and fails the test, as it would print a
    traceback in a subprocess. Use :func:`run_cli` when a real process matters: a kill, a signal,
    an interpreter without torch, or output written by worker processes.
    """
    from dlprep.cli import main

    argv = [*(["--cache-dir", str(cache_dir)] if cache_dir is not None else []), *args]
    logger = logging.getLogger("dlprep")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        with CliRunner().isolation(input=input, env=env) as (out, err, _):
            try:
                code = main(argv)
            except SystemExit as exc:  # a command that calls sys.exit itself
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    return subprocess.CompletedProcess(["dlprep", *argv], code, stdout, stderr)


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


def write_recipe(tmp_path: Path, name: str, parser: str, files: dict[str, Path], splits: str,
                 extra: str = "") -> Path:
    """``tmp_path/NAME.toml``: an image recipe whose files are local paths with their sha256 and
    size; ``splits`` and ``extra`` are TOML text added as they are."""
    blocks = []
    for fname, path in files.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blocks.append(f'[[files]]\nname = "{fname}"\nurls = ["{path.as_uri()}"]\n'
                      f'sha256 = "{digest}"\nsize = {path.stat().st_size}\n')
    text = (f'name = "{name}"\ntitle = "t"\nversion = "1"\nkind = "image"\nparser = "{parser}"\n'
            f'{extra}\n' + "\n".join(blocks) + "\n" + splits)
    out = tmp_path / f"{name}.toml"
    out.write_text(text)
    return out


def claim_huge_first_tar_member(data: bytes) -> bytes:
    """Rewrite the first tar header's size field to 2**60 (base-256) with a valid checksum."""
    hdr = bytearray(data[:512])
    hdr[124:136] = b"\x80" + (1 << 60).to_bytes(11, "big")
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr) + data[512:]


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a Dask LocalCluster of 2 worker processes (one thread each, Dask's own
    settings: what ``--scheduler`` meets on a user's cluster), one per test module."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address
