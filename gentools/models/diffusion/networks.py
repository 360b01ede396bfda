"""The denoising networks of the diffusion model: (x_t, t, y) -> one output per pixel and level.

Both networks read the time t and the class label y through one `Conditioning` embedding:
sinusoidal features of t (Vaswani et al. 2017, as in Ho et al. 2020) through an MLP, plus a
learned vector per class, the last class being the null label of classifier-free guidance.

- `DenoiserMLP`: a residual MLP on the flattened pixels.
- `DenoiserUNet`: a U-Net of two resolutions (Ronneberger et al. 2015,
  https://arxiv.org/abs/1505.04597) of residual conv blocks, like Ho et al.'s but without
  attention.

Each outputs (B, C, H, W, L): L logits per pixel over the grey levels (output="levels"), or
L = 1 value, eps or v (output="direct").

NOTE: on 8x8 digits the MLP gave the better samples per CPU second and the U-Net the tighter
  bound (the design table in benchmarks/diffusion.py); the default size is the MLP.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from gentools.models.diffusion.model import DiffusionConfig


def outputs(c: DiffusionConfig) -> int:
    """Network outputs per pixel: a logit per grey level, or one value (eps or v)."""
    return c.levels if c.output == "levels" else 1


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled to 0..1000): (B,) -> (B, dim)."""
    freqs = torch.exp(-math.log(10_000) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    angles = 1000 * t.float()[:, None] * freqs[None]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Conditioning(nn.Module):
    """Time and label -> one embedding (B, e): an MLP of the sinusoid plus a class vector."""

    def __init__(self, e: int, num_classes: int):
        super().__init__()
        self.e = e
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.label = nn.Embedding(num_classes + 1, e) if num_classes else None  # last: null

    def forward(self, t, y):
        emb = self.time(timestep_embedding(t, self.e).to(self.time[0].weight.dtype))  # (B, e)
        return emb if self.label is None else emb + self.label(y)


class MLPBlock(nn.Module):
    """h + W2 dropout(SiLU(W1 LN(h) + E emb)): a residual block with the conditioning added."""

    def __init__(self, w: int, e: int, dropout: float):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(w), nn.Linear(w, w), nn.Linear(w, w)
        self.cond, self.drop = nn.Linear(e, w), nn.Dropout(dropout)

    def forward(self, h, emb):
        return h + self.fc2(self.drop(F.silu(self.fc1(self.norm(h)) + self.cond(emb))))


class DenoiserMLP(nn.Module):
    """(x (B, C, H, W), t (B,), y (B,)) -> output of x's shape, from the flattened pixels."""

    def __init__(self, c: DiffusionConfig):
        super().__init__()
        d, w = math.prod(c.shape), c.width
        self.cond = Conditioning(w, c.num_classes)
        self.inp = nn.Linear(d, w)
        self.blocks = nn.ModuleList(MLPBlock(w, w, c.dropout) for _ in range(c.depth))
        self.out = nn.Sequential(nn.LayerNorm(w), nn.SiLU(), nn.Linear(w, d * outputs(c)))
        self.n_out = outputs(c)

    def forward(self, x, t, y):
        emb = F.silu(self.cond(t, y))  # (B, w)
        h = self.inp(x.flatten(1))  # (B, w)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h).view(*x.shape, self.n_out)  # (B, C, H, W, L or 1)


class ConvBlock(nn.Module):
    """Residual block: GN -> SiLU -> conv, + conditioning, GN -> SiLU -> dropout -> conv."""

    def __init__(self, c_in: int, c_out: int, e: int, dropout: float):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.cond, self.drop = nn.Linear(e, c_out), nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h, emb):
        a = self.c1(F.silu(self.n1(h))) + self.cond(emb)[:, :, None, None]  # (B, c_out, H, W)
        return self.skip(h) + self.c2(self.drop(F.silu(self.n2(a))))


class DenoiserUNet(nn.Module):
    """A U-Net of two resolutions (H x W and H/2 x W/2) with a skip connection between them."""

    def __init__(self, c: DiffusionConfig):
        super().__init__()
        ch, C, e = c.width, c.shape[0], 4 * c.width
        self.cond = Conditioning(e, c.num_classes)
        self.inp = nn.Conv2d(C, ch, 3, padding=1)
        self.down = nn.ModuleList(ConvBlock(ch, ch, e, c.dropout) for _ in range(c.depth))
        self.pool = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.mid = nn.ModuleList(ConvBlock(2 * ch, 2 * ch, e, c.dropout) for _ in range(c.depth))
        self.upsample = nn.ConvTranspose2d(2 * ch, ch, 2, stride=2)
        self.up = nn.ModuleList(
            ConvBlock(2 * ch if i == 0 else ch, ch, e, c.dropout) for i in range(c.depth)
        )
        self.out = nn.Sequential(
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, C * outputs(c), 3, padding=1)
        )
        self.n_out = outputs(c)

    def forward(self, x, t, y):
        emb = F.silu(self.cond(t, y))  # (B, e)
        h = self.inp(x)  # (B, ch, H, W)
        for block in self.down:
            h = block(h, emb)
        skip, h = h, self.pool(h)  # (B, 2ch, H/2, W/2)
        for block in self.mid:
            h = block(h, emb)
        h = torch.cat([self.upsample(h), skip], 1)  # (B, 2ch, H, W)
        for block in self.up:
            h = block(h, emb)
        B, C, H, W = x.shape
        return (
            self.out(h).view(B, C, self.n_out, H, W).permute(0, 1, 3, 4, 2)
        )  # (B, C, H, W, L or 1)


NETWORKS = {"mlp": DenoiserMLP, "unet": DenoiserUNet}  # config.network -> its class
