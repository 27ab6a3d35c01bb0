"""Convolutional autoencoder, or a VAE with ``--variational``; pixels in [0, 1], metric MSE."""

from __future__ import annotations

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


def _sizes(shape: list[int], stages: int) -> tuple[int, int]:
    return shape[0] // 2 ** stages, shape[1] // 2 ** stages


class ConvAutoencoder(nn.Module):
    """(B, C, H, W) in [0, 1] -> ``stages`` stride-2 convs -> latent (B, L) -> transposed convs
    -> logits (B, C, H, W). ``variational``: the encoder gives mean and log-variance."""

    def __init__(self, shape: list[int], latent: int, width: int, stages: int,
                 variational: bool, fc: int = 0) -> None:
        super().__init__()
        h, w, c = shape
        self.variational = variational
        self.latent = latent
        enc: list[nn.Module] = []
        ch = c
        for s in range(stages):
            out = width * 2 ** s
            enc += [nn.Conv2d(ch, out, 4, 2, 1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            ch = out
        sh, sw = _sizes(shape, stages)
        self.grid = (ch, sh, sw)
        flat = ch * sh * sw
        if fc:  # a dense hidden layer on each side of the code
            self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, fc),
                                         nn.LeakyReLU(0.2))
            self.to_latent = nn.Linear(fc, latent * (2 if variational else 1))
            self.from_latent = nn.Sequential(nn.Linear(latent, fc), nn.LeakyReLU(0.2),
                                             nn.Linear(fc, flat), nn.LeakyReLU(0.2))
        else:
            self.encoder = nn.Sequential(*enc, nn.Flatten())
            self.to_latent = nn.Linear(flat, latent * (2 if variational else 1))
            self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.LeakyReLU(0.2))
        dec: list[nn.Module] = []
        for s in reversed(range(stages)):
            out = c if s == 0 else width * 2 ** (s - 1)
            dec.append(nn.ConvTranspose2d(ch, out, 4, 2, 1))
            if s:
                dec += [nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            ch = out
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.to_latent(self.encoder(x))
        if self.variational:
            mu, logvar = z.chunk(2, dim=1)
            return mu, logvar.clamp(-10, 10)
        return z, None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, L) -> pixel logits (B, C, H, W); ``sigmoid`` gives pixels in [0, 1]."""
        return self.decoder(self.from_latent(z).view(-1, *self.grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1] (the mean code for a VAE)."""
        return torch.sigmoid(self.decode(self.encode(x)[0]))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in [0, 1] decoded from z ~ N(0, I) (meaningful for a VAE)."""
        dev = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator).to(dev)
        return torch.sigmoid(self.decode(z))


def build_modules(spec: dict[str, Any]) -> dict[str, nn.Module]:
    return {"model": ConvAutoencoder(spec["shape"], spec["latent"], spec["width"],
                                     spec["stages"], spec["variational"], spec.get("fc", 0))}


class AutoencoderLoss(nn.Module):
    """The training loss as a module (so DDP sees one forward per step): per-sample
    reconstruction BCE (+ KL(q(z|x) || N(0, I)) for a VAE), averaged over the batch."""

    def __init__(self, net: ConvAutoencoder) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        mu, logvar = self.net.encode(x)
        if logvar is not None and eps is not None:
            z = mu + eps * torch.exp(0.5 * logvar)
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        else:
            z, kl = mu, torch.zeros(x.shape[0], device=x.device)
        logits = self.net.decode(z)
        rec = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return (rec.flatten(1).sum(1) + kl).mean()


class AutoencoderTask(Task):
    metric = "mse"

    def __init__(self, data: BaselineData, cfg: TrainConfig, rt: Runtime) -> None:
        super().__init__(data, cfg, rt)
        h, w, c = data.shape
        self._spec = {"shape": [h, w, c], "latent": cfg.latent or (8 if cfg.variational else 32),
                      "width": cfg.hidden or 32, "stages": max(1, stage_plan(h, w, min_size=4)),
                      "variational": cfg.variational,
                      "fc": int(cfg.extra.get("fc", 256 if cfg.variational else 0))}
        self.net = build_modules(self._spec)["model"]
        self.loss = self.wrap(AutoencoderLoss(self.net))
        self.inputs = ImageInputs(data, rt.device, scale="unit")
        self.opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg.lr or 2e-3))
        steps = max(1, int(cfg.epochs or 1) * max(1, self.n_train() // int(cfg.batch_size or 64)))
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=float(cfg.lr or 2e-3), total_steps=steps, pct_start=0.1)
        self.gen = torch.Generator().manual_seed(cfg.seed + 7 * rt.rank)
        self.judged: dict[str, Any] = {}

    def modules(self) -> dict[str, Any]:
        return {"model": self.net}

    def spec(self) -> dict[str, Any]:
        return self._spec

    def train_step(self, index: np.ndarray) -> dict[str, float]:
        self.loss.train()
        (x,), _ = self.inputs.batch("train", index)
        eps = None
        if self.cfg.variational:
            eps = torch.randn(x.shape[0], self._spec["latent"], generator=self.gen).to(x.device)
        loss = self.loss(x, eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.sched.last_epoch + 1 < self.sched.total_steps:
            self.sched.step()
        return {"loss": float(loss.item())}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.net.eval()
        n = len(self.data.splits[split])
        loss, se = 0.0, 0.0
        for start in range(0, n, 512):
            (x,), _ = self.inputs.batch(split, np.arange(start, min(n, start + 512)))
            z, _ = self.net.encode(x)
            logits = self.net.decode(z)
            loss += float(nn.functional.binary_cross_entropy_with_logits(
                logits, x, reduction="none").flatten(1).sum(1).sum())
            se += float((torch.sigmoid(logits) - x).pow(2).mean(dim=(1, 2, 3)).sum())
        return {"loss": loss / max(n, 1), "mse": se / max(n, 1)}

    def samples(self, n: int, seed: int) -> torch.Tensor:
        """``n`` VAE samples (n, C, H, W) in [0, 1] on the CPU."""
        return self.net.sample(n, torch.Generator().manual_seed(seed)).cpu()

    def extra_results(self) -> dict[str, Any]:
        if self.cfg.variational and self.cfg.judge:
            from .judge import judge_samples

            self.judged = judge_samples(self.samples(1000, self.cfg.seed + 99), self.cfg.judge)
            return {"judged_samples": self.judged}
        return {}

    def write_plots(self, out_dir: Path) -> list[str]:
        from .plots import plot_grid

        self.net.eval()
        n = min(16, len(self.data.splits["test"]))
        with torch.no_grad():
            (x,), _ = self.inputs.batch("test", np.arange(n))
            rec = self.net(x)
        plot_grid(torch.cat([x, rec]).cpu(), out_dir / "reconstructions.png", rows=2,
                  title="test images (top) and their reconstructions (bottom)")
        names = ["reconstructions.png"]
        if self.cfg.variational:
            plot_grid(self.samples(64, self.cfg.seed + 1), out_dir / "samples.png", rows=8,
                      title="VAE samples, z ~ N(0, I)")
            names.append("samples.png")
        return names


def make_task(data: BaselineData, cfg: TrainConfig, rt: Runtime) -> AutoencoderTask:
    return AutoencoderTask(data, cfg, rt)
