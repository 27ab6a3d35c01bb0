"""dlprep prepare --from-hf PATH --name NAME: import a local Hugging Face dataset."""

from __future__ import annotations

import click

from ..errors import DlprepError
from .common import State, common_options, emit_path


@click.command("prepare")
@click.option("--from-hf", "from_hf", type=click.Path(exists=True), default=None,
              help="A folder written by Dataset/DatasetDict.save_to_disk, a .parquet file or a "
                   "folder of parquet files (local; no hub access).")
@click.option("--name", "name", required=True,
              help="Dataset name to store it under (then `dlprep.load(NAME)`).")
@click.option("--image-column", default="", help="Image column (default: the first "
                                                 "Image/Array2D/Array3D column).")
@click.option("--label-column", default="", help="Label column (default: the first ClassLabel, "
                                                 "else 'label').")
@click.option("--text-column", default="", help="String column to import as a text sequence "
                                                "set (default: the first string column when "
                                                "there is no image column).")
@click.option("--size", default=0, show_default=True,
              help="Resize images to SIZE x SIZE (shorter side + centre crop); needed when "
                   "image sizes differ.")
@click.option("--tokenizer", default="char", show_default=True,
              type=click.Choice(["char", "word", "bpe"]), help="Text imports: token unit.")
@click.option("--force", is_flag=True, help="Rebuild even if already prepared.")
@common_options
def prepare_cmd(state: State, from_hf: str | None, name: str, image_column: str,
                label_column: str, text_column: str, size: int, tokenizer: str,
                force: bool) -> None:
    """Convert a local dataset into dlprep HDF5; print the prepared path (last line).

    Image/Array2D/Array3D columns become `images`, ClassLabel becomes `labels` + `classes`,
    a DatasetDict's splits become `splits/` (`validation` -> `val`), other scalar columns
    become `meta/<column>`; a string column becomes a tokenized sequence set.
    """
    from ..prepare.core import prepare
    from ..prepare.hf import import_recipe

    if from_hf is None:
        raise DlprepError("prepare: give a source, e.g. --from-hf PATH")
    options = {"path": from_hf, "image_column": image_column, "label_column": label_column,
               "text_column": text_column, "size": size, "tokenizer": tokenizer}
    out = prepare(import_recipe(from_hf, name), state.cache(), options=options, name=name,
                  fetch=state.fetch_options(offline=True, force=force))
    if not state.quiet:
        from .summary import summary_line

        click.echo(summary_line(out))
    emit_path(out)


COMMANDS = [prepare_cmd]
