"""FetchOptions: one value built at the edge; one declaration of the global CLI options;
reading an already prepared file takes no lock (a read-only cache works)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlprep.cache import Cache
from dlprep.cli import cli
from dlprep.errors import DlprepError
from dlprep.fetch.options import DEFAULT_MAX_BYTES, FetchOptions, parse_size
from dlprep.prepare.core import prepare
from dlprep.recipes import find_recipe

ROOT = Path(__file__).resolve().parent.parent


def test_from_env_is_the_only_reader_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert FetchOptions.from_env() == FetchOptions()
    monkeypatch.setenv("DLPREP_OFFLINE", "yes")
    monkeypatch.setenv("DLPREP_MAX_BYTES", "500M")
    opts = FetchOptions.from_env(mirrors=["http://m/"], force=True)
    assert opts.offline and opts.force and opts.mirrors == ("http://m/",)
    assert opts.max_bytes == opts.byte_cap == 500 * 2**20
    assert FetchOptions.from_env(max_bytes=10).max_bytes == 10  # the caller wins
    assert FetchOptions().byte_cap == DEFAULT_MAX_BYTES
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "dlprep").rglob("*.py")
               if re.search(r"DLPREP_OFFLINE[\"']\s*[,)\]]", p.read_text())]
    assert readers == ["dlprep/fetch/options.py"]


def test_parse_size_and_bad_caps() -> None:
    assert parse_size("4G") == 4 * 2**30 and parse_size("1048576") == 2**20
    assert parse_size("1.5k") == 1536 and parse_size("2MiB") == 2 * 2**20
    with pytest.raises(DlprepError, match="not a size"):
        parse_size("lots", "--max-bytes")
    with pytest.raises(DlprepError, match="at least 1 byte"):
        FetchOptions(max_bytes=0)


def test_global_options_are_declared_once(cli_runner) -> None:  # type: ignore[no-untyped-def]
    def option_help(args: list[str], flag: str) -> str:
        out = cli_runner.invoke(cli, args).output
        start = out.index(flag)
        return " ".join(out[start:].split("\n  -", 1)[0].split())

    for flag in ("--cache-dir", "--offline", "--verbose"):
        assert option_help(["--help"], flag) == option_help(["fetch", "--help"], flag)


def test_reading_a_prepared_file_takes_no_lock(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "cache")
    offline = FetchOptions(offline=True, progress=False)
    first = prepare(find_recipe("mnist-sample"), cache, fetch=offline)
    locks = sorted(p.name for p in cache.locks_dir.iterdir())
    assert any(name.startswith("prepare.mnist-sample.") for name in locks)
    for lock in cache.locks_dir.iterdir():
        lock.unlink()
    cache.locks_dir.rmdir()
    # a read-only cache: nothing may be created, not even a lock file
    assert prepare(find_recipe("mnist-sample"), cache, fetch=offline) == first
    assert not cache.locks_dir.exists()


def test_one_cache_root_wherever_dlprep_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys) -> None:  # type: ignore[no-untyped-def]
    """A ./cache folder (even a dlprep cache, as checkouts used to have) does not change the
    root: what one folder prepared, another finds; `info` shows the root on its second line."""
    from dlprep.cache import resolve_cache_root
    from dlprep.cli import main

    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    (checkout / "cache").mkdir(parents=True)
    (checkout / "cache" / ".dlprep-cache").write_text("dlprep-cache 1\n")
    elsewhere.mkdir()
    user_root = Path(__import__("os").environ["XDG_CACHE_HOME"]).resolve() / "dlprep"
    monkeypatch.chdir(checkout)
    assert resolve_cache_root() == user_root
    assert main(["--offline", "fetch", "mnist-sample", "-q"]) == 0
    prepared = capsys.readouterr().out.strip().splitlines()[-1]
    monkeypatch.chdir(elsewhere)
    assert main(["info", "mnist-sample"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["cache", str(user_root)]
    assert f"  prepared  {prepared}" in lines and "not yet" not in "\n".join(lines)
    monkeypatch.setenv("DLPREP_CACHE", str(checkout / "cache"))
    assert resolve_cache_root() == (checkout / "cache").resolve()
    assert resolve_cache_root(tmp_path / "x") == (tmp_path / "x").resolve()


def test_cache_prune_removes_empty_raw_folders(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from dlprep.cli import main

    raw = tmp_path / "cache" / "raw"
    (raw / "failed").mkdir(parents=True)
    (raw / "gutenberg" / "books" / "77").mkdir(parents=True)
    (raw / "kept").mkdir()
    (raw / "kept" / "data.bin").write_bytes(b"x")
    assert main(["--cache-dir", str(tmp_path / "cache"), "cache", "prune"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in raw.iterdir()) == ["kept"]
    assert (raw / "kept" / "data.bin").read_bytes() == b"x"
    assert f"removed {raw / 'failed'} (empty)" in out
