"""Scale-out on Dask (issue 15): the sharded Wikipedia builder gives the same arrays in this
process, on a LocalCluster of 2 worker processes and on a cluster started with the `dask`
command line; failed shards are retried, a killed worker's shard is rescheduled, a run killed
with SIGKILL resumes from its manifest, a changed configuration starts over, a full disk and an
unreachable scheduler fail in one line, and two runs of one dataset share its lock."""

from __future__ import annotations

import bz2
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest
from conftest import ROOT, invoke_cli, run_cli
from scale_shards import dask_imports, executions, flaky_item, run_and_kill, write_shard
from test_wiki_dump import EXCERPT, build_multistream

from dlprep.prepare.wiki_pages import Counts, DumpPart, PageOptions, iter_records
from dlprep.scale import Executor, ShardError, ShardSpec, run_shards
from dlprep.scale.manifest import NAME as MANIFEST

WORKER_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


def _wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and 2 single-threaded worker processes started with the `dask` command
    line (`dask scheduler --port 0`, `dask worker ADDR --nworkers 2 --nthreads 1`); their
    address. Shared by the module's tests (a cluster takes seconds to start)."""
    Client = pytest.importorskip("distributed").Client  # noqa: N806 (the extra 'scale')

    tmp = tmp_path_factory.mktemp("dask")
    env = {**os.environ, **WORKER_ENV}
    sched_file = tmp / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        _wait_for(sched_file.exists, 60, "dask scheduler")
        _wait_for(lambda: "address" in sched_file.read_text(), 10, "scheduler file")
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([*dask, "worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard",
                                       "--local-directory", str(tmp)],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:  # each was started in its own session: its group is it and its children
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def _workers_back(address: str, n: int = 2) -> None:
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=60)


def small_excerpt(dest: Path) -> Path:
    """The real excerpt without its articles over 32 kB (146 of 206 pages, 46 of them
    articles, a tenth of the text: the same markup at a tenth of the parse time)."""
    data = bz2.decompress((ROOT / "tests" / "data" / "realdata" / EXCERPT).read_bytes())
    first, last = data.index(b"<page>"), data.rindex(b"</page>") + len(b"</page>")
    pages = re.findall(rb"<page>.*?</page>", data[first:last], re.S)
    kept = [p for p in pages if len(p) < 32_000]
    dest.write_bytes(bz2.compress(data[:first] + b"\n  ".join(kept) + data[last:]))
    return dest


@pytest.fixture(scope="module")
def wiki_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A multistream dump of the small excerpt (15 blocks of 10 real pages) and its index."""
    d = tmp_path_factory.mktemp("wiki")
    dump, index = d / "ms.xml.bz2", d / "ms-index.txt.bz2"
    build_multistream(small_excerpt(d / "small.xml.bz2"), dump, index, per_stream=10)
    return dump, index


def _arrays(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                out[name] = data.tobytes() if data.dtype.kind != "O" else repr(list(data)).encode()
        f.visititems(visit)
        out["@tokenizer"] = f.attrs["tokenizer"].encode()
    return out


def _fetch_wiki(cache: Path, dump: Path, index: Path | None, name: str, *extra: str):  # type: ignore[no-untyped-def]
    args = ["fetch", "wikipedia", "--dump", str(dump), "--name", name,
            *(["--index", str(index)] if index else []), *extra]
    proc = invoke_cli(*args, cache_dir=cache)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_wiki_identical_serial_localcluster_and_scheduler(wiki_dump, dask_cluster: str,
                                                          cache_dir: Path) -> None:
    dump, index = wiki_dump
    stream = _fetch_wiki(cache_dir, dump, None, "stream")  # no index: the whole dump, 1 shard
    serial = _fetch_wiki(cache_dir, dump, index, "serial")  # 11 shards in this process
    local = _fetch_wiki(cache_dir, dump, index, "local", "--workers", "2")  # LocalCluster
    remote = _fetch_wiki(cache_dir, dump, index, "remote", "--scheduler", dask_cluster)
    proc = invoke_cli("fetch", "wikipedia", "--dump", str(dump), "--index", str(index),
                      "--name", "env", cache_dir=cache_dir,
                      env={"DLPREP_SCHEDULER": dask_cluster.removeprefix("tcp://")})
    assert proc.returncode == 0, proc.stderr
    from_env = Path(proc.stdout.strip().splitlines()[-1])
    expected = _arrays(stream)
    assert {"tokens", "offsets", "vocab", "meta/title", "splits/train"} <= set(expected)
    with h5py.File(serial, "r") as f:
        assert len(f["offsets"]) - 1 == 46 and f["meta/title"][0] == b"A"
    for path in (serial, local, remote, from_env):
        assert _arrays(path) == expected, path
        assert not list(path.parent.glob(".*.parts")), "parts left behind after success"


def _specs(tmp: Path, n: int, **options: object) -> list[ShardSpec]:
    (tmp / "markers").mkdir(exist_ok=True)
    return [ShardSpec.make(f"s{i:03d}", start=i, options={
        "log": str(tmp / "log.txt"), "markers": str(tmp / "markers"), **options})
        for i in range(n)]


def test_failed_shard_is_retried_then_named(tmp_path: Path, dask_cluster: str) -> None:
    specs = _specs(tmp_path, 4, fail_once=["s001", "s003"])
    run = run_shards(specs, write_shard, scheduler=dask_cluster, parts_dir=tmp_path / "p")
    assert [r.stats["start"] for r in run.results] == [0, 1, 2, 3]
    assert run.retried == 2 and run.ran == 4
    assert sorted(executions(tmp_path / "log.txt")) == ["s000", "s001", "s001", "s002", "s003",
                                                        "s003"]
    assert (tmp_path / "p" / "s003.shard").read_bytes() == b"s003"
    # in this process, the same retry; a shard that always fails stops the run, named
    here = tmp_path / "here"
    here.mkdir()
    specs = _specs(here, 3, fail_once=["s000"], always_fail=["s002"])
    with pytest.raises(ShardError, match=r"^shard s002 failed after 3 attempt\(s\): "
                                         r"ValueError: injected failure in s002$"):
        run_shards(specs, write_shard, parts_dir=here / "p", retries=2)
    assert executions(here / "log.txt") == ["s000", "s000", "s001", "s002", "s002", "s002"]
    lines = (here / "p" / MANIFEST).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines[1:]] == ["s000", "s001"]


def test_streaming_map_in_order_with_retries(tmp_path: Path, dask_cluster: str) -> None:
    markers = tmp_path / "m"
    for scheduler in (None, dask_cluster):
        markers.mkdir()
        with Executor(scheduler=scheduler) as ex:
            got = list(ex.imap(flaky_item, ((str(markers), n) for n in range(12)), window=3))
        assert got == [n * n for n in range(12)]
        assert (markers / "item1").exists()  # it failed once, then was retried
        shutil.rmtree(markers)


def test_wiki_links_index_and_records_on_dask(wiki_dump, dask_cluster: str,
                                              tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    dump, index = wiki_dump
    opts = PageOptions(links=True)

    def records(part: DumpPart, **how: object) -> list[object]:
        return list(iter_records([part], opts, Counts(), **how))  # type: ignore[arg-type]

    serial = records(DumpPart(dump, index))
    assert len(serial) == 46
    assert records(DumpPart(dump, index), scheduler=dask_cluster) == serial  # blocks
    assert records(DumpPart(dump), scheduler=dask_cluster) == serial  # raw page batches
    tables = []
    for how in ([], ["--scheduler", dask_cluster]):
        out = tmp_path / f"links{len(how)}.parquet"
        proc = invoke_cli("wiki", "links", "--dump", str(dump), "--index", str(index), "--out",
                          str(out), *how)
        assert proc.returncode == 0, proc.stderr
        tables.append(pq.read_table(out).to_pylist())
    assert tables[0] == tables[1] and len(tables[0]) > 100
    proc = invoke_cli("wiki", "index", "--pages", "--dump", str(dump), "--index", str(index),
                      "--scheduler", dask_cluster, cache_dir=tmp_path / "c")
    assert proc.returncode == 0 and "146 pages of 15 blocks cached" in proc.stderr, proc.stderr


def test_worker_killed_mid_shard_is_rescheduled(tmp_path: Path, dask_cluster: str) -> None:
    specs = _specs(tmp_path, 3, kill_once=["s001"])
    try:
        run = run_shards(specs, write_shard, scheduler=dask_cluster, parts_dir=tmp_path / "p")
    finally:
        _workers_back(dask_cluster)  # the nanny restarts the killed worker
    assert [r.id for r in run.results] == ["s000", "s001", "s002"]
    log = [line.split() for line in (tmp_path / "log.txt").read_text().splitlines()]
    attempts = [pid for sid, pid in log if sid == "s001"]
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # died in one process, done in another
    assert run.results[1].stats["pid"] == int(attempts[1])
    assert (tmp_path / "p" / "s001.shard").read_bytes() == b"s001"


_RUNNER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
from scale_shards import write_shard
from dlprep.scale import ShardSpec, run_shards
tmp = Path({tmp!r})
specs = [ShardSpec.make(f"s{{i:03d}}", start=i, options={{"log": str(tmp / "log.txt"),
         "sleep": 0.15}}) for i in range(12)]
run_shards(specs, write_shard, parts_dir=tmp / "p", key="k1")
"""


def test_kill_9_resumes_without_redoing_finished_shards(tmp_path: Path) -> None:
    script = _RUNNER.format(root=str(ROOT), tests=str(ROOT / "tests"), tmp=str(tmp_path))
    manifest = tmp_path / "p" / MANIFEST
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: manifest.exists() and len(manifest.read_text().splitlines()) >= 4,
                  60, "3 finished shards")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = [json.loads(line)["id"] for line in manifest.read_text().splitlines()[1:]]
    assert 3 <= len(done) < 12
    mtimes = {i: (tmp_path / "p" / f"{i}.shard").stat().st_mtime_ns for i in done}
    before = executions(tmp_path / "log.txt")
    rerun = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    after = executions(tmp_path / "log.txt")[len(before):]
    assert not set(after) & set(done)  # no finished shard ran again
    assert sorted(set(before) | set(after)) == [f"s{i:03d}" for i in range(12)]
    assert {i: (tmp_path / "p" / f"{i}.shard").stat().st_mtime_ns for i in done} == mtimes
    records = [json.loads(line)["id"] for line in manifest.read_text().splitlines()[1:]]
    assert sorted(records) == [f"s{i:03d}" for i in range(12)]
    assert not list((tmp_path / "p").glob(".*"))  # no temporary part left


def test_wiki_killed_run_resumes(wiki_dump, tmp_path: Path) -> None:
    """`dlprep fetch wikipedia` killed with SIGKILL after some shards: the rerun takes them
    from the manifest and the result equals an uninterrupted run."""
    big, big_index = tmp_path / "big.xml.bz2", tmp_path / "big-index.txt.bz2"
    build_multistream(wiki_dump[0].with_name("small.xml.bz2"), big, big_index,
                      per_stream=2)  # 73 blocks -> 37 shards
    cache = tmp_path / "cache"
    args = ["fetch", "wikipedia", "--dump", str(big), "--index", str(big_index), "--name", "k",
            "-v"]
    assert run_and_kill(args, cache, "k", shards=2) is not None, \
        "the run ended before it could be killed"
    assert not [p for p in (cache / "prepared" / "k").glob("*.h5")
                if not p.name.startswith(".tmp-")]
    rerun = run_cli(*args, cache_dir=cache)
    assert rerun.returncode == 0, rerun.stderr
    resumed = [line for line in rerun.stderr.splitlines() if "shards already done" in line]
    assert len(resumed) == 1 and int(resumed[0].split(": ")[1].split()[0]) >= 2, rerun.stderr
    fresh = _fetch_wiki(tmp_path / "fresh", big, big_index, "k")
    resumed_path = Path(rerun.stdout.strip().splitlines()[-1])
    with h5py.File(fresh, "r") as a, h5py.File(resumed_path, "r") as b:
        assert a["tokens"][()].tobytes() == b["tokens"][()].tobytes()
        assert list(a["meta/title"][()]) == list(b["meta/title"][()])


def test_changed_configuration_starts_over(tmp_path: Path) -> None:
    specs = _specs(tmp_path, 3)
    run_shards(specs, write_shard, parts_dir=tmp_path / "p", key="config-a")
    again = run_shards(specs, write_shard, parts_dir=tmp_path / "p", key="config-a")
    assert again.resumed == 3 and again.ran == 0
    assert [r.stats["start"] for r in again.results] == [0, 1, 2]  # stats from the manifest
    (tmp_path / "p" / "s002.shard").write_bytes(b"truncated")  # a part that no longer matches
    partly = run_shards(specs, write_shard, parts_dir=tmp_path / "p", key="config-a")
    assert (partly.resumed, partly.ran) == (2, 1)
    changed = run_shards(specs, write_shard, parts_dir=tmp_path / "p", key="config-b")
    assert changed.resumed == 0 and changed.ran == 3
    other_plan = _specs(tmp_path, 3, size=10)
    assert run_shards(other_plan, write_shard, parts_dir=tmp_path / "p",
                      key="config-b").ran == 3
    assert executions(tmp_path / "log.txt") == ["s000", "s001", "s002", "s002"] + \
        ["s000", "s001", "s002"] * 2


def test_disk_full_on_a_part(tmp_path: Path) -> None:
    where = tmp_path / "fs"
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mount.stderr.strip()}")
    try:
        specs = _specs(tmp_path, 3)
        specs[1] = ShardSpec.make("s001", start=1, options={"log": str(tmp_path / "log.txt"),
                                                            "size": 4 << 20})
        with pytest.raises(OSError) as info:
            run_shards(specs, write_shard, parts_dir=where / "p", retries=2)
        assert info.value.errno == errno.ENOSPC
        assert info.value.filename == str(where / "p" / "s001.shard")
        lines = (where / "p" / MANIFEST).read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines[1:]] == ["s000"]  # s001 not recorded
        assert sorted(p.name for p in (where / "p").iterdir()) == [MANIFEST, "s000.shard"]
        assert executions(tmp_path / "log.txt") == ["s000", "s001"]  # s001 not retried
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scheduler_unreachable_or_malformed(wiki_dump, cache_dir: Path) -> None:
    dump, index = wiki_dump
    address = f"tcp://127.0.0.1:{_closed_port()}"
    args = ["fetch", "wikipedia", "--dump", str(dump), "--index", str(index)]
    env = {"DLPREP_SCHEDULER_TIMEOUT": "1"}
    for proc in (invoke_cli(*args, "--scheduler", address, cache_dir=cache_dir, env=env),
                 invoke_cli(*args, cache_dir=cache_dir, env={**env, "DLPREP_SCHEDULER": address})):
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(f"error: cannot reach the Dask scheduler at {address} "
                                      f"within 1 s") and proc.stderr.count("\n") == 1
    bad = invoke_cli(*args, "--scheduler", "not an address", cache_dir=cache_dir)
    assert bad.returncode == 1 and bad.stderr == (
        "error: --scheduler: expected tcp://HOST:PORT (a Dask scheduler), got 'not an "
        "address'\n")
    unsharded = invoke_cli("fetch", "mnist", "--offline", "--scheduler", address,
                           cache_dir=cache_dir)
    assert unsharded.returncode == 1 and "does not shard" in unsharded.stderr
    assert unsharded.stderr.count("\n") == 1
    assert not list((cache_dir / "prepared").glob("*/*.h5"))


def test_two_runs_of_one_dataset_at_once(wiki_dump, cache_dir: Path) -> None:
    dump, index = wiki_dump
    cmd = [sys.executable, "-m", "dlprep", "--cache-dir", str(cache_dir), "fetch", "wikipedia",
           "--dump", str(dump), "--index", str(index), "--name", "both", "-v"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    paths = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(paths) == 1
    errs = "".join(e for _, e in outs)
    assert errs.count("preparing both") == 1 and errs.count("already prepared") == 1
    with h5py.File(paths.pop(), "r") as f:
        assert len(f["offsets"]) - 1 == 46


def test_one_worker_runs_here_without_dask(wiki_dump, tmp_path: Path) -> None:
    dump, index = wiki_dump
    proc = dask_imports(["--cache-dir", str(tmp_path), "fetch", "wikipedia", "--dump", str(dump),
                         "--index", str(index), "-q"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_without_dask_installed_one_line(wiki_dump, tmp_path: Path) -> None:
    dump, index = wiki_dump
    code = ("import sys\nsys.modules['distributed'] = None  # as if not installed\n"
            "from dlprep.cli import main\n"
            f"sys.exit(main(['--cache-dir', {str(tmp_path)!r}, 'fetch', 'wikipedia', '--dump', "
            f"{str(dump)!r}, '--index', {str(index)!r}, '--workers', '2']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == ("error: --workers N > 1 and --scheduler need Dask distributed: "
                           "pip install 'dlprep[scale]'\n")


def test_executor_rejects_bad_plans(tmp_path: Path) -> None:
    from dlprep.errors import DlprepError

    with pytest.raises(DlprepError, match="appears twice"):
        run_shards([ShardSpec.make("a"), ShardSpec.make("a")], write_shard)
    with pytest.raises(DlprepError, match="shard id '../x'"):
        ShardSpec.make("../x")
    with pytest.raises(DlprepError, match="at least 1"):
        Executor(workers=0)


def test_cache_prune_removes_parts_of_interrupted_runs(tmp_path: Path, cache_dir: Path) -> None:
    from dlprep.locks import PathLock

    folders = [cache_dir / "prepared" / name / f".{name}hash.parts" for name in ("a", "b")]
    for parts in folders:
        run_shards(_specs(tmp_path, 2), write_shard, parts_dir=parts)
        for p in [parts, *parts.iterdir()]:
            os.utime(p, (time.time() - 7200, time.time() - 7200))
    fresh = cache_dir / "prepared" / "c" / ".chash.parts"
    run_shards(_specs(tmp_path, 2), write_shard, parts_dir=fresh)
    (cache_dir / "locks").mkdir()
    with PathLock(cache_dir / "locks" / "prepare.b.bhash.lock"):  # b's run is in progress
        proc = invoke_cli("cache", "prune", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert not folders[0].exists() and f"removed {folders[0]} (parts of an interrupted run)" \
        in proc.stdout
    assert (folders[1] / "s000.shard").exists() and "in progress" in proc.stdout
    assert (fresh / "s001.shard").exists()  # younger than --older-than


def test_progress_bar_counts_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = _specs(tmp_path, 3, sleep=0.15)
    run_shards(specs, write_shard, parts_dir=tmp_path / "p", progress=True, desc="demo shards")
    err = capsys.readouterr().err
    assert "demo shards:" in err and "0/3" in err and "2/3" in err and "shard/s" in err
    again = run_shards(specs, write_shard, parts_dir=tmp_path / "p", progress=False)
    assert again.resumed == 3 and capsys.readouterr().err == ""


def test_wiki_disk_full_on_a_part(wiki_dump, tmp_path: Path) -> None:
    """The cache on a 128 kB file system: the parts outgrow it; one line naming the part,
    exit 1, the manifest lists only whole parts and no temporary part is left."""
    dump, index = wiki_dump
    where = tmp_path / "fs"
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(where)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mount.stderr.strip()}")
    try:
        proc = run_cli("fetch", "wikipedia", "--dump", str(dump), "--index", str(index),
                       cache_dir=where / "cache")
        assert proc.returncode == 1, proc.stderr
        m = re.fullmatch(r"error: disk full writing (\S+/\.[0-9a-f]{16}\.parts/"
                         r"d000-\d{6}\.shard); free space and rerun \(nothing half-written "
                         r"was kept\)\n", proc.stderr)
        assert m, proc.stderr
        parts = Path(m.group(1)).parent
        assert parts.parent == where / "cache" / "prepared" / "wikipedia"
        records = [json.loads(line) for line in (parts / MANIFEST).read_text().splitlines()]
        names = sorted(p.name for p in parts.iterdir())
        assert names == sorted([MANIFEST] + [f"{r['id']}.shard" for r in records[1:]])
        for r in records[1:]:
            assert (parts / f"{r['id']}.shard").stat().st_size == r["size"]
            with h5py.File(parts / f"{r['id']}.shard", "r") as f:  # whole, readable parts
                assert f.attrs["texts"] == r["stats"]["kept"]
                assert len(f["doc_offsets"]) == r["stats"]["docs"] + 1
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _worker_settings() -> tuple[bool, str]:
    import dask

    return (dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"))


def test_local_cluster_is_quiet_and_closes_in_the_background(tmp_path: Path) -> None:
    """--workers N starts workers without the statistical profiler and with slow timers
    (each wake takes the GIL from the shard), and close_soon stops them while the caller
    goes on; close waits for it."""
    from dlprep.scale.executor import LOCAL_CLUSTER_CONFIG

    with Executor(workers=2) as ex:
        client = ex.client()
        cluster = ex._cluster
        settings = client.run(_worker_settings)
        assert len(settings) == 2
        for enabled, tick in settings.values():
            assert enabled is False
            assert tick == LOCAL_CLUSTER_CONFIG["distributed.admin.tick.interval"]
        run = ex.run([ShardSpec.make("a", start=0, end=1)], write_shard, parts_dir=tmp_path)
        assert (tmp_path / "a.shard").read_bytes() == b"a"
        worker_pids = {p for _, p in client.run(os.getpid).items()}
        assert run.results[0].stats["pid"] in worker_pids
        assert os.getpid() not in worker_pids
        ex.close_soon()
        assert ex._closing is not None  # closing on its own thread; close() joins it
        ex.close()
        assert ex._closing is None and ex._client is None
        assert cluster.status.name == "closed"
    import dask  # this process's own settings are untouched

    assert dask.config.get("distributed.worker.profile.enabled") is True


def test_format_errors_survive_pickling() -> None:
    """A FormatError raised in a Dask worker travels pickled: it comes back whole (type, file,
    byte, message), also for subclasses (plain pickle could not rebuild it before)."""
    import pickle

    from dlprep.errors import FormatError
    from dlprep.formats.images import ImageDecodeError

    for cls in (FormatError, ImageDecodeError):
        err = cls("/data/x.ndjson", 46235, "invalid JSON line")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and str(back) == "/data/x.ndjson at byte 46235: invalid JSON line"
        assert (back.file, back.offset, back.what) == (err.file, err.offset, err.what)
