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

    @property
    def is_offline(self) -> bool:
        from ..cache import offline_from_env

        return self.offline or offline_from_env()

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0


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


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--cache-dir, --offline, --quiet, -v on a command (also accepted before the command)."""

    @click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                  help="Cache root (default: $DLPREP_CACHE, ./cache if it is a dlprep cache, "
                       "else ~/.cache/dlprep).")
    @click.option("--offline", is_flag=True, default=False,
                  help="Never open a network connection; fail naming what is missing "
                       "(also DLPREP_OFFLINE=1).")
    @click.option("--quiet", "-q", is_flag=True, default=False, help="Only print errors.")
    @click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, cache_dir: str | None, offline: bool, quiet: bool,
                verbose: int, *args: Any, **kwargs: Any) -> Any:
        state = ctx.ensure_object(State)
        if cache_dir:
            state.cache_dir = cache_dir
        state.offline = state.offline or offline
        if quiet:
            state.verbosity = -1
        elif verbose:
            state.verbosity = verbose
        _setup_logging(state.verbosity)
        return ctx.invoke(func, state, *args, **kwargs)

    return wrapper


def emit_path(path: object) -> None:
    """Print the prepared path as the last stdout line (the scripting contract)."""
    click.echo(str(path))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
