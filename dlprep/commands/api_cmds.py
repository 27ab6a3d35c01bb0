"""dlprep import-posts: posts exported from X (or any JSONL/CSV of texts) -> a text dataset."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options, emit_path

POSTS_LICENSE = ("Posts remain their authors'. Content obtained from the X API may not be "
                 "redistributed under X's Developer Agreement: share the post ids (meta/id) "
                 "so others can re-hydrate them.")


def _dataset_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")
    return name or "imported-posts"


@click.command("import-posts", context_settings={"ignore_unknown_options": True,
                                                 "allow_extra_args": True})
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", "out_name", default=None,
              help="Dataset name (default: the file name without suffix).")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "json", "csv", "tsv"]),
              default="auto", show_default=True, help="File format (auto: from the suffix).")
@click.option("--text-column", default="text", show_default=True,
              help="CSV column (or JSON field) holding the post text.")
@click.option("--label-field", default=None,
              help="Label each post by this field or column (e.g. lang).")
@click.option("--lang", default=None, metavar="CODE",
              help="Keep only posts whose lang field is CODE (e.g. en).")
@click.option("--emoji-labels", is_flag=True,
              help="Label = the post's most frequent emoji, removed from the text; posts "
                   "without emoji are dropped and counted.")
@click.option("--min-count", type=click.IntRange(min=0), default=1, show_default=True,
              help="With --emoji-labels: emoji seen in fewer posts than this are rare.")
@click.option("--rare", type=click.Choice(["drop", "other"]), default="drop",
              show_default=True, help="Rare emoji: drop their posts, or label them 'other'.")
@click.option("--keep-skin-tones", is_flag=True,
              help="With --emoji-labels: a skin-toned emoji is not the same label as its base.")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe"]), default="word",
              show_default=True, help="Token unit.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of FILE.")
@click.option("--force", is_flag=True, help="Rebuild even if prepared.")
@common_options
def import_posts_cmd(state: State, file: Path, extra: tuple[str, ...], out_name: str | None,
                     fmt: str, text_column: str, label_field: str | None, lang: str | None,
                     emoji_labels: bool, min_count: int, rare: str, keep_skin_tones: bool,
                     tokenizer: str, encoding: str, force: bool) -> None:
    """Prepare posts from FILE as a text dataset; print the prepared HDF5 path (last line).

    FILE is JSON Lines (X API v2 post objects, {"text": ...} objects, or saved v2 responses
    one per line), a .json v2 response or list of posts, or a CSV/TSV with a text column. Post
    ids, author ids/usernames, creation times and languages are kept under meta/. More text
    options follow as --key value, e.g. `--lowercase true --min-freq 2 --max-vocab 20000`.
    """
    from ..fetch.download import FileSpec, hash_file
    from ..prepare.core import prepare
    from ..prepare.params import parse_extra_args
    from ..recipes import Recipe

    if label_field and emoji_labels:
        raise DlprepError("import-posts: --emoji-labels and --label-field both set the labels; "
                          "give one")
    file = file.resolve()
    name = out_name or _dataset_name(file)
    digest = hash_file(file, "sha256")
    # the cached copy's name carries the content hash: editing FILE gives a new copy/dataset
    cached_name = f"{re.sub(r'[^A-Za-z0-9_-]+', '-', file.stem)[:60]}-{digest[:12]}{file.suffix}"
    recipe = Recipe(name=name, title=f"posts imported from {file.name}", version="1",
                    kind="sequence", path=file, parser="x-posts", license=POSTS_LICENSE,
                    description=f"imported with dlprep import-posts from {file}",
                    files=[FileSpec(name=cached_name, urls=[str(file)], sha256=digest)])
    options = parse_extra_args(list(extra), f"import-posts {file.name}")
    options.update({"format": fmt, "text_field": text_column, "label_field": label_field,
                    "lang": lang, "emoji_labels": emoji_labels, "min_count": min_count,
                    "rare": rare, "keep_skin_tones": keep_skin_tones, "tokenizer": tokenizer,
                    "encoding": encoding})
    out = prepare(recipe, state.cache(), options=options, name=name,
                  fetch=state.fetch_options(offline=True, force=force))
    if not state.quiet:
        from .summary import summary_line

        click.echo(summary_line(out))
    emit_path(out)


COMMANDS = [import_posts_cmd]
