"""Baselines on the real bundled mnist-sample (tiny runs) and on small sequence files: metrics,
checkpoints and plots are produced and sane; losses fall on a fixed batch; runs repeat."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlprep.cli import cli
from dlprep.errors import DlprepError
from dlprep.store import SequenceWriter, atomic_output
from tests.conftest import run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from dlprep.baselines import load_checkpoint, train  # noqa: E402
from dlprep.baselines.config import make_config, with_defaults  # noqa: E402
from dlprep.baselines.data import from_arrays, load_data  # noqa: E402
from dlprep.baselines.runtime import Runtime, seed_everything  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {"epochs": 1, "max_batches": 3, "batch_size": 32, "progress": False}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """One intra-op thread: on a shared 2-core machine, more threads spin and run slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist-sample prepared (offline, from the bundled real IDX files) in a module cache."""
    from dlprep.cache import Cache
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe

    cache = Cache.open(tmp_path_factory.mktemp("cache"))
    return prepare(find_recipe("mnist-sample"), cache,
                   fetch=FetchOptions(offline=True, progress=False))


def _png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


@pytest.mark.parametrize("family,options,metric,plots", [
    ("mlp", {}, "accuracy", ["loss.png", "confusion.png"]),
    ("cnn", {}, "accuracy", ["loss.png", "confusion.png"]),
    ("rnn", {"cell": "gru"}, "accuracy", ["loss.png", "confusion.png"]),
    ("autoencoder", {}, "mse", ["loss.png", "reconstructions.png"]),
    ("autoencoder", {"variational": True}, "mse", ["loss.png", "reconstructions.png",
                                                    "samples.png"]),
    ("gan", {}, "d_accuracy", ["loss.png", "samples.png"]),
])
def test_family_on_mnist_sample_writes_metrics_checkpoint_plots(
        mnist: Path, tmp_path: Path, family: str, options: dict, metric: str,
        plots: list[str]) -> None:
    out = tmp_path / "run"
    m = train(family, mnist, out=str(out), **TINY, **options)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["final"] == m["final"] and saved["metric"] == metric
    assert saved["dataset"] == "mnist-sample" and saved["data"]["shape"] == [28, 28, 1]
    assert saved["data"]["n_train"] == 3600 and saved["data"]["n_val"] == 400
    assert saved["data"]["n_test"] == 1000
    assert saved["config"]["seed"] == 0 and saved["device"] == "cpu"
    assert saved["versions"]["torch"] == torch.__version__ and saved["versions"]["dlprep"]
    assert saved["wall_seconds"] > 0 and saved["parameters"] > 1000
    epoch = saved["epochs"][0]
    assert epoch["steps"] == 3 and math.isfinite(epoch["train_loss"])
    assert math.isfinite(epoch["val_loss"]) and math.isfinite(epoch[f"val_{metric}"])
    final = saved["final"][metric]
    assert math.isfinite(final)
    if metric == "accuracy":
        assert 0.0 <= final <= 1.0
    elif metric == "mse":
        assert 0.0 < final < 0.5
    assert saved["plots"] == plots
    for name in plots:
        _png(out / name)
    # the checkpoint rebuilds the same model: identical outputs on real test images
    ckpt = load_checkpoint(out)
    assert ckpt.family == family and ckpt.config["family"] == family
    x = torch.from_numpy(load_data(mnist).splits["test"].x[:8].transpose(0, 3, 1, 2)).float()
    x = x / 255.0
    with torch.no_grad():
        if family == "gan":
            z = torch.randn(8, ckpt.spec["z_dim"], generator=torch.Generator().manual_seed(0))
            a, b = ckpt.model(z), load_checkpoint(out / "checkpoint.pt").model(z)
            assert a.shape == (8, 1, 28, 28) and float(a.min()) >= -1 and float(a.max()) <= 1
        else:
            a, b = ckpt.model(x), load_checkpoint(out / "checkpoint.pt").model(x)
    assert torch.equal(a, b)


def test_checkpoint_reload_matches_trained_model(mnist: Path, tmp_path: Path) -> None:
    """Predictions of the reloaded classifier equal the run's own test accuracy."""
    m = train("mlp", mnist, out=str(tmp_path), **TINY)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    test = load_data(mnist).splits["test"]
    mean, std = ckpt.info["mean"][0], ckpt.info["std"][0]
    x = (torch.from_numpy(test.x.transpose(0, 3, 1, 2)).float() / 255.0 - mean) / std
    with torch.no_grad():
        acc = float((ckpt.model(x).argmax(1).numpy() == test.y).mean())
    assert acc == pytest.approx(m["final"]["accuracy"], abs=1e-9)


def test_same_seed_same_run_on_cpu(mnist: Path, tmp_path: Path) -> None:
    a = train("cnn", mnist, out=str(tmp_path / "a"), seed=3, **TINY)
    b = train("cnn", mnist, out=str(tmp_path / "b"), seed=3, **TINY)
    c = train("cnn", mnist, out=str(tmp_path / "c"), seed=4, **TINY)
    assert a["epochs"][0]["train_loss"] == b["epochs"][0]["train_loss"]
    assert a["final"] == b["final"]
    assert a["epochs"][0]["train_loss"] != c["epochs"][0]["train_loss"]


def _digits_like(n: int, shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Images whose class is the position of a bright square: learnable by every family."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    h, w, c = shape
    x = rng.integers(0, 40, size=(n, h, w, c), dtype=np.uint8)
    for i, k in enumerate(y):
        r, q = divmod(int(k), 2)
        x[i, r * h // 2:r * h // 2 + h // 3, q * w // 2:q * w // 2 + w // 3] = 220
    return x, y


@pytest.mark.parametrize("family,options", [
    ("mlp", {"activation": "tanh"}), ("cnn", {"activation": "sigmoid"}), ("rnn", {"cell": "rnn"}),
    ("autoencoder", {}), ("autoencoder", {"variational": True}), ("gan", {}),
])
def test_loss_decreases_on_a_fixed_batch(family: str, options: dict) -> None:
    import importlib

    x, y = _digits_like(64, (28, 28, 1))
    data = from_arrays("toy", (x, y), (x[:16], y[:16]), classes=list("abcd"))
    # 20 epochs of 2 batches: the one-cycle warm-up reaches the peak rate within 12 steps
    cfg = with_defaults(make_config(family, "toy", {"epochs": 20, "batch_size": 32,
                                                    "progress": False, "augment": False,
                                                    **options}))
    seed_everything(0)
    task = importlib.import_module(f"dlprep.baselines.{family}").make_task(
        data, cfg, Runtime(device=torch.device("cpu")))
    batch = np.arange(32)
    losses = [task.train_step(batch)["loss"] for _ in range(12)]
    assert all(math.isfinite(v) for v in losses)
    if family == "gan":  # an adversarial loss need not fall; the discriminator's must
        d = [task.train_step(batch)["d_loss"] for _ in range(3)]
        assert all(math.isfinite(v) for v in d)
    else:
        assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.9


@pytest.mark.parametrize("shape", [(32, 32, 3), (64, 64, 3), (28, 28, 1), (40, 30, 3)])
def test_architectures_scale_with_input_shape(shape: tuple[int, int, int]) -> None:
    from dlprep.baselines.checkpoint import build_modules
    from dlprep.baselines.nets import stage_plan

    h, w, c = shape
    stages = max(1, stage_plan(h, w))
    x = torch.rand(2, c, h, w)
    cnn = build_modules("cnn", {"shape": list(shape), "classes": 7, "activation": "relu",
                                "width": 8, "stages": stages})["model"]
    assert cnn(x).shape == (2, 7)
    ae = build_modules("autoencoder", {"shape": list(shape), "latent": 4, "width": 8,
                                       "stages": stages, "variational": True})["model"]
    assert ae(x).shape == x.shape and ae.sample(3).shape == (3, c, h, w)
    gan = build_modules("gan", {"shape": list(shape), "z_dim": 5, "width": 8, "stages": stages})
    gan["generator"].eval()
    assert gan["generator"].sample(3).shape == (3, c, h, w)
    assert gan["discriminator"](x).shape == (2,)
    rnn = build_modules("rnn", {"mode": "classify", "input": "rows", "input_dim": w * c,
                                "classes": 7, "cell": "lstm", "hidden": 8, "layers": 2})["model"]
    assert rnn(x).shape == (2, 7)


def _text_file(path: Path, *, labelled: bool, tokenizer: str = "char") -> Path:
    """A char-tokenized sequence file (FORMAT.md layout) of repetitive English-like text."""
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", *"abcdefghijklmnopqrstuvwxyz .,"]
    ids = {ch: i for i, ch in enumerate(vocab)}
    rng = np.random.default_rng(0)
    words = ["the cat sat", "a dog ran", "birds sing", "we go home", "rain falls"]
    docs, labels = [], []
    for i in range(60):
        k = i % len(words)
        text = ". ".join(words[(k + j) % len(words)] for j in range(int(rng.integers(4, 9))))
        docs.append(np.array([ids[ch] for ch in text], np.int32))
        labels.append(k % 2)
    with atomic_output(path) as tmp:
        w = SequenceWriter(tmp)
        w.extend(docs)
        w.finish(recipe="toytext", recipe_version="1",
                 splits={"train": np.arange(48), "test": np.arange(48, 60)},
                 labels=labels if labelled else None, classes=["even", "odd"] if labelled
                 else None, vocab=vocab, tokenizer={"type": tokenizer})
    return path


def _strokes_file(path: Path) -> Path:
    """Stroke-3 sequences (dx, dy, pen): class 0 moves right, class 1 moves down."""
    rng = np.random.default_rng(1)
    seqs, labels = [], []
    for i in range(80):
        n = int(rng.integers(8, 20))
        d = np.zeros((n, 3), np.float32)
        d[:, i % 2] = rng.normal(5, 1, n)
        d[:, 1 - i % 2] = rng.normal(0, 1, n)
        d[-1, 2] = 1
        seqs.append(d)
        labels.append(i % 2)
    with atomic_output(path) as tmp:
        w = SequenceWriter(tmp, features=3)
        w.extend(seqs)
        w.finish(recipe="toystrokes", recipe_version="1", labels=labels, classes=["r", "d"],
                 splits={"train": np.arange(64), "test": np.arange(64, 80)})
    return path


def test_char_language_model_reports_bits_per_char_and_samples(tmp_path: Path) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=False)
    m = train("rnn", f, out=str(tmp_path / "lm"), epochs=4, seq_len=32, hidden=32,
              batch_size=8, split_val=0.2, progress=False)
    assert m["metric"] == "bits_per_char" and m["eval_split"] == "val"
    bits = m["final"]["bits_per_char"]
    assert math.isfinite(bits) and bits < m["unigram_bits_per_token"]
    losses = [e["train_loss"] for e in m["epochs"]]
    assert losses[-1] < losses[0]
    text = (tmp_path / "lm" / "samples.txt").read_text()
    assert "sample 1" in text and " | " in text
    prompt = text.splitlines()[1].split(" | ", 1)[0]
    assert len(prompt) == 32 and set(prompt) <= set("abcdefghijklmnopqrstuvwxyz .,")


def test_word_language_model_reports_perplexity(tmp_path: Path) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=False, tokenizer="word")
    m = train("rnn", f, out=str(tmp_path / "lm"), epochs=1, seq_len=16, hidden=16,
              batch_size=8, progress=False)
    assert m["metric"] == "perplexity" and 1 < m["final"]["perplexity"] < 100


@pytest.mark.parametrize("family", ["rnn", "mlp"])
def test_labelled_token_sets_are_classified(tmp_path: Path, family: str) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=True)
    m = train(family, f, out=str(tmp_path / family), epochs=2, batch_size=8, hidden=16,
              progress=False)
    assert m["metric"] == "accuracy" and 0 <= m["final"]["accuracy"] <= 1
    assert m["data"]["layout"] == "tokens"
    _png(tmp_path / family / "confusion.png")


def test_stroke_sequences_are_classified_by_rnn(tmp_path: Path) -> None:
    f = _strokes_file(tmp_path / "strokes.h5")
    m = train("rnn", f, out=str(tmp_path / "r"), epochs=6, batch_size=16, hidden=16, lr=1e-2,
              progress=False)
    assert m["data"]["layout"] == "values" and m["final"]["accuracy"] >= 0.9


@pytest.mark.parametrize("family", ["cnn", "mlp", "gan"])
def test_family_that_does_not_fit_says_which_fit(tmp_path: Path, family: str) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=False)
    with pytest.raises(DlprepError, match=r"does not fit a token sequence dataset without "
                                          r"labels; families that fit: rnn"):
        train(family, f, out=str(tmp_path / "x"), progress=False)


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(DlprepError, match="unknown baseline family 'svm'"):
        train("svm", "mnist-sample")
    with pytest.raises(DlprepError, match="--variational applies to the autoencoder"):
        train("cnn", "mnist-sample", variational=True)
    with pytest.raises(DlprepError, match="unknown option"):
        train("cnn", "mnist-sample", epoch=3)
    with pytest.raises(DlprepError, match="no such checkpoint"):
        load_checkpoint("/nonexistent/run")


def test_max_minutes_stops_early(mnist: Path, tmp_path: Path) -> None:
    m = train("mlp", mnist, out=str(tmp_path), epochs=50, max_minutes=1e-9, progress=False)
    assert m["stopped_early"] and len(m["epochs"]) == 1 and m["epochs"][0]["steps"] == 1
    assert math.isfinite(m["final"]["accuracy"])


def test_judge_scores_generated_samples(mnist: Path, tmp_path: Path) -> None:
    train("mlp", mnist, out=str(tmp_path / "judge"), **TINY)
    m = train("gan", mnist, out=str(tmp_path / "gan"), judge=str(tmp_path / "judge"), **TINY)
    j = m["judged_samples"]
    assert j["samples"] == 1000 and sum(j["label_counts"]) == 1000
    assert 0 <= j["confident_fraction"] <= 1 and 0 <= j["label_entropy_bits"] <= math.log2(10)


def test_cli_train_baseline_prints_summary_and_run_folder(mnist: Path, tmp_path: Path,
                                                         cli_runner: CliRunner) -> None:
    r = cli_runner.invoke(cli, ["--cache-dir", str(tmp_path / "c"), "train-baseline", "mlp",
                                str(mnist), "--epochs", "1", "--max-batches", "2", "--out",
                                str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == str(tmp_path / "run")
    assert "mlp on mnist-sample: test accuracy" in r.stdout and "val_accuracy" in lines[0]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["epochs"] == 1


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=False)
    r = run_cli("train-baseline", "cnn", str(f), cache_dir=tmp_path / "c")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "families that fit: rnn" in r.stderr


def test_cli_compare_writes_one_plot_and_a_table(mnist: Path, tmp_path: Path,
                                                 cli_runner: CliRunner) -> None:
    out = tmp_path / "cmp"
    r = cli_runner.invoke(cli, ["--cache-dir", str(tmp_path / "c"), "train-baseline", "mlp",
                                str(mnist), "--epochs", "1", "--max-batches", "2", "--compare",
                                "activation=relu,tanh,sigmoid", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(out)
    _png(out / "compare.png")
    table = (out / "compare.md").read_text().splitlines()
    assert table[0].startswith("| activation | test accuracy") and len(table) == 5
    assert [row.split("|")[1].strip() for row in table[2:]] == ["relu", "tanh", "sigmoid"]
    for act in ("relu", "tanh", "sigmoid"):
        saved = json.loads((out / f"activation-{act}" / "metrics.json").read_text())
        assert saved["config"]["activation"] == act and saved["config"]["seed"] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_requested_without_a_gpu_is_a_clear_error(mnist: Path) -> None:
    with pytest.raises(DlprepError, match="--device cuda: no CUDA device is available"):
        train("mlp", mnist, device="cuda", progress=False)
