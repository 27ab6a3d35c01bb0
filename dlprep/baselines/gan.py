"""DCGAN-style GAN: transposed-conv generator (BN, ReLU, tanh) and a strided-conv discriminator
(LeakyReLU), non-saturating loss, Adam(2e-4, beta1 0.5). Pixels are scaled to [-1, 1]."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .data import BaselineData
from .loop import Task
from .nets import ImageInputs, stage_plan
from .runtime import Runtime

# What a healthy run shows (docs/BASELINES.md). The discriminator's loss (BCE, real labels 0.9)
# is ln 2 at equilibrium (0.5 for real and generated alike) and falls towards 0.16 (the floor
# with 0.9 labels) when the discriminator wins and the generator stops learning. A good run on
# mnist-sample (58.6 % confident samples, 3.21 bits) held 0.62-0.66 from epoch 3 on, with test
# d_accuracy 0.74 (0.97 in epoch 1, before the generator caught up).
D_LOSS_RANGE = (0.5, 0.75)
D_ACCURACY_MAX = 0.9


class Generator(nn.Module):
    """z (B, Z) -> dense -> (width*2^(S-1), h, w) -> S x [convT 4/2 (BN, ReLU)] -> tanh
    (B, C, H, W)."""

    def __init__(self, shape: list[int], z_dim: int, width: int, stages: int) -> None:
        super().__init__()
        h, w, c = shape
        self.z_dim = z_dim
        ch = width * 2 ** (stages - 1)
        self.grid = (ch, h // 2 ** stages, w // 2 ** stages)
        self.project = nn.Sequential(nn.Linear(z_dim, ch * self.grid[1] * self.grid[2], bias=False),
                                     nn.BatchNorm1d(ch * self.grid[1] * self.grid[2]), nn.ReLU())
        layers: list[nn.Module] = []
        for s in reversed(range(stages)):
            out = c if s == 0 else width * 2 ** (s - 1)
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=s == 0))
            layers += [nn.BatchNorm2d(out), nn.ReLU()] if s else [nn.Tanh()]
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(-1, *self.grid))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [0, 1]."""
        dev = next(self.parameters()).device
        z = torch.randn(n, self.z_dim, generator=generator).to(dev)
        return (self(z) + 1) / 2


class Discriminator(nn.Module):
    """(B, C, H, W) in [-1, 1] -> S x [conv 4/2, LeakyReLU 0.2] -> dense -> real/fake logit (B,)."""

    def __init__(self, shape: list[int], width: int, stages: int, dropout: float = 0.3,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        h, w, c = shape
        norm = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        ch = c
        for s in range(stages):
            out = width * 2 ** s
            layers += [norm(nn.Conv2d(ch, out, 4, 2, 1)), nn.LeakyReLU(0.2)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            ch = out
        self.net = nn.Sequential(*layers, nn.Flatten(),
                                 norm(nn.Linear(ch * (h // 2 ** stages) * (w // 2 ** stages), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def build_modules(spec: dict[str, Any]) -> dict[str, nn.Module]:
    return {"generator": Generator(spec["shape"], spec["z_dim"], spec["width"], spec["stages"]),
            "discriminator": Discriminator(spec["shape"], spec["width"], spec["stages"],
                                           spec.get("dropout", 0.3),
                                           spec.get("spectral_norm", False))}


def _init_dcgan(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class GanTask(Task):
    """Alternate one discriminator and one generator step per batch. Metric: the
    discriminator's accuracy telling real from generated images (0.5 = fooled)."""

    metric = "d_accuracy"

    def __init__(self, data: BaselineData, cfg: TrainConfig, rt: Runtime) -> None:
        super().__init__(data, cfg, rt)
        h, w, c = data.shape
        self._spec = {"shape": [h, w, c], "z_dim": cfg.latent or 64, "width": cfg.hidden or 32,
                      "stages": max(1, stage_plan(h, w, min_size=4)),
                      "dropout": float(cfg.extra.get("d_dropout", 0.0)),
                      "spectral_norm": bool(cfg.extra.get("spectral_norm", False))}
        mods = build_modules(self._spec)
        self.g_net, self.d_net = mods["generator"], mods["discriminator"]
        self.g_net.apply(_init_dcgan)
        self.d_net.apply(_init_dcgan)
        self.g = self.wrap(self.g_net)
        self.d = self.wrap(self.d_net)
        # samples come from an exponential moving average of the generator's weights
        self.ema_decay = float(cfg.extra.get("ema", 0.998))
        self.g_ema = copy.deepcopy(self.g_net).requires_grad_(False) if self.ema_decay else \
            self.g_net
        lr = float(cfg.lr or 2e-4)
        self.opt_g = torch.optim.Adam(self.g_net.parameters(), lr=lr, betas=(0.5, 0.999))
        d_lr = lr * float(cfg.extra.get("d_lr_factor", 1))
        self.opt_d = torch.optim.Adam(self.d_net.parameters(), lr=d_lr,
                                      betas=(0.5, 0.999))
        self.inputs = ImageInputs(data, rt.device, scale="tanh")
        self.gen = torch.Generator().manual_seed(cfg.seed + 13 * rt.rank)
        self.bce = nn.BCEWithLogitsLoss()
        self.judged: dict[str, Any] = {}

    def modules(self) -> dict[str, Any]:
        """``generator`` holds the averaged weights (what samples come from)."""
        return {"generator": self.g_ema, "discriminator": self.d_net}

    def spec(self) -> dict[str, Any]:
        return self._spec

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self._spec["z_dim"], generator=self.gen).to(self.rt.device)

    def train_step(self, index: np.ndarray) -> dict[str, float]:
        self.g.train()
        self.d.train()
        (real,), _ = self.inputs.batch("train", index)
        b = real.shape[0]
        fake = self.g(self._z(b))
        # discriminator: one forward on real + generated (one DDP forward per backward)
        logits = self.d(torch.cat([real, fake.detach()]))
        target = torch.cat([torch.full((b,), 0.9, device=real.device),
                            torch.zeros(b, device=real.device)])
        d_loss = self.bce(logits, target)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # generator: non-saturating loss through the local (unsynchronised) discriminator
        self.d_net.requires_grad_(False)
        g_loss = self.bce(self.d_net(fake), torch.ones(b, device=real.device))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.d_net.requires_grad_(True)
        if self.g_ema is not self.g_net:
            self._update_ema()
        return {"loss": float(g_loss.item()), "d_loss": float(d_loss.item())}

    @torch.no_grad()
    def _update_ema(self) -> None:
        for avg, p in zip(self.g_ema.parameters(), self.g_net.parameters(), strict=True):
            avg.lerp_(p, 1.0 - self.ema_decay)
        for avg, b in zip(self.g_ema.buffers(), self.g_net.buffers(), strict=True):
            avg.copy_(b)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.g_ema.eval()
        self.d_net.eval()
        n = min(len(self.data.splits[split]), 1000)
        (real,), _ = self.inputs.batch(split, np.arange(n))
        fake = self.g_ema(torch.randn(n, self._spec["z_dim"],
                                      generator=torch.Generator().manual_seed(1)).to(real.device))
        lr, lf = self.d_net(real), self.d_net(fake)
        loss = float(self.bce(lf, torch.ones_like(lf)))
        acc = float(((lr > 0).float().mean() + (lf < 0).float().mean()) / 2)
        return {"loss": loss, "d_accuracy": acc}

    def samples(self, n: int, seed: int) -> torch.Tensor:
        """``n`` generated images (n, C, H, W) in [0, 1] on the CPU."""
        self.g_ema.eval()
        return self.g_ema.sample(n, torch.Generator().manual_seed(seed)).cpu()

    def extra_results(self) -> dict[str, Any]:
        if self.cfg.judge:
            from .judge import judge_samples

            self.judged = judge_samples(self.samples(1000, self.cfg.seed + 99), self.cfg.judge)
            return {"judged_samples": self.judged}
        return {}

    def guide(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """GAN losses do not fall like other losses: say what a healthy run shows."""
        from .judge import judged_met, sample_targets

        lo, hi = D_LOSS_RANGE
        samples = sample_targets(len(self.data.classes))
        targets = {"train_d_loss": {"about": round(math.log(2), 3), "min": lo, "max": hi},
                   "d_accuracy": {"max": D_ACCURACY_MAX}, **samples}
        entropy = samples["label_entropy_bits"]["min"]
        confident = samples["confident_fraction"]["min"]
        line = (f"what good looks like: discriminator loss {lo}-{hi} (ln 2 = 0.69 is a draw; "
                f"near 0.16 the discriminator has won), test d_accuracy <= {D_ACCURACY_MAX} "
                f"(0.5 = fooled); --judge: >= {confident:.0%} of samples labelled with "
                f"confidence >= 0.9 and label entropy >= {entropy:.2f} bits (lower = mode "
                f"collapse)")
        met: dict[str, bool] = {}
        last = metrics["epochs"][-1] if metrics["epochs"] else {}
        if "train_d_loss" in last:
            met["train_d_loss"] = bool(lo <= last["train_d_loss"] <= hi)
        d_accuracy = metrics["final"].get("d_accuracy")
        if d_accuracy is not None and math.isfinite(d_accuracy):
            met["d_accuracy"] = bool(d_accuracy <= D_ACCURACY_MAX)
        judged = metrics.get("judged_samples")
        if judged:
            met.update(judged_met(judged, samples))
        return {"line": line, "targets": targets, "met": met}

    def write_plots(self, out_dir: Path) -> list[str]:
        from .plots import plot_grid

        plot_grid(self.samples(64, self.cfg.seed + 1), out_dir / "samples.png", rows=8,
                  title="GAN samples")
        return ["samples.png"]


def make_task(data: BaselineData, cfg: TrainConfig, rt: Runtime) -> GanTask:
    return GanTask(data, cfg, rt)
