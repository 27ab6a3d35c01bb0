"""dlprep train-baseline: prove a prepared dataset trains (mlp, cnn, rnn, autoencoder, gan)."""

from __future__ import annotations

import os
from typing import Any

import click

from ..baselines.config import ACTIVATIONS, CELLS, FAMILIES
from .common import State, common_options


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def print_summary(m: dict[str, Any]) -> None:
    """Per-epoch table and the final test figure of one run."""
    metric, split = m["metric"], m["eval_split"]
    cols = ["epoch", "train_loss", f"{split}_loss", f"{split}_{metric}", "seconds"]
    rows = [[_fmt(e.get(c)) for c in cols] for e in m["epochs"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        click.echo("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
    final = m["final"][metric]
    shown = f"{final:.2%}" if metric == "accuracy" else _fmt(final)
    note = " (stopped early: --max-minutes)" if m["stopped_early"] else ""
    click.echo(f"{m['family']} on {m['dataset']}: test {metric} {shown}, "
               f"{m['parameters']:,} parameters, {m['train_seconds']:.1f} s training on "
               f"{m['device']}{note}")
    judged = m.get("judged_samples")
    if judged:
        click.echo(f"samples judged by a {judged['judge']}: {judged['confident_fraction']:.1%} "
                   f"with confidence >= {judged['threshold']}, label entropy "
                   f"{judged['label_entropy_bits']:.2f} of {judged['max_entropy_bits']:.2f} bits")
    guide = m.get("guide")
    if guide:
        click.echo(guide["line"])
        if guide.get("met"):
            click.echo("targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                   for k, v in guide["met"].items()))
    samples = m.get("samples")
    if samples:
        click.echo("generated samples (prompt | generated; in full in samples.txt):")
        for k, s in enumerate(samples, 1):
            click.echo(f"  {k}: {sample_line(s['prompt'], s['generated'])}")


def sample_line(prompt: str, generated: str, width: int = 100) -> str:
    """One printable line: the prompt's end, ``|``, the start of the generated text (whitespace
    runs, newlines included, shown as one space)."""
    p, g = " ".join(prompt.split()), " ".join(generated.split())
    keep = max(10, width // 3)
    p = p if len(p) <= keep else "..." + p[-keep:]
    room = max(10, width - len(p) - 3)
    return f"{p} | {g if len(g) <= room else g[:room] + '...'}"


@click.command("train-baseline")
@click.argument("family", type=click.Choice(FAMILIES))
@click.argument("dataset")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs (default: per family, tuned on mnist-sample).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Global batch size (split across torchrun processes).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate (default: per family).")
@click.option("--seed", type=int, default=None,
              help="Seed (default 0): the same seed gives the same run on CPU.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Default auto: CUDA when present, else CPU.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per process (default: the idle cores, shared by local ranks).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop training after this many minutes (then evaluate and write outputs).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: <cache>/runs/<dataset>-<family>-<variant>-<time>).")
@click.option("--split-val", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Share of train held out (stratified) for validation when there is no val "
                   "split (default 0.1); 0 evaluates each epoch on test.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
              help="Hidden activation of mlp and cnn (default relu).")
@click.option("--cell", type=click.Choice(CELLS), default=None,
              help="Recurrent cell of rnn (default lstm).")
@click.option("--variational", is_flag=True, help="autoencoder: train a VAE (writes samples).")
@click.option("--hidden", type=click.IntRange(min=1), default=None,
              help="Width: mlp/rnn hidden units, cnn/autoencoder/gan base channels.")
@click.option("--latent", type=click.IntRange(min=1), default=None,
              help="autoencoder code size / gan noise size.")
@click.option("--seq-len", type=click.IntRange(min=1), default=None,
              help="rnn language model: window length (truncated BPTT; default 128).")
@click.option("--max-batches", type=click.IntRange(min=1), default=None,
              help="At most this many batches per epoch (quick checks).")
@click.option("--augment/--no-augment", default=None,
              help="Random shifts/rotations of training images (default: on for cnn).")
@click.option("--judge", type=click.Path(exists=True), default=None,
              help="vae/gan: a classifier run (folder or checkpoint.pt) that labels 1,000 "
                   "samples (confidence, label entropy).")
@click.option("--compare", "compare_spec", default=None, metavar="OPTION=V1,V2,...",
              help="Run one variant per value with the same seed; writes compare.png and "
                   "compare.md, e.g. activation=relu,tanh,sigmoid or cell=rnn,lstm.")
@common_options
def train_baseline_cmd(state: State, family: str, dataset: str, compare_spec: str | None,
                       **options: Any) -> None:
    """Train the FAMILY baseline on DATASET (a name, fetched and prepared if needed, or an .h5
    path) and write metrics.json, checkpoint.pt and PNG plots to the run folder, whose path is
    the last line of stdout.

    \b
    Families: mlp, cnn, rnn (--cell), autoencoder (--variational), gan. Image sets fit all
    five (rnn reads rows as a sequence); token sets fit rnn (language model, or sequence
    classification when labelled) and mlp (bag of tokens, labelled sets).
    Several processes: torchrun --nproc-per-node 2 -m dlprep train-baseline cnn mnist-sample
    """
    from ..baselines import compare, train

    options = {k: v for k, v in options.items() if v is not None and v is not False}
    options.update(cache_dir=state.cache_dir, offline=state.is_offline,
                   progress=False if state.quiet else None)
    main = _is_main_process()
    if compare_spec:
        from ..baselines.comparison import parse_compare

        axis, values = parse_compare(compare_spec)
        result = compare(family, dataset, axis, values, **options)
        if main and result.get("out"):
            for r in result["runs"]:
                click.echo(f"== {axis}={r['value']}")
                if not state.quiet:
                    print_summary(r["metrics"])
            click.echo(result["table"])
            click.echo(result["out"])
        return
    metrics = train(family, dataset, **options)
    if main:
        if not state.quiet:
            print_summary(metrics)
        click.echo(metrics["out"])


COMMANDS = [train_baseline_cmd]
