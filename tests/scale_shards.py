"""Test-only shard functions for tests/test_scale*.py (module-level, so Dask workers import them
by name; the tests put tests/ on the workers' PYTHONPATH). Each appends ``<shard id> <pid>`` to
the ``log`` file its spec names, so a test can see which shards ran, how often and where; the
faults they inject are switched on by their spec's options, never by patching dlprep.

Also the helpers the sharded builders' tests share: :func:`run_and_kill` (a ``kill -9`` after
some shards), :func:`dask_imports` (which Dask modules a CLI run imports) and
:func:`same_prepared` (two prepared files with the same bytes)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dlprep.scale import ShardSpec


def _log(spec: ShardSpec) -> None:
    if spec.option("log"):
        with open(spec.option("log"), "a") as fh:
            fh.write(f"{spec.id} {os.getpid()}\n")


def _first_time(spec: ShardSpec) -> bool:
    """True the first time this shard runs (a marker file in the spec's ``markers`` dir)."""
    marker = Path(spec.option("markers")) / spec.id
    try:
        marker.open("x").close()
        return True
    except FileExistsError:
        return False


def write_shard(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """Writes ``size`` bytes (default: its id) after ``sleep`` seconds; options
    ``fail_once``/``kill_once``/``always_fail`` (lists of shard ids) inject faults."""
    _log(spec)
    if spec.id in (spec.option("always_fail") or []):
        raise ValueError(f"injected failure in {spec.id}")
    if spec.id in (spec.option("fail_once") or []) and _first_time(spec):
        raise RuntimeError(f"injected one-off failure in {spec.id}")
    if spec.id in (spec.option("kill_once") or []) and _first_time(spec):
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-shard
    time.sleep(float(spec.option("sleep") or 0))
    if part is not None:
        size = spec.option("size")
        with open(part, "wb") as fh:
            if size:
                for _ in range(int(size) // 65536 + 1):
                    fh.write(b"\0" * 65536)
            else:
                fh.write(spec.id.encode())
    return {"start": spec.start, "pid": os.getpid()}


def flaky_item(args: tuple[str, int]) -> int:
    """An ``Executor.imap`` item function: ``n * n``, failing the first time for n == 1."""
    markers, n = args
    if n == 1 and _first_time(ShardSpec.make(f"item{n}", options={"markers": markers})):
        raise RuntimeError("injected one-off failure of item 1")
    return n * n


def executions(log: Path) -> list[str]:
    """Shard ids in the order they started (one per attempt)."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


# A test-only sharded text builder (plan_shards / run_shard / assemble at module level, as
# dlprep.scale documents): texts from a JSON list, ``per_shard`` texts a shard.

def plan_shards(ctx: Any) -> list[ShardSpec]:
    from dlprep.scale import ranges
    from dlprep.scale.text import text_options

    path, n, per_shard = ctx.collected
    return [ShardSpec.make(f"t{k:04d}", [path], start=a, end=b,
                           options={"text": text_options(ctx.options)})
            for k, (a, b) in enumerate(ranges(n, per_shard))]


def run_shard(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    import json

    from dlprep.scale.text import TextPart

    texts = json.loads(Path(spec.paths[0]).read_text())
    text = TextPart(spec.option("text"), {"n": "int", "first": "str"})
    for i in range(spec.start, spec.end):
        text.add(texts[i], {"n": i, "first": texts[i][:12]})
    assert part is not None
    return text.write(part)


def assemble(ctx: Any, out: Path, job: Any) -> None:
    from dlprep.scale.text import assemble_text

    assemble_text(ctx, out, job, {"n": "int", "first": "str"})


ROOT = Path(__file__).resolve().parent.parent


def same_prepared(a: Path, b: Path, attrs: tuple[str, ...] | None = None) -> None:
    """Two prepared files hold the same bytes in every dataset, and the same root
    attributes: those named in ``attrs``, or (None) all but ``created`` and ``command``."""
    import h5py
    from test_images_import import datasets

    da, db = datasets(a), datasets(b)
    assert da.keys() == db.keys()
    for key in da:
        assert da[key] == db[key], key
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        keys = attrs if attrs is not None else \
            sorted((set(fa.attrs) | set(fb.attrs)) - {"created", "command"})
        for key in keys:
            assert str(fa.attrs.get(key)) == str(fb.attrs.get(key)), key


def finished_shards(manifest: Path) -> list[str]:
    """The ids of the shards a ``manifest.jsonl`` records (whole lines after the header)."""
    lines = manifest.read_text().splitlines()[1:] if manifest.exists() else []
    return [json.loads(line)["id"] for line in lines if line.endswith("}")]


def run_and_kill(args: list[str], cache: Path, dataset: str, shards: int,
                 timeout: float = 120, stage: str = "",
                 env: dict[str, str] | None = None) -> Path | None:
    """Run ``python -m dlprep --cache-dir CACHE ARGS`` in a session of its own and SIGKILL
    the whole group (Dask workers too) once the manifest of ``prepared/<dataset>`` (of a
    later ``stage``'s subfolder, when given) records at least ``shards`` finished shards.
    Returns that manifest, or None when the run ended (or ``timeout`` passed) before it
    could be killed so. ``env``: variables added to the run's environment."""
    cmd = [sys.executable, "-m", "dlprep", "--cache-dir", str(cache), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    manifest: Path | None = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            found = sorted((cache / "prepared" / dataset).glob(
                f".*.parts/{stage + '/' if stage else ''}manifest.jsonl"))
            if found and len(finished_shards(found[0])) >= shards:
                manifest = found[0]
                break
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    return manifest if proc.returncode == -signal.SIGKILL else None


def dask_imports(argv: list[str], *, hide_dask: bool = False,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``dlprep.cli.main(argv)`` in a fresh interpreter (``hide_dask``: as if Dask were not
    installed); it must exit 0, and its last stdout line lists the ``dask``/``distributed``
    modules it imported."""
    hide = "sys.modules['distributed'] = None\nsys.modules['dask'] = None\n" if hide_dask else ""
    code = (f"import sys\n{hide}from dlprep.cli import main\nrc = main({argv!r})\n"
            "assert rc == 0, rc\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed') and sys.modules[m] is not None))\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
