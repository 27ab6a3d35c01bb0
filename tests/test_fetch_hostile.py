"""Servers that lie (issue 10): a Content-Length larger than the body, an endless body, garbage
with no published checksum, and a raw file deleted while a dataset is being prepared.

Each test talks to the loopback server only; a guard in each lying route stops the lie after a
while, so that the code before these fixes fails the assertions instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest

from dlprep.cache import Cache
from dlprep.cli import main
from dlprep.errors import ChecksumError, FetchError, FormatError
from dlprep.fetch import FetchOptions, FileSpec, RetryPolicy, fetch_file
from dlprep.fetch.download import pkgdata_path
from dlprep.prepare.core import prepare
from dlprep.recipes import Recipe, load_recipe_file

PAYLOAD = random.Random(7).randbytes(400_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
GUARD = 32 * 2**20  # an endless route stops here (else the old code would fill the disk)


def _options(tmp_path: Path, **kw: object) -> FetchOptions:
    sleeps: list[float] = []
    retry = RetryPolicy(sleep=sleeps.append, clock=lambda: 0.0, rng=random.Random(0))
    return FetchOptions(retry=retry, lock_dir=tmp_path / "locks", progress=False, **kw)


def _stop_lying_after(route, n: int):  # type: ignore[no-untyped-def]
    """Guard: from request ``n`` on the liar answers 404, so an unbounded retry loop ends."""
    def hook(nth: int) -> None:
        if nth >= n:
            route.fail_first, route.fail_status = 10**9, 404
    return hook


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "no-ranges"])
def test_short_body_retries_are_bounded_then_the_next_mirror_is_used(
        loopback, tmp_path: Path, ranges: bool) -> None:
    """Content-Length says 1000 bytes more than the server ever sends: each try 'receives
    bytes', but keeps nothing new, so the mirror is abandoned after RetryPolicy.attempts."""
    liar = loopback.serve("/liar/data.bin", PAYLOAD, extra_length=1000, ranges=ranges,
                          validator="both" if ranges else "none")
    liar.on_request = _stop_lying_after(liar, 40)
    loopback.serve("/good/data.bin", PAYLOAD)
    spec = FileSpec("data.bin", [loopback.url("liar/data.bin"), loopback.url("good/data.bin")],
                    sha256=SHA)  # no size: the announced length cannot be refused up front
    path = fetch_file(spec, tmp_path / "raw", _options(tmp_path))
    assert path.read_bytes() == PAYLOAD
    assert 2 <= loopback.requests("/liar/data.bin") <= RetryPolicy().attempts
    assert loopback.requests("/good/data.bin") == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.bin"]


def test_a_declared_size_refuses_a_lying_length_at_once(loopback, tmp_path: Path) -> None:
    loopback.serve("/liar/data.bin", PAYLOAD, extra_length=1000)
    loopback.serve("/good/data.bin", PAYLOAD)
    spec = FileSpec("data.bin", [loopback.url("liar/data.bin"), loopback.url("good/data.bin")],
                    sha256=SHA, size=len(PAYLOAD))
    assert fetch_file(spec, tmp_path / "raw", _options(tmp_path)).read_bytes() == PAYLOAD
    assert loopback.requests("/liar/data.bin") == 1


def test_an_endless_body_stops_at_the_declared_size(loopback, tmp_path: Path) -> None:
    route = loopback.serve("/endless.bin", PAYLOAD[:65536], endless=True, endless_cap=GUARD)
    spec = FileSpec("endless.bin", [loopback.url("endless.bin")], sha256=SHA, size=100_000)
    with pytest.raises(ChecksumError) as err:
        fetch_file(spec, tmp_path / "raw", _options(tmp_path))
    assert "expected 100000 bytes, the server sent more; stopped there" in str(err.value)
    assert loopback.requests("/endless.bin") == 1  # not retried: the mirror is wrong
    assert loopback.bytes_sent("/endless.bin") < GUARD and route.requests == 1
    assert not (tmp_path / "raw").exists()  # no part file, no empty folder


def test_an_endless_body_of_undeclared_size_stops_at_the_cap(loopback, tmp_path: Path) -> None:
    loopback.serve("/endless.bin", PAYLOAD[:65536], endless=True, endless_cap=GUARD)
    spec = FileSpec("endless.bin", [loopback.url("endless.bin")], checksum_optional=True)
    with pytest.raises(FetchError) as err:
        fetch_file(spec, tmp_path / "raw", _options(tmp_path, max_bytes=256 * 1024))
    msg = str(err.value)
    assert "endless.bin exceeds 262144 bytes, the cap for a file of undeclared size" in msg
    assert "--max-bytes" in msg and "DLPREP_MAX_BYTES" in msg
    assert loopback.bytes_sent("/endless.bin") < GUARD
    assert not (tmp_path / "raw").exists()


NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _recipe_file(tmp_path: Path, *, checksums: bool) -> Path:
    """An IDX recipe 'digits' whose own URLs never resolve (the data comes from --mirror)."""
    blocks = []
    for name in NAMES:
        block = f'[[files]]\nname = "{name}"\nurls = ["https://upstream.invalid/{name}"]\n'
        if checksums:
            data = pkgdata_path(f"mnist-sample/{name}").read_bytes()
            block += f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}\n'
        blocks.append(block)
    path = tmp_path / "digits.toml"
    path.write_text(
        'name = "digits"\ntitle = "digits"\nversion = "1"\nkind = "image"\nparser = "idx"\n'
        'classes = ["0","1","2","3","4","5","6","7","8","9"]\n\n' + "\n".join(blocks)
        + f'\n[splits.train]\nimages = "{NAMES[0]}"\nlabels = "{NAMES[1]}"\n'
          f'[splits.test]\nimages = "{NAMES[2]}"\nlabels = "{NAMES[3]}"\n')
    return path


def _mnist_recipe(tmp_path: Path, *, checksums: bool) -> Recipe:
    return load_recipe_file(_recipe_file(tmp_path, checksums=checksums))


def _serve_mnist(loopback) -> None:  # type: ignore[no-untyped-def]
    for name in NAMES:
        loopback.serve(f"/{name}", pkgdata_path(f"mnist-sample/{name}"))


def test_garbage_without_a_checksum_is_not_trusted_on_the_next_run(loopback,
                                                                   tmp_path: Path) -> None:
    _serve_mnist(loopback)
    good = loopback.route("/train-images-idx3-ubyte.gz").body
    loopback.route("/train-images-idx3-ubyte.gz").body = random.Random(1).randbytes(5000)
    recipe = _mnist_recipe(tmp_path, checksums=False)
    cache = Cache.open(tmp_path / "cache")
    opts = _options(tmp_path, mirrors=(loopback.base_url,))
    with pytest.raises(FormatError, match="train-images-idx3-ubyte.gz"):
        prepare(recipe, cache, fetch=opts)
    raw = cache.raw_dir("digits")
    assert not (raw / "train-images-idx3-ubyte.gz").exists()  # dropped, not trusted
    assert (raw / "train-labels-idx1-ubyte.gz").is_file()  # the files that parsed stay
    loopback.route("/train-images-idx3-ubyte.gz").body = good
    out = prepare(recipe, cache, fetch=opts)  # no --force needed
    assert out.is_file() and loopback.requests("/train-images-idx3-ubyte.gz") == 2
    assert loopback.requests("/train-labels-idx1-ubyte.gz") == 1


def test_garbage_with_a_checksum_never_reaches_the_cache(loopback, tmp_path: Path) -> None:
    _serve_mnist(loopback)
    loopback.route("/train-images-idx3-ubyte.gz").body = b"\x1f\x8b" + bytes(629293)
    cache = Cache.open(tmp_path / "cache")
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        prepare(_mnist_recipe(tmp_path, checksums=True), cache,
                fetch=_options(tmp_path, mirrors=(loopback.base_url,)))
    assert not (cache.raw_dir("digits") / "train-images-idx3-ubyte.gz").exists()


def test_a_raw_file_deleted_while_preparing_is_reported_as_such(loopback,
                                                                tmp_path: Path) -> None:
    """Another process removes a downloaded file before the builder reads it: the error says
    so (it used to say 'corrupt compressed stream')."""
    _serve_mnist(loopback)
    cache = Cache.open(tmp_path / "cache")
    victim = cache.raw_dir("digits") / "train-images-idx3-ubyte.gz"

    def delete_victim(nth: int) -> None:  # while the last file is being served
        deadline = time.monotonic() + 30
        while not victim.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.unlink()

    loopback.route("/t10k-labels-idx1-ubyte.gz").on_request = delete_victim
    with pytest.raises(FetchError) as err:
        prepare(_mnist_recipe(tmp_path, checksums=True), cache,
                fetch=_options(tmp_path, mirrors=(loopback.base_url,)))
    msg = str(err.value)
    assert str(victim) in msg and "was deleted while digits was being prepared" in msg
    assert "corrupt" not in msg


def test_cli_without_network_says_it_once(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    recipe = str(_recipe_file(tmp_path, checksums=True))
    rc = main(["--cache-dir", str(tmp_path / "cache"), "fetch", "digits", "--recipe", recipe])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err == ("error: no network (DNS lookup failed for upstream.invalid); use --offline or "
                   "--mirror (4 of 4 files could not be fetched)\n")
    assert not (tmp_path / "cache" / "raw" / "digits").exists()  # no empty raw folder


@pytest.mark.parametrize("how", ["option", "env"])
def test_cli_caps_a_download_of_undeclared_size(  # type: ignore[no-untyped-def]
        loopback, tmp_path: Path, capsys, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_mnist(loopback)
    loopback.serve("/train-images-idx3-ubyte.gz", b"\x1f\x8b" * 4096, endless=True,
                   endless_cap=GUARD)
    args = ["--cache-dir", str(tmp_path / "cache"), "fetch", "digits", "--recipe",
            str(_recipe_file(tmp_path, checksums=False)), "--mirror", loopback.base_url]
    if how == "option":
        args += ["--max-bytes", "256K"]
    else:
        monkeypatch.setenv("DLPREP_MAX_BYTES", "256K")
    rc = main(args)
    _, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith("error: ")
    assert "train-images-idx3-ubyte.gz exceeds 262144 bytes, the cap" in last
    assert not (tmp_path / "cache" / "raw" / "digits" / NAMES[0]).exists()
    assert not list((tmp_path / "cache" / "raw" / "digits").glob("*.part"))


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_password_in_a_mirror_url_is_never_shown_or_stored(  # type: ignore[no-untyped-def]
        loopback, tmp_path: Path, capsys, outcome: str) -> None:
    """`--mirror http://user:SECRETPW@host/`: not in stdout, stderr (-vv logs included), any
    cache file name or file content (HDF5 attributes, sidecars, locks), success or failure."""
    _serve_mnist(loopback)
    loopback.route(f"/{NAMES[0]}").fail_first = 1  # a retry (logged with -vv) ...
    loopback.route(f"/{NAMES[0]}").retry_after = "0"  # ... that does not wait
    if outcome == "failure":  # a 404, and garbage: warnings and errors naming the mirror
        del loopback.routes[f"/{NAMES[2]}"]
        loopback.route(f"/{NAMES[1]}").body = b"garbage"
    mirror = loopback.base_url.replace("http://", "http://user:SECRETPW@")
    cache = tmp_path / "cache"
    rc = main(["-vv", "--cache-dir", str(cache), "fetch", "digits", "--recipe",
               str(_recipe_file(tmp_path, checksums=True)), "--mirror", mirror])
    out, err = capsys.readouterr()
    assert rc == (0 if outcome == "success" else 1), err
    assert f"http://***@127.0.0.1:{loopback.port}/{NAMES[0]}" in err  # shown, redacted
    assert "SECRETPW" not in out and "SECRETPW" not in err
    assert any(r.headers.get("Authorization", "").startswith("Basic ") for r in loopback.log)
    files = [p for p in cache.rglob("*")]
    assert files and all("SECRETPW" not in str(p) for p in files)
    for path in files:
        if path.is_file():
            assert b"SECRETPW" not in path.read_bytes(), path
    if outcome == "success":
        assert any(p.suffix == ".h5" for p in files)


def test_an_interrupted_download_resumes_without_storing_the_password(loopback,
                                                                      tmp_path: Path) -> None:
    big = random.Random(3).randbytes(600_000)
    loopback.serve("/big.bin", big, cut_after=300_000)
    url = loopback.url("big.bin").replace("http://", "http://user:SECRETPW@")
    spec = FileSpec("big.bin", [url], sha256=hashlib.sha256(big).hexdigest())
    once = RetryPolicy(attempts=1, sleep=lambda s: None)
    with pytest.raises(FetchError, match=r"http://\*\*\*@127.0.0.1:\d+/big.bin: connection"):
        fetch_file(spec, tmp_path / "raw", FetchOptions(retry=once, lock_dir=tmp_path / "l"))
    kept = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert kept == ["big.bin.part", "big.bin.part.json"]  # kept for a later run
    assert b"SECRETPW" not in (tmp_path / "raw" / "big.bin.part.json").read_bytes()
    path = fetch_file(spec, tmp_path / "raw", FetchOptions(lock_dir=tmp_path / "l"))
    assert path.read_bytes() == big
    assert loopback.log[-1].headers["Range"] == "bytes=300000-"
