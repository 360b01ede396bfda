"""The dequantizers of the flow (`gentools.models.flow`): the noise u in [0, 1)^D that turns a
discrete image x into v = x + u, with its log q(u|x) for the bound
log P(x) >= E_q[log p(x + u) - log q(u|x)].

- `UniformDequantizer`: q = 1 (RealNVP, Glow);
- `VariationalDequantizer`: a learned q(u|x), a small flow conditioned on x (Flow++, Ho et al.
  2019, https://arxiv.org/abs/1902.00275).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gentools.models.flow.layers import Coupling, normal_log_prob


class UniformDequantizer(nn.Module):
    """q(u|x) = 1 on [0, 1)^D: log q = 0."""

    def forward(self, x, generator=None):
        u = torch.rand(x.shape, generator=generator).to(x)  # (B, C, H, W)
        return u, torch.zeros(len(x), device=x.device)


class VariationalDequantizer(nn.Module):
    """Flow++'s q(u|x): eps ~ N(0, I), an x-conditioned affine and checkerboard couplings map it
    to h, and u = sigmoid(h). log q(u|x) = log N(eps) - log|dh/deps| - sum log sigmoid'(h)."""

    def __init__(self, shape, levels: int, hidden: int, steps: int):
        super().__init__()
        c, self.levels = shape[0], levels
        self.features = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
        )
        self.affine = nn.Conv2d(hidden, 2 * c, 1)  # per-pixel (log-scale, shift) from x
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)
        self.couplings = nn.ModuleList(
            Coupling(c, hidden, f"checker{k % 2}", cond_channels=hidden) for k in range(steps)
        )

    def forward(self, x, generator=None):
        """x: (B, C, H, W) levels as floats -> u (B, C, H, W) in (0, 1) and log q(u|x) (B,)."""
        eps = torch.randn(x.shape, generator=generator).to(x)  # (B, C, H, W)
        u, logdet = self.transform(eps, x)
        return u, normal_log_prob(eps) - logdet  # log q(u|x) = log N(eps) - log|du/deps|

    def transform(self, eps, x):
        """eps -> u = sigmoid(h(eps; x)) and log|det du/deps| (B,)."""
        feat = self.features(x / (self.levels - 1) * 2 - 1)  # (B, hidden, H, W)
        log_s, shift = self.affine(feat).chunk(2, 1)
        h = eps * log_s.exp() + shift  # h = eps e^a(x) + b(x)
        logdet = log_s.flatten(1).sum(1)
        for layer in self.couplings:
            h, logdet = layer(h, logdet, cond=feat)
        # log sigmoid'(h) = log sigmoid(h) + log sigmoid(-h) = -softplus(-h) - softplus(h)
        log_dsig = (-F.softplus(-h) - F.softplus(h)).flatten(1).sum(1)
        return torch.sigmoid(h), logdet + log_dsig
