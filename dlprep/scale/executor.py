"""Run shards in this process or on Dask distributed, with retries, a manifest and a bar.

:class:`Executor` is the one code path: ``workers == 1`` without a scheduler runs the shards
here, one after the other, without importing Dask; ``workers > 1`` starts a Dask
``LocalCluster`` of that many worker processes (one thread each); a scheduler address
(``--scheduler tcp://HOST:PORT`` or ``DLPREP_SCHEDULER``) submits the same shards to an
existing cluster through ``distributed.Client``. Workers get the shard function (by reference:
it must be a module-level function importable on the workers) and the spec; they open their
own files and write their part to a temporary name, which is renamed into place when whole.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DlprepError
from ..progress import progress_bar, progress_enabled
from .manifest import Manifest, part_path, temp_part_path
from .shards import ShardResult, ShardSpec, check_plan

log = logging.getLogger("dlprep")
T = TypeVar("T")
R = TypeVar("R")

#: a shard function: ``fn(spec, part)`` writes its part file at ``part`` (None when the run
#: keeps no parts) and returns plain JSON values (counts, sums) for the manifest and assembly
ShardFn = Callable[[ShardSpec, "Path | None"], dict[str, Any]]

SCHEDULER_ENV = "DLPREP_SCHEDULER"
TIMEOUT_ENV = "DLPREP_SCHEDULER_TIMEOUT"
DEFAULT_RETRIES = 2
#: Dask settings for the clusters dlprep starts itself (``--workers N``). A worker runs its
#: task on a second thread while its event loop wakes on timers: the statistical profiler
#: (every 10 ms, a stack sample of the task thread), the event-loop tick (20 ms) and the
#: memory and system monitors. Each wake takes the GIL from the task; dlprep's shards are
#: long and CPU-bound and nobody reads the dashboard's profiles, so these are turned off or
#: slowed down (docs/SCALING.md, "Dask settings"). A cluster given with ``--scheduler`` keeps
#: its own settings.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}
_ADDRESS = re.compile(r"(?:(tcp|tls)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


class ShardError(DlprepError):
    """A shard failed on every attempt."""


def scheduler_address(value: str | None) -> str | None:
    """``value`` (an option) or ``$DLPREP_SCHEDULER``, checked to be ``[tcp://]HOST:PORT``;
    None when neither is set."""
    where = "--scheduler"
    if not value:
        value, where = os.environ.get(SCHEDULER_ENV, "").strip() or None, SCHEDULER_ENV
    if not value:
        return None
    m = _ADDRESS.fullmatch(value.strip())
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise DlprepError(f"{where}: expected tcp://HOST:PORT (a Dask scheduler), got {value!r}")
    return value.strip() if m.group(1) else f"tcp://{value.strip()}"


def connect_timeout() -> float:
    """Seconds to wait for a scheduler (``$DLPREP_SCHEDULER_TIMEOUT``, default 10)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else 10.0
    except ValueError:
        raise DlprepError(f"{TIMEOUT_ENV}: expected seconds, got {raw!r}") from None
    return max(0.1, value)


@dataclass
class ShardRun:
    """What :meth:`Executor.run` did: ``results`` in plan order, the wall ``seconds`` of the
    run without ``startup`` (starting or joining Dask, when this run did it), and where."""

    results: list[ShardResult]
    seconds: float
    executor: str
    ran: int = 0
    resumed: int = 0
    retried: int = 0
    startup: float = 0.0

    @property
    def stats(self) -> list[dict[str, Any]]:
        return [r.stats for r in self.results]


def run_one(fn: ShardFn, spec: ShardSpec, parts_dir: str | None) -> ShardResult:
    """Run one shard (on whichever process got it): write the part to a temporary name,
    fsync it and rename it into place. A full disk raises ``OSError(ENOSPC)`` naming the
    part, with no part left behind."""
    start = time.perf_counter()
    if parts_dir is None:
        stats = fn(spec, None)
        return ShardResult(spec.id, dict(stats or {}), time.perf_counter() - start)
    final = part_path(Path(parts_dir), spec.id)
    tmp = temp_part_path(Path(parts_dir), spec.id, uuid.uuid4().hex[:12])
    try:
        stats = fn(spec, tmp)
        with open(tmp, "ab") as fh:  # created if the shard had nothing to write
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left writing shard {spec.id}",
                          str(final)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ShardResult(spec.id, dict(stats or {}), time.perf_counter() - start,
                       final.stat().st_size)


def _retryable(exc: BaseException) -> bool:
    """Bad input (a ``DlprepError``) and a full disk fail the same way again: not retried."""
    if isinstance(exc, DlprepError):
        return False
    return not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fail(spec: ShardSpec, attempts: int, exc: BaseException) -> BaseException:
    if not _retryable(exc):
        return exc
    return ShardError(f"shard {spec.id} failed after {attempts} attempt(s): "
                      f"{type(exc).__name__}: {_one_line(exc)}")


def _fail_item(what: str, n: int, attempts: int, exc: BaseException) -> BaseException:
    if not _retryable(exc):
        return exc
    return ShardError(f"{what} {n} failed after {attempts} attempt(s): "
                      f"{type(exc).__name__}: {_one_line(exc)}")


def plan_key(key: str, fn: ShardFn, specs: Sequence[ShardSpec]) -> str:
    """The manifest key: the caller's configuration, the function and every spec."""
    h = hashlib.sha256(f"{key}\0{fn.__module__}.{fn.__qualname__}".encode())
    for spec in specs:
        h.update(b"\0" + spec.digest().encode())
    return h.hexdigest()


def start_local_cluster(workers: int) -> Any:
    """A Dask ``LocalCluster`` of ``workers`` single-threaded processes on the loopback
    interface, with :data:`LOCAL_CLUSTER_CONFIG` (what ``--workers N`` starts)."""
    import dask
    from distributed import LocalCluster

    # a shard that raises is reported by dlprep as one line (after its retries); the workers'
    # own ERROR log ("Compute Failed", the task's arguments and a traceback, on this process's
    # stderr) would repeat it in many: kept only with -v -v (DEBUG)
    quiet: int | bool = False if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL
    with dask.config.set(LOCAL_CLUSTER_CONFIG):  # the nannies hand it to their workers
        # the scheduler always serves HTTP; on a free port of the loopback interface
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0",
                            silence_logs=quiet)


class Executor:
    """Where shards run (see the module docstring); a context manager that owns the Dask
    client (and the ``LocalCluster`` it started), started on the first shard that needs it."""

    def __init__(self, workers: int = 1, scheduler: str | None = None, *,
                 progress: bool | None = None, timeout: float | None = None) -> None:
        if workers < 1:
            raise DlprepError(f"--workers: must be at least 1, got {workers}")
        self.workers = int(workers)
        self.scheduler = scheduler_address(scheduler)
        self.progress = progress
        self.timeout = connect_timeout() if timeout is None else timeout
        self.startup_seconds = 0.0
        self._client: Any = None
        self._cluster: Any = None
        self._closing: threading.Thread | None = None

    @property
    def uses_dask(self) -> bool:
        return self.workers > 1 or self.scheduler is not None

    def describe(self) -> str:
        if self.scheduler:
            return f"the Dask scheduler {self.scheduler}"
        if self.workers > 1:
            return f"a Dask LocalCluster of {self.workers} processes"
        return "this process"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect, and stop the LocalCluster this executor started (waits for both)."""
        closing, self._closing = self._closing, None
        if closing is not None:
            closing.join()
        self._shutdown()

    def close_soon(self) -> None:
        """Start closing in the background: for a caller that runs no more shards and has
        other work to do meanwhile (e.g. assembling the parts); :meth:`close` waits."""
        if self._client is None and self._cluster is None:
            return
        self._closing = threading.Thread(target=self._shutdown, name="dlprep-dask-close",
                                         daemon=True)
        self._closing.start()

    def _shutdown(self) -> None:
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def client(self) -> Any:
        """The Dask client (connects or starts the LocalCluster on first use)."""
        if self._client is not None:
            return self._client
        try:
            from distributed import Client
        except ImportError:
            raise DlprepError("--workers N > 1 and --scheduler need Dask distributed: "
                              "pip install 'dlprep[scale]'") from None
        if not log.isEnabledFor(logging.DEBUG):  # Dask's own chatter (a lost worker, ...)
            logging.getLogger("distributed").setLevel(logging.ERROR)
        start = time.perf_counter()
        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=self.timeout,
                                      set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise DlprepError(f"cannot reach the Dask scheduler at {self.scheduler} within "
                                  f"{self.timeout:g} s ({exc}); is `dask scheduler` running "
                                  f"there? (--scheduler / {SCHEDULER_ENV})") from None
        else:
            self._cluster = start_local_cluster(self.workers)
            self._client = Client(self._cluster, set_as_default=False)
        self.startup_seconds += time.perf_counter() - start
        log.info("Dask: %s up in %.1f s", self.describe(), time.perf_counter() - start)
        return self._client

    def run(self, specs: Sequence[ShardSpec], fn: ShardFn, *, parts_dir: Path | None = None,
            key: str = "", plan: Sequence[ShardSpec] | None = None,
            retries: int = DEFAULT_RETRIES, desc: str = "shards") -> ShardRun:
        """Run ``fn`` on every spec not finished yet; results in plan order.

        With ``parts_dir``, each shard's part is ``parts_dir/<id>.shard`` and the manifest
        there records finished shards (``key``: the caller's configuration digest; a change
        starts over). A shard that raises is retried up to ``retries`` times (bad input and
        a full disk are not); then the run stops with the shard named (``ShardError``), and
        the shards finished so far stay recorded for the next run. ``plan``: the whole plan
        when ``specs`` is a part of it (the manifest's key covers the whole plan).
        """
        check_plan(plan or specs)
        start, startup0 = time.perf_counter(), self.startup_seconds
        manifest = Manifest.open(parts_dir, plan_key(key, fn, plan or specs)) \
            if parts_dir else None
        results: dict[str, ShardResult] = {}
        if manifest is not None:
            for spec in specs:
                if (r := manifest.finished(spec)) is not None:
                    results[spec.id] = r
        todo = [s for s in specs if s.id not in results]
        run = ShardRun([], 0.0, self.describe(), resumed=len(results))
        if results:
            log.info("%s: %d of %d shards already done (manifest in %s)", desc, len(results),
                     len(specs), parts_dir)
        pdir = str(Path(parts_dir).absolute()) if parts_dir is not None else None
        bar = progress_bar(progress_enabled(self.progress), desc=desc, total=len(specs),
                           unit="shard", initial=len(results))

        def done(spec: ShardSpec, result: ShardResult) -> None:
            if manifest is not None:
                manifest.record(spec, result)
            results[spec.id] = result
            run.ran += 1
            bar.update(1)

        try:
            if todo and self.uses_dask:
                self._run_dask(todo, fn, pdir, retries, done, run)
            else:
                for spec in todo:
                    self._run_here(spec, fn, pdir, retries, done, run)
        finally:
            bar.close()
            if manifest is not None:
                manifest.clear_temps()
        run.results = [results[s.id] for s in specs]
        run.startup = self.startup_seconds - startup0
        run.seconds = time.perf_counter() - start - run.startup
        log.info("%s: %d shards on %s (%d run, %d resumed) in %.2f s", desc, len(specs),
                 run.executor, run.ran, run.resumed, run.seconds)
        return run

    def imap(self, fn: Callable[[T], R], items: Iterable[T], *, window: int | None = None,
             retries: int = DEFAULT_RETRIES, what: str = "task") -> Iterator[R]:
        """``fn(item)`` for each of ``items`` (read lazily), results in input order, with at
        most ``window`` tasks in flight (default 4 per worker): a streaming map without parts
        or manifest, for work whose results are consumed as they come (e.g. pages of a dump).
        ``fn`` must be module-level; items travel to the workers (keep them small). Failures
        are retried like shards', then raise ``ShardError`` naming ``what`` and the item's
        position. Closing the iterator early cancels what is still in flight."""
        if not self.uses_dask:
            for n, item in enumerate(items):
                yield self._call_here(fn, item, n, retries, what)
            return
        client = self.client()
        if window is None:
            window = 4 * max(1, sum(client.nthreads().values()) if self.scheduler
                             else self.workers)
        pending: deque[tuple[int, Any, Any]] = deque()
        it = iter(enumerate(items))
        try:
            while True:
                while len(pending) < window and (nxt := next(it, None)) is not None:
                    n, item = nxt
                    pending.append((n, item, client.submit(_call, fn, item, pure=False)))
                if not pending:
                    return
                n, item, fut = pending.popleft()
                for attempt in range(1, retries + 2):
                    try:
                        result = fut.result()
                        break
                    except Exception as exc:
                        if attempt > retries or not _retryable(exc):
                            raise _fail_item(what, n, attempt, exc) from exc
                        log.warning("%s %d failed (%s: %s); retrying (%d of %d)", what, n,
                                    type(exc).__name__, exc, attempt, retries)
                        fut = client.submit(_call, fn, item, pure=False)
                fut.release()
                yield result
        finally:
            if pending:
                client.cancel([f for _, _, f in pending])

    @staticmethod
    def _call_here(fn: Callable[[T], R], item: T, n: int, retries: int, what: str) -> R:
        for attempt in range(1, retries + 2):
            try:
                return fn(item)
            except Exception as exc:
                if attempt > retries or not _retryable(exc):
                    raise _fail_item(what, n, attempt, exc) from exc
                log.warning("%s %d failed (%s: %s); retrying (%d of %d)", what, n,
                            type(exc).__name__, exc, attempt, retries)
        raise AssertionError("unreachable")

    @staticmethod
    def _run_here(spec: ShardSpec, fn: ShardFn, pdir: str | None, retries: int,
                  done: Callable[[ShardSpec, ShardResult], None], run: ShardRun) -> None:
        for attempt in range(1, retries + 2):
            try:
                result = run_one(fn, spec, pdir)
            except Exception as exc:
                if attempt > retries or not _retryable(exc):
                    raise _fail(spec, attempt, exc) from exc
                log.warning("shard %s failed (%s: %s); retrying (%d of %d)", spec.id,
                            type(exc).__name__, exc, attempt, retries)
                run.retried += 1
                continue
            done(spec, result)
            return

    def _run_dask(self, todo: Sequence[ShardSpec], fn: ShardFn, pdir: str | None,
                  retries: int, done: Callable[[ShardSpec, ShardResult], None],
                  run: ShardRun) -> None:
        client = self.client()  # first: it says which extra to install when Dask is missing
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]

        def submit(spec: ShardSpec, attempt: int) -> Any:
            return client.submit(run_one, fn, spec, pdir, pure=False,
                                 key=f"dlprep-shard-{spec.id}-{token}-{attempt}")

        pending = {submit(spec, 1): (spec, 1) for spec in todo}
        queue = as_completed(list(pending), loop=client.loop)
        try:
            for fut in queue:
                spec, attempt = pending.pop(fut)
                if fut.status == "finished":
                    done(spec, fut.result())
                    fut.release()
                    continue
                exc = fut.exception() if fut.status == "error" else \
                    RuntimeError(f"task {fut.status}")
                if attempt > retries or not _retryable(exc):
                    raise _fail(spec, attempt, exc) from exc
                log.warning("shard %s failed (%s: %s); retrying (%d of %d)", spec.id,
                            type(exc).__name__, exc, attempt, retries)
                run.retried += 1
                again = submit(spec, attempt + 1)
                pending[again] = (spec, attempt + 1)
                queue.add(again)
        finally:
            if pending:
                client.cancel(list(pending))


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def run_shards(specs: Sequence[ShardSpec], fn: ShardFn, *, workers: int = 1,
               scheduler: str | None = None, parts_dir: Path | None = None, key: str = "",
               retries: int = DEFAULT_RETRIES, progress: bool | None = None,
               desc: str = "shards") -> ShardRun:
    """One-shot :meth:`Executor.run` (an executor started and closed around it)."""
    with Executor(workers, scheduler, progress=progress) as ex:
        return ex.run(specs, fn, parts_dir=parts_dir, key=key, retries=retries, desc=desc)
