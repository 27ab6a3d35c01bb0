"""Build hook: ship the checkout's top-level ``recipes/*.toml`` inside the package.

All metadata lives in setup.cfg. In a checkout the recipes stay in ``recipes/`` (one file per
dataset, easy to review); a built wheel carries them as ``dlprep/builtin_recipes/*.toml`` so that a
plain ``pip install .`` finds them too.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithRecipes(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "dlprep" / "builtin_recipes"
        target.mkdir(parents=True, exist_ok=True)
        for recipe in sorted(Path(__file__).parent.joinpath("recipes").glob("*.toml")):
            shutil.copy2(recipe, target / recipe.name)


setup(cmdclass={"build_py": BuildPyWithRecipes})
