"""dlprep list / info / fetch / preview / recipes."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options, echo_json, emit_path, scheduler_option
from .summary import describe_samples, summary_line


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def list_cmd(state: State, as_json: bool) -> None:
    """List the datasets (recipes) dlprep knows, with their kind and title."""
    from ..recipes import all_recipes, load_recipe_file

    rows = []
    for name, path in sorted(all_recipes().items()):
        try:
            r = load_recipe_file(path)
            rows.append({"name": name, "kind": r.kind, "title": r.title, "path": str(path)})
        except DlprepError as exc:
            rows.append({"name": name, "kind": "?", "title": f"(invalid: {exc})",
                         "path": str(path)})
    if as_json:
        echo_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['kind']:<8}  {r['title']}")


def _file_state(path: Path) -> str:
    if path.is_file():
        return f"cached ({path.stat().st_size:,} bytes)"
    part = path.with_name(path.name + ".part")
    if part.is_file():
        return f"partial ({part.stat().st_size:,} bytes, resumable)"
    return "not downloaded"


@click.command("info")
@click.argument("name")
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False), default=None,
              help="Use this recipe file instead of looking NAME up.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def info_cmd(state: State, name: str, recipe_file: str | None, as_json: bool) -> None:
    """Show a dataset's recipe, files and cache state, and (once prepared) its shapes, splits
    and class counts. NAME may also be a prepared dataset name or an .h5 path."""
    from ..prepare.core import builder_module, find_prepared
    from ..recipes import find_recipe
    from ..redact import redact_url
    from ..store import dataset_summary

    cache = state.cache()
    out: dict = {"name": name}
    recipe = None
    if not (name.endswith((".h5", ".hdf5")) and Path(name).is_file()):
        try:
            recipe = find_recipe(name, recipe_file)
        except DlprepError:
            if find_prepared(cache, name) is None:
                raise
    prepared = Path(name) if recipe is None and Path(name).is_file() else find_prepared(cache, name)
    if recipe is not None:
        module = builder_module(recipe)
        out.update({
            "title": recipe.title, "kind": recipe.kind, "version": recipe.version,
            "recipe": str(recipe.path), "builder": recipe.parser or recipe.connector,
            "homepage": recipe.homepage, "license": recipe.license, "citation": recipe.citation,
            "description": recipe.description, "baselines": recipe.baselines,
            "options": [{"flag": p.flag, "type": p.type,
                         "default": recipe.options.get(p.name, p.default), "help": p.help,
                         **({"choices": list(p.choices)} if p.choices else {})}
                        for p in getattr(module, "PARAMS", ())],
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256, "md5": f.md5,
                       "urls": [redact_url(u) for u in f.urls],
                       "state": _file_state(cache.raw_dir(recipe.name) / f.name),
                       **({"note": f.note} if f.note else {})}
                      for f in recipe.files],
        })
        if recipe.notes:
            out["notes"] = recipe.notes
    out["cache"] = str(cache.root)
    out["prepared"] = dataset_summary(prepared) if prepared else None
    if as_json:
        echo_json(out)
        return
    _print_info(out)


def _title(out: dict) -> str:
    """The recipe's title; for a set made without a recipe (an import), what made it."""
    if out.get("title"):
        return out["title"]
    p = out.get("prepared") or {}
    made_by = f" (made by `{p['command']}`)" if p.get("command") else ""
    return f"{p.get('kind', 'prepared')} dataset without a recipe{made_by}"


def _print_info(out: dict) -> None:
    echo = click.echo
    echo(f"{out['name']}: {_title(out)}")
    echo(f"  cache     {out['cache']}  (--cache-dir or DLPREP_CACHE to use another)")
    for key in ("kind", "version", "builder", "homepage", "license", "recipe"):
        if out.get(key):
            echo(f"  {key:<9} {out[key]}")
    if out.get("description"):
        echo(f"  about     {out['description']}")
    if out.get("notes"):
        echo(f"  notes     {out['notes']}")
    if out.get("baselines"):
        echo(f"  baselines {', '.join(out['baselines'])}")
    if out.get("options"):
        echo("  options:")
        for o in out["options"]:
            choices = f" [{'|'.join(o['choices'])}]" if o.get("choices") else ""
            echo(f"    {o['flag']}{choices} (default {o['default']!r}): {o['help']}")
    if out.get("files"):
        echo("  files:")
        for f in out["files"]:
            size = f"{f['size']:,} bytes" if f["size"] else "size unknown"
            digest = f"sha256 {f['sha256'][:16]}…" if f["sha256"] else (
                f"md5 {f['md5']}" if f["md5"] else "no published checksum")
            echo(f"    {f['name']}  {size}, {digest}: {f['state']}")
            if f.get("note"):
                echo(f"      note: {f['note']}")
    p = out.get("prepared")
    if not p:
        echo("  prepared  not yet (dlprep fetch " + out["name"] + ")")
        return
    echo(f"  prepared  {p['path']}")
    echo(f"    samples  {describe_samples(p)}")
    if p.get("attribution"):
        echo(f"    attribution {p['attribution']}")
    for key, a in p["arrays"].items():
        echo(f"    {key:<8} {tuple(a['shape'])} {a['dtype']}")
    if p.get("splits"):
        echo("    splits   " + ", ".join(f"{k}={v:,}" for k, v in p["splits"].items()))
    if p.get("class_counts"):
        counts = p["class_counts"]
        shown = list(counts.items())[:20]
        more = f" … (+{len(counts) - 20} classes)" if len(counts) > 20 else ""
        echo("    classes  " + ", ".join(f"{k}:{v}" for k, v in shown) + more)
    if p.get("mean"):
        over = p.get("mean_std_over", "train split, pixels in [0, 1]")
        echo(f"    mean/std {p['mean']} / {p['std']}  ({over})")


@click.command("fetch", context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True})
@click.argument("name")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False), default=None,
              help="A recipe TOML file to use (NAME must match its name).")
@click.option("--mirror", "mirrors", multiple=True, metavar="BASE",
              help="Base URL or folder tried before the recipe's URLs; each file is looked up "
                   "as BASE/<file name>. Repeatable.")
@click.option("--force", is_flag=True, help="Re-download and re-prepare even if cached.")
@click.option("--name", "out_name", default=None,
              help="Store the prepared dataset under this name (for parameterized sources).")
@click.option("--max-bytes", default=None, metavar="SIZE",
              help="Stop a download whose size nobody declared at SIZE (e.g. 500M, 8G; "
                   "default 4G, also DLPREP_MAX_BYTES).")
@scheduler_option
@common_options
def fetch_cmd(state: State, name: str, extra: tuple[str, ...], recipe_file: str | None,
              mirrors: tuple[str, ...], force: bool, out_name: str | None,
              max_bytes: str | None, scheduler: str | None) -> None:
    """Download, verify and prepare dataset NAME; print the prepared HDF5 path (last line).

    Idempotent: a second run only checks the cache. Dataset-specific options (see
    `dlprep info NAME`) follow as --key value, e.g. `dlprep fetch cifar100 --label coarse`.
    """
    from ..fetch.options import parse_size
    from ..prepare.core import prepare
    from ..prepare.params import parse_extra_args
    from ..recipes import find_recipe

    recipe = find_recipe(name, recipe_file)
    options = parse_extra_args(list(extra), f"dataset {name}")
    cap = parse_size(max_bytes, "--max-bytes") if max_bytes else None
    fetch = state.fetch_options(mirrors=mirrors, force=force, max_bytes=cap)
    out = prepare(recipe, state.cache(), options=options, name=out_name, fetch=fetch,
                  scheduler=scheduler)
    if not state.quiet:
        click.echo(summary_line(out))
    emit_path(out)


@click.command("preview")
@click.argument("name")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True,
              help="PNG file to write.")
@click.option("--split", default=None, help="Split to sample from (default: all).")
@click.option("--count", default=100, show_default=True, help="How many samples to show.")
@click.option("--seed", default=0, show_default=True, help="Seed for choosing samples.")
@common_options
def preview_cmd(state: State, name: str, out_file: str, split: str | None, count: int,
                seed: int) -> None:
    """Write a PNG grid of samples of a prepared dataset (NAME or an .h5 path), labelled by
    class. The dataset is fetched and prepared first if needed."""
    from ..prepare.core import prepared_or_prepare
    from ..preview import render_preview

    path = prepared_or_prepare(name, state.cache(), fetch=state.fetch_options())
    render_preview(path, Path(out_file), split=split, count=count, seed=seed)
    click.echo(f"wrote {out_file}")


@click.group("recipes")
def recipes_group() -> None:
    """Work with recipe files."""


@recipes_group.command("checksum")
@click.argument("recipe_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--mirror", "mirrors", multiple=True, metavar="BASE",
              help="Base URL or folder tried before the recipe's URLs.")
@common_options
def recipes_checksum(state: State, recipe_file: str, mirrors: tuple[str, ...]) -> None:
    """Download every file of RECIPE_FILE (verifying any hash already there) and write each
    file's sha256 and size into the recipe."""
    from ..recipes import load_recipe_file
    from ..recipes_edit import fill_checksums

    recipe = load_recipe_file(recipe_file)
    results = fill_checksums(recipe, state.cache(), state.fetch_options(mirrors=mirrors))
    for r in results:
        if r.status == "skipped":
            click.echo(f"{r.name}: skipped: {r.reason}")
        else:
            click.echo(f"{r.name}: sha256 {r.sha256}, {r.size:,} bytes ({r.status})")
    skipped = [r.name for r in results if r.status == "skipped"]
    updated = sum(r.status == "updated" for r in results)
    click.echo(f"updated {recipe_file} ({updated} of {len(results)} files)" if updated
               else f"{recipe_file}: nothing to update")
    if skipped:
        raise DlprepError(f"{recipe_file}: skipped {len(skipped)} file(s): {', '.join(skipped)}")


@recipes_group.command("validate")
@click.argument("recipe_files", nargs=-1, type=click.Path(dir_okay=False))
@common_options
def recipes_validate(state: State, recipe_files: tuple[str, ...]) -> None:
    """Validate recipe files (default: every recipe dlprep can see)."""
    from ..prepare.core import builder_module
    from ..recipes import all_recipes, load_recipe_file

    files = list(recipe_files) or [str(p) for p in all_recipes().values()]
    for f in files:
        builder_module(load_recipe_file(f))
        click.echo(f"ok  {f}")


COMMANDS = [list_cmd, info_cmd, fetch_cmd, preview_cmd, recipes_group]
