"""Recipe schema validation, lookup order, and the built-in recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke_cli

from dlprep.errors import RecipeError
from dlprep.prepare.core import builder_module
from dlprep.recipes import all_recipes, find_recipe, load_recipe_file

GOOD = '''
name = "tiny"
title = "Tiny"
version = "1"
kind = "image"
parser = "idx"

[[files]]
name = "a.gz"
urls = ["https://example.org/a.gz"]
sha256 = "{sha}"
size = 10
'''.replace("{sha}", "0" * 64)


def write(tmp_path: Path, text: str, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_recipes_all_validate() -> None:
    recipes = all_recipes()
    for expected in ("mnist", "mnist-sample", "fashion-mnist", "cifar10", "cifar100"):
        assert expected in recipes
    for name, path in recipes.items():
        recipe = load_recipe_file(path)
        assert recipe.name == name
        builder_module(recipe)  # the builder id resolves to a module
        for spec in recipe.files:
            assert spec.urls and (spec.sha256 or spec.md5 or recipe.kind)


def test_good_recipe_parses(tmp_path: Path) -> None:
    r = load_recipe_file(write(tmp_path, GOOD))
    assert r.name == "tiny" and r.files[0].size == 10 and r.files[0].sha256 == "0" * 64


@pytest.mark.parametrize("edit,key", [
    (lambda s: s.replace('title = "Tiny"\n', ""), "title"),
    (lambda s: s.replace('kind = "image"', 'kind = "video"'), "kind"),
    (lambda s: 'colour = "red"\n' + s, "colour"),
    (lambda s: s.replace("https://example.org", "http://example.org"), "files[0].urls[0]"),
    (lambda s: s.replace("https://example.org", "ftp://example.org"), "files[0].urls[0]"),
    (lambda s: s.replace("0" * 64, "abc"), "files[0].sha256"),
    (lambda s: s.replace("size = 10", "size = -1"), "files[0].size"),
    (lambda s: s.replace("size = 10", 'size = "10"'), "files[0].size"),
    (lambda s: s.replace('name = "a.gz"', 'name = "../a.gz"'), "files[0].name"),
    (lambda s: s.replace('urls = ["https://example.org/a.gz"]', "urls = []"), "files[0].urls"),
    (lambda s: s.replace('parser = "idx"', 'parser = "idx"\nconnector = "x"'), "parser"),
    (lambda s: s.replace('name = "tiny"', 'name = "Tiny Set"'), "name"),
    (lambda s: 'baselines = ["transformer"]\n' + s, "baselines[0]"),
])
def test_bad_recipe_errors_name_file_and_key(tmp_path: Path, edit, key: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(RecipeError) as err:
        load_recipe_file(path)
    message = str(err.value)
    assert str(path) in message and f": {key}:" in message
    assert "\n" not in message


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x\n')
    with pytest.raises(RecipeError, match="invalid TOML"):
        load_recipe_file(path)


def test_user_recipe_dirs_take_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write(first, GOOD.replace('title = "Tiny"', 'title = "First"'))
    write(second, GOOD.replace('title = "Tiny"', 'title = "Second"'))
    write(second, GOOD.replace('name = "tiny"', 'name = "mnist"').replace("Tiny", "Mine"),
          "mnist.toml")
    monkeypatch.setenv("DLPREP_RECIPES", f"{first}:{second}")
    assert find_recipe("tiny").title == "First"
    assert find_recipe("mnist").title == "Mine"  # user recipes shadow built-ins
    assert "tiny" in all_recipes()


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(RecipeError) as err:
        find_recipe("no-such-set")
    assert "mnist-sample" in str(err.value) and "--recipe" in str(err.value)


def test_recipe_file_name_must_match(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(RecipeError, match="asked for 'other'"):
        find_recipe("other", path)


def test_cli_bad_recipe_is_one_line_error(tmp_path: Path, cache_dir: Path) -> None:
    path = write(tmp_path, GOOD.replace('kind = "image"', 'kind = 3'))
    proc = invoke_cli("fetch", "tiny", "--recipe", str(path), cache_dir=cache_dir)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "kind" in proc.stderr and "Traceback" not in proc.stderr
    assert not (cache_dir / "prepared").exists()


def test_cli_recipes_validate_builtins(cache_dir: Path) -> None:
    proc = invoke_cli("recipes", "validate", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok  ") == len(all_recipes())


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from dlprep.cli import main

    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _sample_recipe(tmp_path: Path, old: str, new: str) -> Path:
    text = find_recipe("mnist-sample").path.read_text()
    assert old in text
    return write(tmp_path, text.replace(old, new), "mnist-sample.toml")


@pytest.mark.parametrize("old,new,key", [
    ('name = "t10k-labels-idx1-ubyte.gz"', 'name = "t10k-labels\\u0000idx1-ubyte.gz"',
     "files[3].name"),
    ('urls = ["pkgdata:mnist-sample/t10k-labels-idx1-ubyte.gz"]',
     'urls = ["pkgdata:mnist-sample/t10k-labels\\u0000idx1-ubyte.gz"]', "files[3].urls[0]"),
])
def test_nul_in_a_recipe_file_name_is_a_recipe_error(tmp_path: Path, cache_dir: Path, capsys,
                                                     old: str, new: str, key: str) -> None:  # type: ignore[no-untyped-def]
    """Was ``internal error ValueError: embedded null byte`` at fetch."""
    path = _sample_recipe(tmp_path, old, new)
    for args in (("recipes", "validate", str(path)),
                 ("--cache-dir", str(cache_dir), "fetch", "mnist-sample", "--recipe", str(path))):
        rc, _, err = _cli(capsys, *args)
        assert rc == 1 and err.count("\n") == 1, err
        assert err.startswith(f"error: {path}: {key}: ") and "control characters" in err
    assert not (cache_dir / "prepared").exists()


def test_split_naming_an_undeclared_file_fails_validate(tmp_path: Path, cache_dir: Path,
                                                        capsys) -> None:  # type: ignore[no-untyped-def]
    """Passed ``recipes validate`` and failed at build with an internal KeyError."""
    path = _sample_recipe(tmp_path, 'labels = "t10k-labels-idx1-ubyte.gz"',
                          'labels = "t10k-labels.gz"')
    rc, out, err = _cli(capsys, "recipes", "validate", str(path))
    assert rc == 1 and "ok" not in out and err.count("\n") == 1
    assert err.startswith(f"error: {path}: splits.test.labels: 't10k-labels.gz' is not a file "
                          f"of [[files]]")
    rc, _, err = _cli(capsys, "--cache-dir", str(cache_dir), "fetch", "mnist-sample",
                      "--recipe", str(path))
    assert rc == 1 and "splits.test.labels" in err and "internal error" not in err
    assert not (cache_dir / "raw").exists()  # refused before anything was fetched


def test_csv_text_recipe_with_two_files_fails_validate(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Was only caught when fetching; ``recipes validate`` said ok."""
    text = find_recipe("text-emotion").path.read_text()
    start = text.index("[[files]]")
    end = text.find("\n[", start + 1)
    block = text[start:end if end > 0 else len(text)].rstrip() + "\n"
    path = write(tmp_path, text + "\n" + block.replace('name = "', 'name = "second-', 1),
                 "text-emotion.toml")
    rc, out, err = _cli(capsys, "recipes", "validate", str(path))
    assert rc == 1 and "ok" not in out and err.count("\n") == 1
    assert err.startswith(f"error: {path}: files: a csv-text recipe takes exactly one file, "
                          f"got 2")
