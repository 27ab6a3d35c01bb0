"""Drive a sharded builder: plan -> shards on the executor -> assemble, with timings.

``prepare`` calls :func:`build_sharded` instead of ``module.build`` when the builder module
defines ``plan_shards`` (see :mod:`dlprep.scale` for the protocol). The parts live in
``prepared/<name>/.<config hash>.parts/`` (one folder per configuration, under the prepare
lock) and are deleted once the prepared file is complete; after a crash they stay, and the
next run of the same configuration redoes only the shards its manifest does not list.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .executor import DEFAULT_RETRIES, Executor, ShardFn, ShardRun
from .manifest import part_path
from .shards import ShardResult, ShardSpec

if TYPE_CHECKING:
    from ..prepare.core import PrepareContext

log = logging.getLogger("dlprep")

#: timings of the last sharded build in this process (seconds; see :func:`last_timings`)
_LAST: dict[str, Any] = {}


def last_timings() -> dict[str, Any]:
    """Where the last :func:`build_sharded` in this process spent its time: ``plan``,
    ``startup`` (starting or joining Dask), ``shards`` (the first map), ``maps`` (later
    maps, e.g. counting and encoding), ``assembly`` (the rest of ``assemble``: reading
    parts, writing the file), ``total``; plus ``executor``, ``n_shards``, ``shards_run``,
    ``shards_resumed`` (the plan's shards) and ``maps_run``, ``maps_resumed`` (the later
    stages' shards). For benchmarks and tests; empty before the first build."""
    return dict(_LAST)


PARTS_SUFFIX = ".parts"


def parts_dir_of(ctx: PrepareContext) -> Path:
    """``prepared/<name>/.<config hash>.parts`` (absolute: workers may run elsewhere)."""
    return (ctx.cache.prepared_dir(ctx.name) / f".{ctx.config_hash()}{PARTS_SUFFIX}").absolute()


@dataclass
class ShardJob:
    """What ``assemble`` gets: the plan's ``specs`` that ran, their ``parts`` and
    ``results`` (same order), the ``executor`` (for further maps via :meth:`map`) and the
    ``parts_dir``."""

    ctx: PrepareContext
    executor: Executor
    parts_dir: Path
    specs: list[ShardSpec] = field(default_factory=list)
    results: list[ShardResult] = field(default_factory=list)
    map_seconds: float = 0.0  # wall time of the further maps, their Dask startup included
    map_startup: float = 0.0
    map_ran: int = 0  # shards of the further maps run, and resumed from their manifests
    map_resumed: int = 0

    @property
    def parts(self) -> list[Path]:
        return [part_path(self.parts_dir, s.id) for s in self.specs]

    @property
    def stats(self) -> list[dict[str, Any]]:
        return [r.stats for r in self.results]

    def map(self, specs: Sequence[ShardSpec], fn: ShardFn, *, stage: str | None = None,
            key: str = "", desc: str = "") -> ShardRun:
        """Run a further stage on the same executor. With ``stage``, parts go to
        ``parts_dir/<stage>/`` with their own manifest (``key``: what else the stage depends
        on, e.g. a vocabulary digest); without, nothing is written and nothing resumes."""
        pdir = self.parts_dir / stage if stage else None
        run = self.executor.run(specs, fn, parts_dir=pdir,
                                key=f"{self.ctx.config_hash()}:{key}",
                                desc=desc or f"{self.ctx.name} {stage or 'map'}")
        self.map_seconds += run.seconds + run.startup
        self.map_startup += run.startup
        self.map_ran += run.ran
        self.map_resumed += run.resumed
        return run


def build_sharded(module: ModuleType, ctx: PrepareContext, out: Path) -> None:
    """Plan, run and assemble ``module``'s shards into ``out`` (see the module docstring).

    A module may define ``enough(ctx, stats_so_far) -> bool | None`` (e.g. ``--max-pages``;
    None: no limit this time): the plan then runs in batches, in order, until it is true;
    the shards after are not run.
    """
    t0 = time.perf_counter()
    specs: list[ShardSpec] = list(module.plan_shards(ctx))
    t_plan = time.perf_counter() - t0
    pdir = parts_dir_of(ctx)
    retries = int(getattr(module, "SHARD_RETRIES", DEFAULT_RETRIES))
    desc = f"{ctx.name} shards"
    with Executor(ctx.workers, ctx.scheduler, progress=ctx.progress) as ex:
        job = ShardJob(ctx, ex, pdir)
        enough = getattr(module, "enough", None)
        if enough is not None and enough(ctx, []) is None:
            enough = None  # no limit this time
        batch = len(specs) if enough is None else max(4, 2 * ex.workers)
        ran = resumed = 0
        t_shards = 0.0
        for i in range(0, max(1, len(specs)), max(1, batch)):
            chunk = specs[i:i + batch]
            run = ex.run(chunk, module.run_shard, parts_dir=pdir, key=ctx.config_hash(),
                         plan=specs, retries=retries, desc=desc)
            job.specs += chunk
            job.results += run.results
            ran, resumed, t_shards = ran + run.ran, resumed + run.resumed, t_shards + run.seconds
            if enough is not None and enough(ctx, job.stats):
                break
        t2 = time.perf_counter()
        if not getattr(module, "ASSEMBLY_MAPS", True):
            ex.close_soon()  # the workers are done: stop them while the parts are joined
        module.assemble(ctx, out, job)
        t_assembly = time.perf_counter() - t2 - job.map_seconds
        startup = ex.startup_seconds
        executor = ex.describe()
    shutil.rmtree(pdir, ignore_errors=True)
    _LAST.clear()
    _LAST.update({"plan": t_plan, "startup": startup, "shards": t_shards,
                  "maps": job.map_seconds - job.map_startup, "assembly": t_assembly,
                  "total": time.perf_counter() - t0, "executor": executor, "shards_run": ran,
                  "shards_resumed": resumed, "n_shards": len(specs), "maps_run": job.map_ran,
                  "maps_resumed": job.map_resumed})
    log.info("%s: %d shards (%d run, %d resumed) on %s; plan %.2f s, Dask start %.2f s, "
             "shards %.2f s, later maps %.2f s, assembly %.2f s", ctx.name, len(job.specs),
             ran, resumed, executor, t_plan, startup, t_shards, _LAST["maps"], t_assembly)
