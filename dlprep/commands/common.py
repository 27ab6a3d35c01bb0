"""Shared CLI pieces: the per-invocation state, common options and output helpers."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click


class State:
    """Options shared by all commands (set on the group or on the command)."""

    def __init__(self) -> None:
        self.cache_dir: str | None = None
        self.offline = False
        self.verbosity = 0

    def cache(self):  # type: ignore[no-untyped-def]
        from ..cache import Cache

        return Cache.open(self.cache_dir)

    def fetch_options(self, **overrides: Any):  # type: ignore[no-untyped-def]
        """The run's ``FetchOptions``: --offline (or DLPREP_OFFLINE), no progress bar with -q,
        plus ``overrides`` (a command's --mirror, --force, ...)."""
        from ..fetch.options import FetchOptions

        overrides.setdefault("progress", False if self.quiet else None)
        overrides["offline"] = self.offline or bool(overrides.get("offline"))
        return FetchOptions.from_env(**overrides)

    @property
    def is_offline(self) -> bool:
        return bool(self.fetch_options().offline)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def apply(self, cache_dir: str | None, offline: bool, quiet: bool, verbose: int) -> None:
        """Merge the global options given here (before or after the command name)."""
        if cache_dir:
            self.cache_dir = cache_dir
        self.offline = self.offline or offline
        if quiet:
            self.verbosity = -1
        elif verbose:
            self.verbosity = verbose
        _setup_logging(self.verbosity)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    if verbosity < 0:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("dlprep")
    root.handlers[:] = [handler]
    root.setLevel(level)
    # propagate only where the host process has its own logging set up (e.g. pytest's caplog);
    # in a plain CLI run the root logger has no handlers and our stderr handler is the only one
    root.propagate = bool(logging.getLogger().handlers)


_GLOBAL_OPTIONS = (
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Cache root (default: $DLPREP_CACHE, else the user cache folder "
                      "~/.cache/dlprep; `dlprep info` shows it)."),
    click.option("--offline", is_flag=True, default=False,
                 help="Never open a network connection; fail naming what is missing "
                      "(also DLPREP_OFFLINE=1)."),
    click.option("--quiet", "-q", is_flag=True, default=False, help="Only print errors."),
    click.option("--verbose", "-v", count=True, help="More log output (-vv for debug)."),
)


def global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --cache-dir, --offline, --quiet, -v (declared once, here) to a command or group."""
    for option in reversed(_GLOBAL_OPTIONS):
        func = option(func)
    return func


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The global options on a command too (so they may follow the command name); the
    command receives the merged ``State`` as its first argument."""

    @global_options
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, cache_dir: str | None, offline: bool, quiet: bool,
                verbose: int, *args: Any, **kwargs: Any) -> Any:
        state = ctx.ensure_object(State)
        state.apply(cache_dir, offline, quiet, verbose)
        return ctx.invoke(func, state, *args, **kwargs)

    return wrapper


SCHEDULER_HELP = ("Run the shards of a sharded builder (e.g. wikipedia) on this existing Dask "
                  "scheduler, tcp://HOST:PORT (also DLPREP_SCHEDULER; its workers must see "
                  "the same cache and input paths). Without it, --workers N > 1 starts a "
                  "local Dask cluster of N processes.")

scheduler_option = click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                                help=SCHEDULER_HELP)


def scale_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--workers N`` and ``--scheduler ADDRESS`` (for commands that run a sharded builder;
    pass both on to ``prepare``: ``options["workers"]`` and ``scheduler=``)."""
    func = scheduler_option(func)
    return click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                        help="Worker processes: 1 runs in this process; N > 1 a local "
                             "Dask cluster of N processes (the output does not depend on "
                             "N).")(func)


def emit_path(path: object) -> None:
    """Print the prepared path as the last stdout line (the scripting contract)."""
    click.echo(str(path))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
