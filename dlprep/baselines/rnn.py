"""Recurrent baselines (LSTM, GRU or a simple RNN, ``--cell``).

Images are read row by row as a sequence (B, H, W*C); labelled sequence sets are classified from
the last hidden state; unlabelled token sets train a language model (bits/char for char
tokenizers, else perplexity) and write generated text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .classify import ClassifierTask
from .config import TrainConfig
from .data import BaselineData, unigram_bits
from .loop import Task
from .nets import ImageInputs, SequenceInputs
from .runtime import Runtime

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
SAMPLES = 3  # generated texts per language model run (metrics.json, samples.txt, printed)
SAMPLE_TOKENS = 200  # tokens generated after each prompt


def _recurrent(cell: str, input_size: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    kwargs: dict[str, Any] = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return _CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True,
                        dropout=dropout if layers > 1 else 0.0, **kwargs)


class RecurrentClassifier(nn.Module):
    """Sequence -> recurrent layers -> last hidden state of the top layer -> logits (B, K).

    ``input``: ``rows`` (images (B, C, H, W), one step per row), ``tokens`` (ids (B, T),
    embedded) or ``values`` (floats (B, T, F)); ``lengths`` (B,) marks the padding."""

    def __init__(self, input: str, input_dim: int, classes: int, cell: str, hidden: int,
                 layers: int, vocab_size: int = 0, embed: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.input = input
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0) if input == "tokens" else None
        self.rnn = _recurrent(cell, embed if input == "tokens" else input_dim, hidden, layers,
                              dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.input == "rows":
            b, c, h, w = x.shape
            x = x.permute(0, 2, 3, 1).reshape(b, h, w * c)
        elif self.embed is not None:
            x = self.embed(x)
        if lengths is not None:
            x = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                  enforce_sorted=False)
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])


class LanguageModel(nn.Module):
    """Token ids (B, T) -> embedding -> recurrent layers -> next-token logits (B, T, V)."""

    def __init__(self, vocab_size: int, cell: str, hidden: int, layers: int, embed: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = _recurrent(cell, embed, hidden, layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.rnn(self.embed(ids), state)
        return self.out(self.drop(y)), state


def build_modules(spec: dict[str, Any]) -> dict[str, nn.Module]:
    if spec["mode"] == "lm":
        return {"model": LanguageModel(spec["vocab_size"], spec["cell"], spec["hidden"],
                                       spec["layers"], spec["embed"])}
    return {"model": RecurrentClassifier(spec["input"], spec["input_dim"], spec["classes"],
                                         spec["cell"], spec["hidden"], spec["layers"],
                                         spec.get("vocab_size", 0), spec.get("embed", 64))}


class LanguageModelTask(Task):
    """Next-token cross-entropy on non-overlapping windows of ``seq_len`` + 1 tokens."""

    def __init__(self, data: BaselineData, cfg: TrainConfig, rt: Runtime) -> None:
        super().__init__(data, cfg, rt)
        self.char = data.tokenizer in {"char", "byte"}
        self.metric = "bits_per_char" if self.char else "perplexity"
        vocab = len(data.vocab or []) or int(max(int(s.max()) for s in data.splits["train"].seqs
                                                 if len(s)) + 1)
        self._spec = {"mode": "lm", "vocab_size": vocab, "cell": cfg.cell,
                      "hidden": cfg.hidden or (256 if rt.device.type == "cuda" else 128),
                      "layers": 2, "embed": 64}
        self.net = build_modules(self._spec)["model"]
        self.model = self.wrap(self.net)
        self.windows = {name: torch.from_numpy(data.lm_windows(name, cfg.seq_len))
                        for name in data.splits}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=float(cfg.lr or 3e-3),
                                     weight_decay=1e-5)
        self.unigram_bits = unigram_bits(data.splits["train"].seqs or [])
        self.samples: list[dict[str, str]] = []

    def modules(self) -> dict[str, Any]:
        return {"model": self.net}

    def spec(self) -> dict[str, Any]:
        return self._spec

    def n_train(self) -> int:
        return len(self.windows["train"])

    def _metric(self, loss: float) -> float:
        return loss / math.log(2) if self.char else math.exp(min(loss, 50.0))

    def train_step(self, index: np.ndarray) -> dict[str, float]:
        self.model.train()
        w = self.windows["train"][torch.as_tensor(index)].to(self.rt.device)
        logits, _ = self.model(w[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           w[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return {"loss": float(loss.item())}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.net.eval()
        w = self.windows[split]
        total, count = 0.0, 0
        for start in range(0, len(w), 128):
            b = w[start:start + 128].to(self.rt.device)
            logits, _ = self.net(b[:, :-1])
            total += float(nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1), reduction="sum"))
            count += b[:, 1:].numel()
        loss = total / max(count, 1)
        return {"loss": loss, self.metric: self._metric(loss)}

    def extra_results(self) -> dict[str, Any]:
        """The unigram entropy to beat and :data:`SAMPLES` generated texts (printed by the CLI)."""
        self.samples = self.generate_samples()
        return {"unigram_bits_per_token": self.unigram_bits, "samples": self.samples}

    @torch.no_grad()
    def generate(self, prompt: list[int], length: int, temperature: float = 0.8,
                 seed: int = 0) -> list[int]:
        """Sample ``length`` token ids after ``prompt`` (ids) from the trained model."""
        self.net.eval()
        gen = torch.Generator().manual_seed(seed)
        ids = list(prompt) or [1]
        logits, state = self.net(torch.tensor([ids], device=self.rt.device))
        out = []
        banned = self._specials()
        for _ in range(length):
            step = logits[0, -1].float().cpu() / temperature
            step[banned] = -math.inf
            p = torch.softmax(step, 0)
            nxt = int(torch.multinomial(p, 1, generator=gen))
            out.append(nxt)
            logits, state = self.net(torch.tensor([[nxt]], device=self.rt.device), state)
        return out

    def _specials(self) -> list[int]:
        """Ids never generated: the special tokens (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``,
        ids 0-3 by FORMAT.md) when the vocabulary has them (``<unk>`` would print U+FFFD)."""
        from ..text.tokenizers import SPECIALS

        vocab = self.data.vocab or []
        return list(range(len(SPECIALS))) if tuple(vocab[:len(SPECIALS)]) == SPECIALS else []

    def prompts(self, n: int = SAMPLES, length: int = 32) -> list[list[int]]:
        """``n`` prompts: the first ``length`` tokens of test windows, else (a test split too
        short for ``n`` windows) the most frequent train tokens, one token each."""
        test = self.windows["test"]
        out = [test[k, :min(length, test.shape[1] - 1)].tolist() for k in range(min(n, len(test)))]
        counts = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in
                                             self.data.splits["train"].seqs or []] or
                                            [np.ones(1, np.int64)]))
        counts[[i for i in self._specials() if i < len(counts)]] = 0
        frequent = [int(i) for i in np.argsort(-counts, kind="stable")]
        return out + [[frequent[k % len(frequent)]] for k in range(n - len(out))]

    def generate_samples(self, n: int = SAMPLES, length: int = SAMPLE_TOKENS
                         ) -> list[dict[str, str]]:
        """``n`` texts generated after :meth:`prompts`, decoded with the dataset's vocabulary."""
        decode = self.data.decode or (lambda t: " ".join(str(i) for i in t))
        return [{"prompt": decode(p), "generated": decode(self.generate(p, length,
                                                                         seed=self.cfg.seed + k))}
                for k, p in enumerate(self.prompts(n))]

    def write_plots(self, out_dir: Path) -> list[str]:
        texts = [f"--- sample {k + 1} (prompt | generated) ---\n{s['prompt']} | {s['generated']}\n"
                 for k, s in enumerate(self.samples or self.generate_samples())]
        (out_dir / "samples.txt").write_text("".join(texts), encoding="utf-8")
        return ["samples.txt"]


def make_task(data: BaselineData, cfg: TrainConfig, rt: Runtime) -> Task:
    hidden = cfg.hidden or 128
    if data.layout == "image":
        h, w, c = data.shape
        spec: dict[str, Any] = {"mode": "classify", "input": "rows", "input_dim": w * c,
                                "classes": len(data.classes), "cell": cfg.cell,
                                "hidden": hidden, "layers": 2}
        inputs: Any = ImageInputs(data, rt.device, augment=bool(cfg.augment))
        inputs.seed(cfg.seed + 1000 * rt.rank)
    elif data.labelled:
        spec = {"mode": "classify", "input": data.layout, "input_dim": data.shape[0]
                if data.layout == "values" else 0, "classes": len(data.classes),
                "cell": cfg.cell, "hidden": hidden, "layers": 2,
                "vocab_size": len(data.vocab or []) or int(max(
                    int(s.max()) for s in data.splits["train"].seqs if len(s)) + 1)
                if data.layout == "tokens" else 0}
        inputs = SequenceInputs(data, rt.device, max_len=max(cfg.seq_len, 256))
    else:
        return LanguageModelTask(data, cfg, rt)
    return ClassifierTask(data, cfg, rt, model=build_modules(spec)["model"], inputs=inputs,
                          spec=spec)
