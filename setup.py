"""Build hooks: ship the checkout's top-level ``recipes/*.toml`` inside the package, and build
the optional C kernels of the OSM tiles (``dlprep/formats/_osmpack.c``).

All metadata lives in setup.cfg. In a checkout the recipes stay in ``recipes/`` (one file per
dataset, easy to review); a built wheel carries them as ``dlprep/builtin_recipes/*.toml`` so that a
plain ``pip install .`` finds them too. The C extension is optional: without a compiler the
install goes on and ``dlprep.formats.osm_pack`` uses NumPy and OpenCV instead (same bytes).
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildPyWithRecipes(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "dlprep" / "builtin_recipes"
        target.mkdir(parents=True, exist_ok=True)
        for recipe in sorted(Path(__file__).parent.joinpath("recipes").glob("*.toml")):
            shutil.copy2(recipe, target / recipe.name)


OSMPACK = Extension("dlprep.formats._osmpack", ["dlprep/formats/_osmpack.c"],
                    extra_compile_args=["-O3", "-ffp-contract=off"], optional=True)

setup(cmdclass={"build_py": BuildPyWithRecipes}, ext_modules=[OSMPACK])
