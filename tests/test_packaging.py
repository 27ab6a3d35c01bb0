"""A non-editable install (a built wheel) still finds the built-in recipes and bundled data.

Builds a wheel and installs it (several seconds): slow-marked, so `make test-all` runs it and
`make test` does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_recipes_and_runs_offline(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheels)], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("dlprep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in (ROOT / "recipes").glob("*.toml"):
        assert f"dlprep/builtin_recipes/{recipe.name}" in names
    assert "dlprep/_data/mnist-sample/train-images-idx3-ubyte.gz" in names
    assert [n for n in names if n.startswith("dlprep/formats/_osmpack") and n.endswith(".so")]
    assert [n for n in names if n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE"))]
    assert not [n for n in names if n.startswith("tests/") or "/realdata/" in n]  # no test data

    target = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr
    env = dict(os.environ, PYTHONPATH=str(target), DLPREP_CACHE=str(tmp_path / "cache"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    listed = subprocess.run([sys.executable, "-m", "dlprep", "list"], capture_output=True,
                            text=True, env=env, cwd=work)
    assert listed.returncode == 0, listed.stderr
    assert "mnist-sample" in listed.stdout and "cifar10" in listed.stdout
    where = subprocess.run([sys.executable, "-c", "import dlprep, sys; print(dlprep.__file__)"],
                           capture_output=True, text=True, env=env, cwd=work)
    assert where.stdout.strip().startswith(str(target))  # the installed copy, not the checkout
    fetched = subprocess.run([sys.executable, "-m", "dlprep", "--offline", "fetch",
                              "mnist-sample"], capture_output=True, text=True, env=env, cwd=work)
    assert fetched.returncode == 0, fetched.stderr
    assert Path(fetched.stdout.strip().splitlines()[-1]).is_file()


def test_metadata_extras_license_and_required_dependencies() -> None:
    """Users' ``all`` extra carries no test or benchmark tools (``dev``, ``bench``); ``isal``
    and ``tomlkit`` are plain requirements; the MIT licence named in the metadata is shipped
    as LICENSE."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        return {line.split(">")[0].split("=")[0].strip() for line in text.splitlines()
                if line.strip()}

    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    assert extras["dev"] >= {"pytest", "ruff"}
    assert not extras["all"] & {"pytest", "ruff", "pytest-httpserver"}
    # ``bench``: the benchmarks' baselines (mwparserfromhell, wikiextractor), tools like ``dev``
    assert extras["all"] == set().union(*(v for k, v in extras.items()
                                          if k not in {"all", "dev", "bench"}))
    assert not extras["all"] & extras["bench"]
    assert "pytest-httpserver" not in set().union(*extras.values())
    assert names(cfg["options"]["install_requires"]) >= {"isal", "tomlkit"}
    assert cfg["metadata"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "'.[all,dev]'" in (ROOT / "Makefile").read_text()
    from isal import igzip

    from dlprep import magic

    assert magic._OPENERS["gzip"] is igzip.open  # no silent fallback to zlib
