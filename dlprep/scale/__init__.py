"""Scale-out: sharded preparation on this process or on Dask distributed (issue 15).

A builder becomes *sharded* by defining, at module level (``prepare`` then calls
:func:`~dlprep.scale.build.build_sharded` instead of ``build``):

``plan_shards(ctx: PrepareContext) -> list[ShardSpec]``
    Deterministic and cheap (read an index, list files; no parsing). The plan must not depend
    on ``ctx.workers`` or the scheduler: a resumed run may use others. Spec ids are stable
    (e.g. ``d000-000017``), file-name safe and unique; their order is the output order.
``run_shard(spec: ShardSpec, part: Path | None) -> dict``
    Pure, picklable, module-level (workers import it by name): reads only what ``spec``
    names, writes its part file at ``part`` (a temporary name; the executor fsyncs and renames
    it into place) and returns plain JSON values (counts, sums; kept in the manifest, so a
    resumed shard's stats are there without rerunning it). Never receives an open file. An
    HDF5 part is best written with :func:`write_h5_part` (built in memory, then written with
    plain I/O: a full disk raises ``ENOSPC`` there instead of inside HDF5's close).
``assemble(ctx: PrepareContext, out: Path, job: ShardJob) -> None``
    Writes the one prepared file ``out`` (the layout of docs/FORMAT.md) from ``job.parts`` and
    ``job.stats`` (both in plan order), merging statistics from the per-shard sums.
    ``job.map(specs, fn, stage=..., key=...)`` runs further stages on the same executor
    (e.g. token counts, then encoding with the reduced vocabulary).
Optional: ``enough(ctx, stats_so_far) -> bool | None`` (run the plan in order, in batches,
until it is true, e.g. ``--max-pages``; None: no limit), ``SHARD_RETRIES`` (default 2) and
``ASSEMBLY_MAPS = False`` (``assemble`` runs nothing on the executor: a LocalCluster is then
stopped in the background while the parts are joined).

Text builders write :class:`dlprep.scale.text.TextPart` parts and assemble with
:func:`dlprep.scale.text.assemble_text` (the shared text pipeline, same bytes as
``write_text_dataset``).

Executors (:class:`Executor`, :func:`run_shards`): ``workers == 1`` and no scheduler runs in
this process (Dask is not imported); ``workers > 1`` a Dask ``LocalCluster`` of that many
processes, one thread each, with quiet Dask settings
(``executor.LOCAL_CLUSTER_CONFIG``: no statistical profiler, slower timers); ``scheduler``
(``--scheduler tcp://HOST:PORT`` or ``$DLPREP_SCHEDULER``) an existing cluster via
``distributed.Client`` (connect timeout ``$DLPREP_SCHEDULER_TIMEOUT``, default 10 s). Its
workers must import the same dlprep and see the same paths (the cache and the inputs on a
shared file system). One code path for all.

Failures and resume: a shard that raises is retried ``retries`` times (not bad input, a
``DlprepError``, nor a full disk), then the run stops with ``ShardError`` naming the shard; a
worker process that dies mid-shard has its task rescheduled by Dask. Finished shards are
recorded in ``manifest.jsonl`` next to the parts, after the rename; a rerun redoes only the
others; a changed configuration or plan starts over. Timings of the last build:
:func:`last_timings` (plan, startup, shards, maps, assembly), for benchmarks.
"""

from __future__ import annotations

from .build import ShardJob, build_sharded, last_timings
from .executor import Executor, ShardError, ShardRun, run_shards, scheduler_address
from .shards import ShardResult, ShardSpec, check_plan, ranges, write_h5_part

__all__ = ["Executor", "ShardError", "ShardJob", "ShardResult", "ShardRun", "ShardSpec",
           "build_sharded", "check_plan", "last_timings", "ranges", "run_shards",
           "scheduler_address", "write_h5_part"]
