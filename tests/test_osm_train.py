"""The baselines the osm recipe lists run on its datasets: cnn and autoencoder on the tiles,
rnn on the ways (tiny runs on the real aguascalientes extract)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("osmium")
torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from dlprep.cache import Cache
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe
    from tests.conftest import REALDATA

    cache = Cache.open(tmp_path_factory.mktemp("cache"))
    pbf = str(REALDATA / "osm" / "aguascalientes.osm.pbf")
    fetch = FetchOptions(offline=True, progress=False)
    return {fmt: prepare(find_recipe("osm"), cache, options={"pbf": pbf, "format": fmt},
                         name=f"aguas-{fmt}", fetch=fetch) for fmt in ("tiles", "ways")}


@pytest.mark.parametrize("family,fmt,metric", [("cnn", "tiles", "accuracy"),
                                               ("autoencoder", "tiles", "mse"),
                                               ("rnn", "ways", "accuracy")])
def test_recipe_baselines_train_on_osm_datasets(prepared: dict[str, Path], tmp_path: Path,
                                                family: str, fmt: str, metric: str) -> None:
    from dlprep.baselines import train

    torch.set_num_threads(1)
    m = train(family, prepared[fmt], out=str(tmp_path / family), epochs=1, max_batches=2,
              batch_size=16, progress=False)
    assert m["metric"] == metric and m["final"][metric] >= 0
    assert m["data"]["layout"] == ("image" if fmt == "tiles" else "values")
    assert (tmp_path / family / "metrics.json").is_file()
