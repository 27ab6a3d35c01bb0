"""dlprep import-images: a local image folder / CSV / archive -> a prepared image dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options, emit_path, scheduler_option


def skip_report(path: Path) -> list[str]:
    """Lines describing what a prepared image file left out (root attributes ``skipped`` and
    ``duplicates``)."""
    import h5py

    lines = []
    with h5py.File(path, "r") as f:
        for key, verb in (("skipped", "skipped"), ("duplicates", "dropped as duplicates")):
            raw = f.attrs.get(key)
            if raw is None:
                continue
            entries = json.loads(raw)
            if not entries:
                continue
            lines.append(f"{verb} {len(entries)} file(s):")
            for e in entries:
                why = e.get("reason") or f"same as {e.get('same_as')}"
                lines.append(f"  {e['name']}: {why}")
    return lines


@click.command("import-images")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--name", "out_name", required=True, help="Dataset name to store it under.")
@click.option("--size", default="64", show_default=True,
              help="Output size in pixels: N (square) or HxW.")
@click.option("--grayscale", is_flag=True, help="Store one channel (L) instead of RGB.")
@click.option("--resize", "policy", default="shorter-side+center-crop", show_default=True,
              type=click.Choice(["shorter-side+center-crop", "pad", "stretch"]),
              help="How to reach the output size.")
@click.option("--dedupe", default="none", show_default=True,
              type=click.Choice(["none", "exact", "perceptual"]),
              help="Drop duplicate images (file bytes, or a perceptual hash of the output).")
@click.option("--test-fraction", default=0.2, show_default=True,
              help="Share of each class that goes to the test split.")
@click.option("--seed", default=0, show_default=True, help="Seed of the stratified split.")
@click.option("--max-pixels", default=89_478_485, show_default=True,
              help="Refuse images with more pixels than this (decompression-bomb guard).")
@click.option("--workers", default=1, show_default=True,
              help="Decode processes: 1 in this process, N > 1 a local Dask cluster of N "
                   "processes; the output bytes do not depend on it.")
@scheduler_option
@click.option("--force", is_flag=True, help="Rebuild even if prepared.")
@common_options
def import_images_cmd(state: State, source: Path, out_name: str, size: str, grayscale: bool,
                      policy: str, dedupe: str, test_fraction: float, seed: int, max_pixels: int,
                      workers: int, scheduler: str | None, force: bool) -> None:
    """Import SOURCE: an ImageFolder tree (one sub-folder per class), a CSV of `path,label`, or
    a tar/zip of such a tree, into a prepared image dataset; print its HDF5 path (last line).

    Class names are the folder names (or CSV labels), sorted. Files that do not decode
    (corrupt, truncated, bomb-sized) are skipped and listed, not fatal.
    """
    from ..prepare.core import prepare
    from ..recipes import Recipe

    if workers < 1:
        raise DlprepError(f"--workers must be >= 1, got {workers}")
    if max_pixels < 1:
        raise DlprepError(f"--max-pixels must be a positive pixel count, got {max_pixels}")
    recipe = Recipe(name="image-folder", title=f"images imported from {source}", version="2",
                    kind="image", path=source, parser="image-folder",
                    description="local images imported with dlprep import-images")
    options = {"source": str(source), "size": size, "grayscale": grayscale, "resize": policy,
               "dedupe": dedupe, "test_fraction": test_fraction, "seed": seed,
               "max_pixels": max_pixels, "workers": workers}
    out = prepare(recipe, state.cache(), options=options, name=out_name,
                  fetch=state.fetch_options(force=force), scheduler=scheduler)
    if not state.quiet:
        from .summary import summary_line

        click.echo(summary_line(out))
        for line in skip_report(out):
            click.echo(line)
    emit_path(out)


COMMANDS = [import_images_cmd]
