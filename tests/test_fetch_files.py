"""fetch_file / fetch_many: mirrors, checksums, content hashes, offline, locks, crash recovery."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlprep.errors import ChecksumError, FetchError, OfflineError
from dlprep.fetch import FetchOptions, FileSpec, RetryPolicy, fetch_file, fetch_many
from dlprep.recipes import find_recipe

PAYLOAD = random.Random(11).randbytes(400_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
ROOT = Path(__file__).resolve().parent.parent


def _spec(url: str, name: str = "data.bin", data: bytes = PAYLOAD) -> FileSpec:
    return FileSpec(name, [url], sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@pytest.fixture
def dlprep_log(caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    """caplog attached to the 'dlprep' logger itself (the CLI turns its propagation off)."""
    logger = logging.getLogger("dlprep")
    attach = not logger.propagate  # else caplog's root handler already sees the records
    if attach:
        logger.addHandler(caplog.handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        if attach:
            logger.removeHandler(caplog.handler)
        logger.setLevel(old_level)


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to open a network connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened in offline mode")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_wrong_bytes_give_a_checksum_error_and_nothing_is_kept(loopback, tmp_path: Path) -> None:
    bad = bytearray(PAYLOAD)
    bad[1234] ^= 0xFF
    loopback.serve("/data.bin", bytes(bad))
    with pytest.raises(ChecksumError) as err:
        fetch_file(_spec(loopback.url("data.bin")), tmp_path)
    msg = str(err.value)
    assert f"expected {SHA}, got {hashlib.sha256(bad).hexdigest()}" in msg
    assert loopback.url("data.bin") in msg
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_checksum_mismatch_moves_on_to_the_next_mirror(loopback, tmp_path: Path) -> None:
    loopback.serve("/bad/data.bin", PAYLOAD[::-1])
    loopback.serve("/good/data.bin", PAYLOAD)
    spec = _spec(loopback.url("good/data.bin"))
    path = fetch_file(spec, tmp_path, FetchOptions(mirrors=(loopback.url("bad"),)))
    assert path.read_bytes() == PAYLOAD
    assert [r.path for r in loopback.log] == ["/bad/data.bin", "/good/data.bin"]


def test_size_mismatch_is_reported(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD[:-10])
    with pytest.raises(ChecksumError, match="expected 400000 bytes, got 399990"):
        fetch_file(_spec(loopback.url("data.bin")), tmp_path)


def test_md5_only_recipes_are_verified(loopback, tmp_path: Path) -> None:
    loopback.serve("/data.bin", PAYLOAD)
    good = FileSpec("data.bin", [loopback.url("data.bin")], md5=hashlib.md5(PAYLOAD).hexdigest())
    assert fetch_file(good, tmp_path).read_bytes() == PAYLOAD
    wrong = FileSpec("other.bin", [loopback.url("data.bin")], md5="0" * 32)
    with pytest.raises(ChecksumError, match=f"md5 mismatch .*expected {'0' * 32}, got "
                                            f"{hashlib.md5(PAYLOAD).hexdigest()}"):
        fetch_file(wrong, tmp_path)


def test_missing_checksum_warns_with_the_computed_sha256(
        loopback, tmp_path: Path, dlprep_log: pytest.LogCaptureFixture) -> None:
    loopback.serve("/data.bin", PAYLOAD)
    fetch_file(FileSpec("data.bin", [loopback.url("data.bin")]), tmp_path)
    warnings = [r for r in dlprep_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "no checksum for data.bin" in message and SHA in message
    fetch_file(FileSpec("other.bin", [loopback.url("data.bin")], checksum_optional=True), tmp_path)
    assert len([r for r in dlprep_log.records if r.levelno == logging.WARNING]) == 1


def test_genuine_regzipped_mnist_files_pass_by_content_md5(realdata: Path, tmp_path: Path,
                                                           dlprep_log: pytest.LogCaptureFixture,
                                                           no_sockets: None) -> None:
    """realdata/mnist holds genuine MNIST .gz files re-gzipped by a mirror: the .gz sha256
    differs from the recipe's, the decompressed md5 is the canonical one."""
    recipe = find_recipe("mnist")
    mirror = (realdata / "mnist").as_uri()
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    for name in names:
        spec = next(s for s in recipe.files if s.name == name)
        assert spec.content_md5
        path = fetch_file(spec, tmp_path, FetchOptions(mirrors=(mirror,), offline=True))
        assert path.read_bytes() == (realdata / "mnist" / name).read_bytes()
        assert hashlib.sha256(path.read_bytes()).hexdigest() != spec.sha256
    assert dlprep_log.text.count("re-compressed mirror") == 3
    tampered = next(s for s in recipe.files if s.name == "t10k-labels-idx1-ubyte.gz")
    tampered.content_md5 = "f" * 32
    with pytest.raises(ChecksumError, match=f"content_md5 mismatch .*expected {'f' * 32}, got "
                                            "27ae3e4e09519cfbb04c329615203637"):
        fetch_file(tampered, tmp_path / "again", FetchOptions(mirrors=(mirror,), offline=True))


def test_offline_with_an_empty_cache_fails_clearly_without_a_socket(
        tmp_path: Path, no_sockets: None, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FileSpec("data.bin", ["https://example.org/data.bin"], sha256=SHA)
    with pytest.raises(OfflineError) as err:
        fetch_file(spec, tmp_path, FetchOptions(offline=True))
    msg = str(err.value)
    assert "data.bin is not in the cache" in msg and "--offline" in msg
    assert "https://example.org/data.bin" in msg and "--mirror DIR" in msg
    monkeypatch.setenv("DLPREP_OFFLINE", "1")  # read once, by FetchOptions.from_env
    from_env = FetchOptions.from_env()
    assert from_env.offline and FetchOptions.from_env(offline=False).offline
    with pytest.raises(OfflineError):
        fetch_file(spec, tmp_path, from_env)
    with pytest.raises(OfflineError):
        fetch_many([spec, FileSpec("b.bin", ["https://example.org/b.bin"])], tmp_path, from_env)


def test_offline_uses_cached_files_and_local_mirrors(tmp_path: Path, no_sockets: None) -> None:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "data.bin").write_bytes(PAYLOAD)
    spec = _spec("https://example.org/data.bin")
    dest = tmp_path / "raw"
    offline = FetchOptions(mirrors=(str(folder),), offline=True)
    assert fetch_file(spec, dest, offline).read_bytes() == PAYLOAD
    assert fetch_file(spec, dest, FetchOptions(offline=True)).read_bytes() == PAYLOAD  # now cached
    plain = FileSpec("x.bin", [(folder / "data.bin").as_uri()], sha256=SHA)
    assert fetch_file(plain, dest, FetchOptions(offline=True)).read_bytes() == PAYLOAD


def test_fetch_many_downloads_each_file_once(loopback, tmp_path: Path) -> None:
    files = {f"f{i:03d}.bin": random.Random(i).randbytes(1000 + i) for i in range(60)}
    for name, data in files.items():
        loopback.serve(f"/{name}", data, latency=0.01)
    specs = [_spec(loopback.url(n), n, d) for n, d in files.items()]
    paths = fetch_many(specs, tmp_path, FetchOptions(max_workers=8))
    assert [p.name for p in paths] == list(files)
    assert all(p.read_bytes() == files[p.name] for p in paths)
    assert loopback.requests() == 60
    assert fetch_many(specs, tmp_path) == paths and loopback.requests() == 60  # all cached


def test_fetch_many_reports_failures_and_keeps_the_rest(loopback, tmp_path: Path) -> None:
    specs = []
    for i in range(6):
        data = bytes([i]) * 500
        if i not in (2, 4):
            loopback.serve(f"/f{i}", data)
        specs.append(_spec(loopback.url(f"f{i}"), f"f{i}", data))
    with pytest.raises(FetchError, match=r"2 of 6 files could not be fetched: .*f2: HTTP 404"):
        fetch_many(specs, tmp_path, FetchOptions(retry=RetryPolicy(sleep=lambda s: None)))
    assert sorted(p.name for p in tmp_path.glob("f?")) == ["f0", "f1", "f3", "f5"]


def _fetch_script(url: str, dest: Path, sha: str, size: int) -> str:
    return textwrap.dedent(f"""
        import logging, sys
        from pathlib import Path
        logging.basicConfig(level=logging.INFO)
        from dlprep.fetch import FetchOptions, FileSpec, fetch_file
        spec = FileSpec("data.bin", [{url!r}], sha256={sha!r}, size={size})
        options = FetchOptions(lock_dir=Path({str(dest / 'locks')!r}))
        print(fetch_file(spec, Path({str(dest)!r}), options))
    """)


def _popen(script: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_two_processes_share_one_download(loopback, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(600_000)
    loopback.serve("/data.bin", data, throttle_bps=500_000)  # ~1.2 s per download
    script = _fetch_script(loopback.url("data.bin"), tmp_path, hashlib.sha256(data).hexdigest(),
                           len(data))
    procs = [_popen(script) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {out.strip() for out, _ in outs} == {str(tmp_path / "data.bin")}
    assert loopback.requests("/data.bin") == 1
    assert any("waiting for another dlprep process" in err for _, err in outs), outs
    assert (tmp_path / "data.bin").read_bytes() == data
    assert not (tmp_path / "data.bin.part").exists()


def test_kill_9_during_fetch_then_rerun_resumes_and_never_serves_a_partial_file(
        loopback, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(2_000_000)
    route = loopback.serve("/data.bin", data, throttle_bps=1_000_000)
    proc = _popen(_fetch_script(loopback.url("data.bin"), tmp_path,
                                hashlib.sha256(data).hexdigest(), len(data)))
    part = tmp_path / "data.bin.part"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 300_000):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert part.stat().st_size >= 300_000, "the subprocess never got going"
    assert not (tmp_path / "data.bin").exists()
    spec = _spec(loopback.url("data.bin"), data=data)
    with pytest.raises(OfflineError):  # a partial file is never handed out
        fetch_file(spec, tmp_path, FetchOptions(offline=True, lock_dir=tmp_path / "locks"))
    route.throttle_bps = None
    path = fetch_file(spec, tmp_path, FetchOptions(lock_dir=tmp_path / "locks"))
    assert path.read_bytes() == data
    last = loopback.requests_for("/data.bin")[-1]
    assert last.status == 206 and last.headers["Range"].startswith("bytes=")
    resent = loopback.bytes_sent("/data.bin") - len(data)
    assert resent <= 0.10 * len(data)


def test_progress_bar_only_on_a_tty_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlprep.progress import NullBar, progress_bar, progress_enabled

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_enabled(None) is True
    assert progress_enabled(False) is False  # --quiet
    monkeypatch.setenv("CI", "true")
    assert progress_enabled(None) is False
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or file, not a TTY
    assert progress_enabled(None) is False
    assert isinstance(progress_bar(False, desc="x", total=10), NullBar)


def test_recipe_content_hash_keys_are_validated(tmp_path: Path) -> None:
    from dlprep.errors import RecipeError
    from dlprep.recipes import load_recipe_file

    text = ('name = "r"\ntitle = "t"\nversion = "1"\nkind = "image"\nparser = "idx"\n'
            '[[files]]\nname = "a.gz"\nurls = ["https://example.org/a.gz"]\n')
    good = tmp_path / "good.toml"
    good.write_text(text + f'content_md5 = "{"a" * 32}"\ncontent_sha256 = "{"b" * 64}"\n')
    spec = load_recipe_file(good).files[0]
    assert spec.content_md5 == "a" * 32 and spec.content_sha256 == "b" * 64
    bad = tmp_path / "bad.toml"
    bad.write_text(text + 'content_md5 = "XYZ"\n')
    with pytest.raises(RecipeError, match=r"files\[0\]\.content_md5: expected 32 lowercase hex"):
        load_recipe_file(bad)


def test_path_lock_excludes_other_holders_and_times_out(tmp_path: Path) -> None:
    import subprocess
    import sys

    from dlprep.locks import PathLock

    path = tmp_path / "x.lock"
    held = PathLock(path)
    assert held.acquire(timeout=0)
    other = PathLock(path)
    assert not other.acquire(timeout=0.1)  # another open file description: excluded
    code = ("import sys; from dlprep.locks import PathLock; "
            f"sys.exit(0 if not PathLock({str(path)!r}).acquire(timeout=0.1) else 3)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # another process too
    held.release()
    assert other.acquire(timeout=0)
    other.release()
    with PathLock(path):
        assert not PathLock(path).acquire(timeout=0)
