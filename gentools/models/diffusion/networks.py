"""The denoising networks of the diffusion model: (x_t, t, y) -> one output per pixel and level.

Both networks read the time t and the class label y through one `Conditioning` embedding:
sinusoidal features of t (Vaswani et al. 2017, as in Ho et al. 2020) through an MLP, plus a
learned vector per class, the last class being the null label of classifier-free guidance.

- `DenoiserMLP`: a residual MLP on the flattened pixels.
- `DenoiserUNet`: a U-Net of two or more resolutions (Ronneberger et al. 2015,
  https://arxiv.org/abs/1505.04597) of residual conv blocks, like Ho et al.'s but without
  attention.

Each outputs (B, C, H, W, L): L logits per pixel over the grey levels (output="levels"), or
L = 1 value, eps or v (output="direct").

NOTE: on 8x8 digits the MLP gave the better samples per CPU second and the U-Net the tighter
  bound (the design table in benchmarks/diffusion.py); the default size is the MLP.
"""

from __future__ import annotations

import math
from itertools import pairwise
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
    """A U-Net over len(c.mults) resolutions (H x W, H/2 x W/2, ...): c.width * c.mults[i]
    channels at the i-th, c.depth blocks per resolution on the way down and up, a skip
    connection across each; the last resolution is the middle."""

    def __init__(self, c: DiffusionConfig):
        super().__init__()
        chs, C, e = [c.width * m for m in c.mults], c.shape[0], 4 * c.width
        block = lambda c_in, c_out: ConvBlock(c_in, c_out, e, c.dropout)
        self.cond = Conditioning(e, c.num_classes)
        self.inp = nn.Conv2d(C, chs[0], 3, padding=1)
        self.down, self.pools = nn.ModuleList(), nn.ModuleList()
        for ch, ch_next in pairwise(chs):
            self.down.append(nn.ModuleList(block(ch, ch) for _ in range(c.depth)))
            self.pools.append(nn.Conv2d(ch, ch_next, 3, stride=2, padding=1))  # halves H, W
        self.mid = nn.ModuleList(block(chs[-1], chs[-1]) for _ in range(c.depth))
        self.upsamples, self.up = nn.ModuleList(), nn.ModuleList()
        for ch, ch_below in reversed(list(pairwise(chs))):
            self.upsamples.append(nn.ConvTranspose2d(ch_below, ch, 2, stride=2))  # doubles
            self.up.append(nn.ModuleList(block(2 * ch if i == 0 else ch, ch)
                                         for i in range(c.depth)))
        self.out = nn.Sequential(
            nn.GroupNorm(8, chs[0]), nn.SiLU(), nn.Conv2d(chs[0], C * outputs(c), 3, padding=1)
        )
        self.n_out = outputs(c)

    def forward(self, x, t, y):
        emb = F.silu(self.cond(t, y))  # (B, e)
        h, skips = self.inp(x), []  # (B, ch_0, H, W)
        for blocks, pool in zip(self.down, self.pools, strict=True):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = pool(h)  # (B, ch_{i+1}, H / 2^(i+1), W / 2^(i+1))
        for block in self.mid:
            h = block(h, emb)
        for upsample, blocks in zip(self.upsamples, self.up, strict=True):
            h = torch.cat([upsample(h), skips.pop()], 1)  # (B, 2 ch_i, H / 2^i, W / 2^i)
            for block in blocks:
                h = block(h, emb)
        B, C, H, W = x.shape
        return (
            self.out(h).view(B, C, self.n_out, H, W).permute(0, 1, 3, 4, 2)
        )  # (B, C, H, W, L or 1)


NETWORKS = {"mlp": DenoiserMLP, "unet": DenoiserUNet}  # config.network -> its class
