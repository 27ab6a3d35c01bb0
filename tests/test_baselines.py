"""Baselines on the real bundled mnist-sample (tiny runs) and on small sequence files: metrics,
checkpoints and plots are produced and sane; losses fall on a fixed batch; runs repeat."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlprep.cli import cli
from dlprep.errors import DlprepError
from dlprep.store import SequenceWriter, atomic_output
from tests.conftest import invoke_cli

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from dlprep.baselines import compare, load_checkpoint, train  # noqa: E402
from dlprep.baselines.checkpoint import FORMAT  # noqa: E402
from dlprep.baselines.config import make_config, with_defaults  # noqa: E402
from dlprep.baselines.data import from_arrays, load_data  # noqa: E402
from dlprep.baselines.run import train_run  # noqa: E402
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


@pytest.fixture(scope="module")
def tiny(mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    """``tiny(family, **options) -> (TrainedRun, run folder)``: one TINY run on mnist-sample per
    family and options, trained once per module and shared by the tests that read it."""
    runs: dict[str, tuple] = {}

    def run(family: str, **options: object) -> tuple:
        key = json.dumps([family, options], sort_keys=True)
        if key not in runs:
            out = tmp_path_factory.mktemp(f"{family}-run")
            runs[key] = (train_run(family, mnist, out=str(out), **TINY, **options), out)
        return runs[key]

    return run


def _dlprep(*args: str) -> tuple[int, str, str]:
    """``dlprep ARGS`` in-process through the real entry point (``invoke_cli``): exit code,
    stdout, stderr."""
    r = invoke_cli(*args)
    return r.returncode, r.stdout, r.stderr


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


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
        mnist: Path, tiny: object, family: str, options: dict, metric: str,
        plots: list[str]) -> None:
    run, out = tiny(family, **options)
    m = run.metrics
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
    if family == "gan":  # what good looks like: stated, and checked where this run measured it
        assert saved["guide"] == m["guide"] and set(m["guide"]["targets"]) == {
            "train_d_loss", "d_accuracy", "confident_fraction", "label_entropy_bits"}
        assert set(m["guide"]["met"]) == {"train_d_loss", "d_accuracy"}  # nothing judged
        assert "--judge" in m["guide"]["line"]
    else:
        assert "guide" not in saved
    _reloads_the_trained_model(run.modules, out, mnist, family, m)


def _reloads_the_trained_model(trained: dict, out: Path, mnist: Path, family: str,
                               m: dict) -> None:
    """The checkpoint holds the trained weights: every module's tensors, and the outputs on
    real test images, equal those of the in-memory model the run trained."""
    ckpt = load_checkpoint(out)
    assert ckpt.family == family and ckpt.config["family"] == family
    assert set(ckpt.modules) == set(trained)
    for name, module in trained.items():
        saved, kept = ckpt.modules[name].state_dict(), module.state_dict()
        assert saved.keys() == kept.keys()
        assert all(torch.equal(saved[k], kept[k]) for k in kept), name
        module.eval()
    test = load_data(mnist).splits["test"]
    x = torch.from_numpy(test.x[:200].transpose(0, 3, 1, 2)).float() / 255.0
    with torch.no_grad():
        if family == "gan":
            z = torch.randn(8, ckpt.spec["z_dim"], generator=torch.Generator().manual_seed(0))
            a, b = trained["generator"](z), ckpt.model(z)
            assert a.shape == (8, 1, 28, 28) and float(a.min()) >= -1 and float(a.max()) <= 1
            assert torch.equal(trained["discriminator"](x * 2 - 1),
                               ckpt.modules["discriminator"](x * 2 - 1))
        elif family == "autoencoder":
            a, b = trained["model"](x), ckpt.model(x)
        else:  # classifiers see normalised pixels; the reloaded one scores the run's accuracy
            mean, std = ckpt.info["mean"][0], ckpt.info["std"][0]
            full = (torch.from_numpy(test.x.transpose(0, 3, 1, 2)).float() / 255.0 - mean) / std
            a, b = trained["model"](full), ckpt.model(full)
            pred = torch.cat([ckpt.model(full[i:i + 512]) for i in range(0, len(full), 512)])
            acc = float((pred.argmax(1).numpy() == test.y).mean())
            assert acc == pytest.approx(m["final"]["accuracy"], abs=1e-9)
    assert torch.equal(a, b)


def test_same_seed_same_run_on_cpu(mnist: Path, tiny: object, tmp_path: Path) -> None:
    a = tiny("cnn")[0].metrics  # seed 0
    b = train("cnn", mnist, out=str(tmp_path / "b"), seed=0, **TINY)
    c = train("cnn", mnist, out=str(tmp_path / "c"), seed=1, **TINY)
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


def test_char_language_model_prints_and_writes_samples(tmp_path: Path) -> None:
    """Through the CLI: bits/char below the unigram entropy, and 3 generated samples printed
    (prompt | text), written to metrics.json and samples.txt, decoding to vocabulary characters."""
    f = _text_file(tmp_path / "text.h5", labelled=False)
    out = tmp_path / "lm"
    rc, stdout, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline",
                              "rnn", str(f), "--epochs", "4", "--seq-len", "32", "--hidden", "32",
                              "--batch-size", "8", "--split-val", "0.2", "--out", str(out))
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["metric"] == "bits_per_char" and m["eval_split"] == "val"
    bits = m["final"]["bits_per_char"]
    assert math.isfinite(bits) and bits < m["unigram_bits_per_token"]
    losses = [e["train_loss"] for e in m["epochs"]]
    assert losses[-1] < losses[0]
    chars = set("abcdefghijklmnopqrstuvwxyz .,")
    samples = m["samples"]
    assert len(samples) == 3
    for s in samples:
        assert len(s["prompt"]) == 32 and set(s["prompt"]) <= chars
        assert len(s["generated"]) > 100 and set(s["generated"]) <= chars
    lines = stdout.splitlines()
    head = lines.index("generated samples (prompt | generated; in full in samples.txt):")
    printed = lines[head + 1:head + 4]
    for k, (line, s) in enumerate(zip(printed, samples, strict=True), 1):
        assert line.startswith(f"  {k}: ")
        prompt, text = line[len(f"  {k}: "):].split(" | ", 1)
        shown = {key: " ".join(s[key].split()) for key in s}  # whitespace runs print as one
        assert shown["prompt"].endswith(prompt.removeprefix("...")) and set(prompt) <= chars
        assert shown["generated"].startswith(text.removesuffix("...")) and len(text) >= 20
    assert lines[-1] == str(out)
    text = (out / "samples.txt").read_text()
    for k, s in enumerate(samples, 1):
        assert (f"--- sample {k} (prompt | generated) ---\n{s['prompt']} | "
                f"{s['generated']}\n") in text


def test_word_language_model_reports_perplexity(tmp_path: Path) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=False, tokenizer="word")
    m = train("rnn", f, out=str(tmp_path / "lm"), epochs=1, seq_len=16, hidden=16,
              batch_size=8, progress=False)
    assert m["metric"] == "perplexity" and 1 < m["final"]["perplexity"] < 100
    vocab = set("abcdefghijklmnopqrstuvwxyz .,")
    for s in m["samples"]:  # decoded with the file's tokenizer, from vocabulary tokens only
        assert len(s["generated"]) >= 200 and set(s["generated"]) <= vocab


def test_language_model_with_a_short_test_split_prompts_with_frequent_tokens(
        tmp_path: Path) -> None:
    f = _text_file(tmp_path / "text.h5", labelled=False)  # 952 test characters
    m = train("rnn", f, out=str(tmp_path / "lm"), epochs=1, seq_len=600, hidden=8,
              batch_size=4, progress=False)
    prompts = [s["prompt"] for s in m["samples"]]
    assert len(prompts) == 3 and len(prompts[0]) == 32  # one 600-token test window
    assert len(prompts[1]) == len(prompts[2]) == 1 and prompts[1] != prompts[2]
    assert {prompts[1], prompts[2]} <= set("abcdefghijklmnopqrstuvwxyz .,")


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
    with pytest.raises(DlprepError, match="--judge applies to gan and autoencoder --variational"):
        train("cnn", "mnist-sample", judge="/some/run")
    with pytest.raises(DlprepError, match="--max-minutes nan: must be positive"):
        train("cnn", "mnist-sample", max_minutes=float("nan"))
    # every --compare variant is checked before any data is read or any variant trains
    for _ in range(2):  # twice: the package's compare() stays a function once it has run
        with pytest.raises(DlprepError, match="--lr inf: must be a positive, finite number"):
            compare("mlp", "/nonexistent/data.h5", "lr", ["0.001", "inf"])


def test_max_minutes_stops_early(mnist: Path, tmp_path: Path) -> None:
    m = train("mlp", mnist, out=str(tmp_path), epochs=50, max_minutes=1e-9, progress=False)
    assert m["stopped_early"] and len(m["epochs"]) == 1 and m["epochs"][0]["steps"] == 1
    assert math.isfinite(m["final"]["accuracy"])


def test_gan_says_what_good_looks_like_and_judges_samples(
        mnist: Path, tiny: object, tmp_path: Path) -> None:
    judge = tiny("mlp")[1]
    out = tmp_path / "gan"
    rc, stdout, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline", "gan",
                              str(mnist), "--epochs", "1", "--max-batches", "3", "--batch-size",
                              "32", "--judge", str(judge), "--out", str(out))
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    j = m["judged_samples"]
    assert j["samples"] == 1000 and sum(j["label_counts"]) == 1000
    assert 0 <= j["confident_fraction"] <= 1 and 0 <= j["label_entropy_bits"] <= math.log2(10)
    guide = m["guide"]
    assert guide["targets"]["confident_fraction"] == {"min": 0.5}
    assert guide["targets"]["label_entropy_bits"] == {"min": 2.5}  # DESIGN.md, 10 classes
    assert guide["targets"]["train_d_loss"]["about"] == pytest.approx(math.log(2), abs=1e-3)
    assert guide["met"]["confident_fraction"] == (j["confident_fraction"] >= 0.5)
    assert guide["met"]["label_entropy_bits"] == (j["label_entropy_bits"] >= 2.5)
    last_d = m["epochs"][-1]["train_d_loss"]
    assert guide["met"]["train_d_loss"] == (guide["targets"]["train_d_loss"]["min"] <= last_d
                                            <= guide["targets"]["train_d_loss"]["max"])
    lines = stdout.splitlines()
    assert guide["line"] in lines and guide["line"].startswith("what good looks like: ")
    assert "0.69" in guide["line"] and ">= 50%" in guide["line"] and "2.50 bits" in guide["line"]
    met = next(line for line in lines if line.startswith("targets met: "))
    assert met.count(" yes") + met.count(" NO") == 4
    assert guide["met"]["d_accuracy"] == (m["final"]["d_accuracy"] <= 0.9)


def test_sample_targets_scale_with_the_number_of_classes() -> None:
    from dlprep.baselines.judge import judged_met, sample_targets

    assert sample_targets(10) == {"confident_fraction": {"min": 0.5},
                                  "label_entropy_bits": {"min": 2.5}}  # DESIGN.md §2
    four = sample_targets(4)
    assert four["label_entropy_bits"]["min"] == round(2.5 * 2 / math.log2(10), 2) == 1.51
    judged = {"confident_fraction": 0.5, "label_entropy_bits": 1.5}
    assert judged_met(judged, four) == {"confident_fraction": True, "label_entropy_bits": False}


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
    rc, _, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline", "cnn",
                         str(f))
    _one_line_error(rc, err, "families that fit: rnn")


def _checkpoint(path: Path, **fields: object) -> Path:
    payload = {"format": FORMAT, "family": "mlp", "dlprep_version": "0", "spec": {},
               "state_dict": {}, "config": {}, "info": {}, **fields}
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("family", ["nets", "os", "../../tmp/x", "loop", 3])
def test_checkpoint_with_unknown_family_is_refused_before_any_import(
        mnist: Path, tmp_path: Path, family: object) -> None:
    """A bogus ``family`` never reaches import_module: one line naming the file and the family,
    before any training (through the CLI's --judge, which loads a checkpoint)."""
    bogus = _checkpoint(tmp_path / "bogus.pt", family=family)
    out = tmp_path / "run"
    rc, _, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline", "gan",
                         str(mnist), "--judge", str(bogus), "--out", str(out))
    _one_line_error(rc, err, str(bogus), f"unknown baseline family {family!r}")
    assert not out.exists()
    with pytest.raises(DlprepError, match="unknown baseline family"):
        load_checkpoint(bogus)


@pytest.mark.parametrize("fields,message", [
    ({"spec": None}, "damaged mlp checkpoint (no spec)"),
    ({"state_dict": [1, 2]}, "damaged mlp checkpoint (no state_dict)"),
    ({"spec": {"input": "pixels"}}, "weights do not fit its spec (KeyError"),
    ({"spec": {"input": "pixels", "input_dim": 4, "hidden": [3], "classes": 2,
               "activation": "relu", "dropout": 0.0}, "state_dict": {"model": {}}},
     "weights do not fit its spec (RuntimeError"),
])
def test_damaged_checkpoint_is_one_error(tmp_path: Path, fields: dict, message: str) -> None:
    path = _checkpoint(tmp_path / "c.pt", **fields)
    with pytest.raises(DlprepError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        load_checkpoint(path)


def test_judge_must_be_an_image_classifier_of_the_same_shape(mnist: Path,
                                                           tmp_path: Path) -> None:
    from dlprep.baselines.checkpoint import build_modules, save_checkpoint

    mlp = {"input": "pixels", "input_dim": 16 * 16 * 3, "hidden": [8], "classes": 4,
           "activation": "relu", "dropout": 0.0}
    ae = {"shape": [28, 28, 1], "latent": 4, "width": 4, "stages": 2, "variational": False}
    for name, family, spec, shape in (("rgb", "mlp", mlp, [16, 16, 3]),
                                      ("ae", "autoencoder", ae, [28, 28, 1])):
        save_checkpoint(tmp_path / name / "checkpoint.pt", family=family, spec=spec,
                        modules=build_modules(family, spec), config={"family": family},
                        info={"layout": "image", "shape": shape})
    for judge, needle in ((tmp_path / "rgb", "classifies [16, 16, 3] images, mnist-sample has "
                                            "[28, 28, 1]"),
                          (tmp_path / "ae", "is not an image classifier")):
        rc, _, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline", "gan",
                             str(mnist), "--judge", str(judge), "--out", str(tmp_path / "g"))
        _one_line_error(rc, err, f"--judge {judge}", needle)
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf"])
def test_non_finite_lr_is_refused_up_front(tmp_path: Path, lr: str) -> None:
    rc, _, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline", "mlp",
                         "no-such-dataset", "--lr", lr)
    assert rc != 0 and "Traceback" not in err and "--lr" in err, err
    if lr != "-inf":  # click's range check answers for negative rates
        _one_line_error(rc, err, f"--lr {lr}: must be a positive, finite number")


def test_loss_that_stops_being_finite_stops_the_run(mnist: Path, tmp_path: Path) -> None:
    """--lr 1e30 passes the up-front check and diverges: exit 1 naming the step, nothing written
    (today's main trained to NaN and exited 0)."""
    out = tmp_path / "run"
    rc, _, err = _dlprep("--cache-dir", str(tmp_path / "c"), "train-baseline", "mlp",
                         str(mnist), "--lr", "1e30", "--epochs", "1", "--max-batches", "5",
                         "--out", str(out))
    _one_line_error(rc, err, "mlp on mnist-sample: the training loss became", "(lr 1e+30)",
                    "lower --lr")
    assert re.search(r"became (nan|inf) at epoch 1, step [1-5] ", err), err
    assert not out.exists()


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


def _fake_run(metric: str, values: list[float], losses: list[float]) -> dict:
    epochs = [{"epoch": i + 1, "train_loss": loss * 1.1, "val_loss": loss, f"val_{metric}": v}
              for i, (v, loss) in enumerate(zip(values, losses, strict=True))]
    return {"epochs": epochs, "eval_split": "val", "metric": metric,
            "test": {metric: values[-1]}}


def test_compare_figure_shares_both_y_scales_and_keeps_the_legend_off_the_curves() -> None:
    from dlprep.baselines.plots import compare_figure

    runs = [("activation=relu", _fake_run("accuracy", [0.80, 0.95, 0.97], [0.9, 0.3, 0.1])),
            ("activation=tanh", _fake_run("accuracy", [0.40, 0.55, 0.60], [2.3, 1.8, 1.5])),
            ("activation=sigmoid", _fake_run("accuracy", [0.10, 0.20, 0.30], [4.0, 3.0, 2.2]))]
    fig = compare_figure(runs, title="mlp on toy")
    try:
        panels = [ax for ax in fig.axes if ax.get_ylabel() != "accuracy" and ax.get_title()]
        twins = [ax for ax in fig.axes if ax not in panels]
        assert len(panels) == 3 and len(twins) == 3
        # one loss scale and one accuracy scale for every panel, covering every run's values
        assert len({ax.get_ylim() for ax in panels}) == 1
        assert len({ax.get_ylim() for ax in twins}) == 1
        lo, hi = twins[0].get_ylim()
        assert lo <= 0.10 and hi >= 0.97
        lo, hi = panels[0].get_ylim()
        assert lo <= 0.1 and hi >= 4.0 * 1.1
        # one figure legend, outside every panel: it covers no curve
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.legends[0].get_window_extent(renderer)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
        assert [t.get_text() for t in fig.legends[0].get_texts()] == [
            "train loss", "val loss", "val accuracy (right axis)"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_baselines_never_reach_into_fetch_or_prepare() -> None:
    """A trainer reads prepared data through the loader API only: no module of
    dlprep.baselines (or the train command) imports dlprep.fetch or dlprep.prepare."""
    import ast

    import dlprep

    root = Path(dlprep.__file__).parent
    files = [*sorted((root / "baselines").glob("*.py")), root / "commands" / "train_cmds.py"]
    assert len(files) > 10
    for path in files:
        package = "dlprep.commands" if path.parent.name == "commands" else "dlprep.baselines"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                mod = f"{base}.{node.module}" if base and node.module else (node.module or base)
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for name in names:
                assert not name.startswith(("dlprep.fetch", "dlprep.prepare")), (path, name)


def test_emoji_class_names_are_drawn_as_names_not_empty_boxes(tmp_path: Path) -> None:
    """An emoji-labelled set's confusion matrix names its classes in text the font can draw
    (matplotlib used to warn "Glyph ... missing" and draw empty boxes)."""
    import warnings

    import numpy as np

    from dlprep.baselines.plots import plot_confusion, tick_label

    assert tick_label("cat") == "cat"
    assert tick_label("\U0001F1EB\U0001F1F7") == ":France:"
    assert tick_label("\u2764\ufe0f") in (":red_heart:", "\u2764", "\u2764\ufe0f")  # drawable
    no_emoji_lib = tick_label("\U0001F600", has_glyph=lambda ch: ch.isascii())
    assert no_emoji_lib.isascii() and no_emoji_lib
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = plot_confusion(np.array([[3, 1], [0, 2]]),
                             ["\U0001F600", "\U0001F468\u200d\U0001F4BB"],
                             tmp_path / "cm.png", title="emoji")
    assert out.stat().st_size > 1000
