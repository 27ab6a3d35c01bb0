"""Command-line interface (Click). Every error is one line on stderr and a non-zero exit.

Commands that prepare a dataset print the prepared HDF5 path as the *last line of stdout*.
Feature modules add their commands in :func:`_register` (one line each).
"""

from __future__ import annotations

import errno
import logging

import click

from ._version import __version__
from .commands.common import State, global_options
from .errors import DlprepError
from .redact import mask_secrets

log = logging.getLogger("dlprep")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dlprep")
@global_options
@click.pass_context
def cli(ctx: click.Context, cache_dir: str | None, offline: bool, quiet: bool,
        verbose: int) -> None:
    """dlprep: public deep-learning data -> verified, cached HDF5 tensors -> fast loaders.

    \b
    Typical use:
      dlprep list                      datasets you can fetch
      dlprep fetch mnist               download, verify, prepare (prints the HDF5 path)
      dlprep info mnist                recipe, files, cache state, shapes, class counts
      dlprep preview mnist --out m.png a grid of samples
      dlprep train-baseline cnn mnist  prove the data trains
    """
    ctx.ensure_object(State).apply(cache_dir, offline, quiet, verbose)


def _register() -> None:
    from .commands import (
        api_cmds,
        cache_cmds,
        core_cmds,
        hf_cmds,
        image_cmds,
        text_cmds,
        train_cmds,
        web_cmds,
        wiki_cmds,
    )

    for module in (core_cmds, cache_cmds, image_cmds, text_cmds, hf_cmds, train_cmds, web_cmds,
                   wiki_cmds, api_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning dlprep errors into one-line messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="dlprep", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except DlprepError as exc:
        click.echo(f"error: {mask_secrets(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            click.echo(f"error: disk full writing {exc.filename or 'the cache'}; free space and "
                       f"rerun (nothing half-written was kept)", err=True)
        else:
            click.echo(f"error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        return 1
    except Exception as exc:  # a bug: one line by default, the traceback with -vv
        if logging.getLogger("dlprep").isEnabledFor(logging.DEBUG):
            raise
        click.echo(f"error: internal error {type(exc).__name__}: {mask_secrets(str(exc))} "
                   f"(rerun with -vv for the traceback and report it)", err=True)
        return 2
    return 0
