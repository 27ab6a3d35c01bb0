"""The README's training loop runs as printed, on the bundled real MNIST sample and, with only
the dataset name changed, on an RGB image set of another size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dlprep.store import ImageTensorWriter, atomic_output

torch = pytest.importorskip("torch")

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """One intra-op thread: on a busy 2-core machine two spinning threads make the loop 10x
    slower (the snippet itself is left as printed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _training_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Load it in training code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README: no python block under 'Load it in training code'"
    return code.group(1)


def _rgb_set(path: Path, n: int = 400) -> Path:
    """12x10 RGB images whose class (0-3) is the quadrant of a bright square."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 60, size=(n, 12, 10, 3), dtype=np.uint8)
    for i, k in enumerate(y):
        r, q = divmod(int(k), 2)
        x[i, r * 6:r * 6 + 4, q * 5:q * 5 + 3] = 230
    with atomic_output(path) as tmp:
        w = ImageTensorWriter(tmp, n, (12, 10, 3))
        w.write(x, y)
        w.finish(recipe="quadrants", recipe_version="1", classes=list("abcd"),
                 splits={"train": np.arange(300), "test": np.arange(300, n)})
    return path


@pytest.mark.parametrize("dataset", ["mnist-sample", "rgb"])
def test_readme_training_loop_runs_on_any_image_set(dataset: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLPREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLPREP_OFFLINE", "1")  # mnist-sample is bundled: no network
    code = _training_snippet()
    assert '"mnist-sample"' in code and "RandomCrop" not in code  # no per-dataset augmentation
    name = dataset if dataset != "rgb" else str(_rgb_set(tmp_path / "rgb.h5"))
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code.replace('"mnist-sample"', repr(name)), "README.md", "exec"), scope)
    import dlprep
    from dlprep.data.transforms import Normalize

    model, train = scope["model"], scope["train"]
    test = dlprep.load(name, "test", transform=Normalize())
    x, y = next(iter(torch.utils.data.DataLoader(test, batch_size=1000)))
    assert x.shape[1:] == (scope["c"], scope["h"], scope["w"]) and x.dtype == torch.float32
    assert (scope["c"], scope["h"], scope["w"]) == ((1, 28, 28) if dataset != "rgb"
                                                    else (3, 12, 10))
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8 and len(train.classes) == (10 if dataset != "rgb" else 4)
