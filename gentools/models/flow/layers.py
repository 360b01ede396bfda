"""The invertible layers of the flow (`gentools.models.flow`). Each maps
`forward(x, logdet, cond=None) -> (y, logdet + log|det dy/dx|)`, the log-determinant (B,)
summed over all but the batch dimension, and `inverse(y, cond=None) -> x` exactly:

- `squeeze` / `Squeeze`: each 2x2 patch becomes 4 channels (RealNVP, Dinh et al. 2017,
  https://arxiv.org/abs/1605.08803), a permutation;
- `Logit`: the logit pre-processing of RealNVP, y -> logit(a + (1 - 2a) y);
- `ActNorm` and `InvConv1x1`: Glow's data-initialised per-channel affine and its
  LU-parametrised invertible 1x1 convolution (Kingma & Dhariwal 2018,
  https://arxiv.org/abs/1807.03039);
- `Coupling`: the affine coupling with a checkerboard or channel mask, optionally conditioned
  on features (the variational dequantizer's).

NOTE: coupling log-scales are s = scale * tanh(raw) for stability, and couplings use dropout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the batch dimension: (B,)."""
    return (-0.5 * z.pow(2) - 0.5 * LOG_2PI).flatten(1).sum(1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels (a permutation)."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
    return x.reshape(B, 4 * C, H // 2, W // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W): the inverse of squeeze."""
    B, C4, H, W = x.shape
    x = x.view(B, C4 // 4, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3)  # (B, C, H, 2, W, 2)
    return x.reshape(B, C4 // 4, 2 * H, 2 * W)


class Squeeze(nn.Module):
    """A layer wrapper for squeeze: log|det J| = 0 (a permutation)."""

    def forward(self, x, logdet, cond=None):
        return squeeze(x), logdet

    def inverse(self, y, cond=None):
        return unsqueeze(y)


class Logit(nn.Module):
    """y in (0, 1) -> h = logit(a + (1 - 2a) y); log|dh/dy| = log(1 - 2a) - log s - log(1 - s)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, y, logdet, cond=None):
        s = self.alpha + (1 - 2 * self.alpha) * y  # s in (a, 1 - a)
        ld = math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)
        return torch.log(s) - torch.log1p(-s), logdet + ld.flatten(1).sum(1)

    def inverse(self, h, cond=None):
        return (torch.sigmoid(h) - self.alpha) / (1 - 2 * self.alpha)


class ActNorm(nn.Module):
    """y = (x + b) * exp(s) per channel; b, s set on the first training batch so y has zero
    mean and unit variance per channel. `initialized` is a buffer: it is saved in checkpoints,
    so a reloaded model is never re-initialised. log|det J| = H W sum_c s_c."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)  # (1, C, 1, 1)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x, logdet, cond=None):
        if self.training and not self.initialized:
            self.initialize(x)
        y = (x + self.bias) * self.log_scale.exp()
        return y, logdet + x.shape[2] * x.shape[3] * self.log_scale.sum()

    def inverse(self, y, cond=None):
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution W = P L (U + diag(sign * exp(log_s))), LU-parametrised:
    P a fixed permutation, L unit lower-triangular, U strictly upper; log|det J| = H W sum log_s."""

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]  # a random rotation
        P, L, U = torch.linalg.lu(w)
        s = U.diagonal()
        self.register_buffer("P", P)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(L)
        self.upper = nn.Parameter(torch.triu(U, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.log_s), device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye  # unit diagonal
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.P @ lower @ upper  # (C, C)

    def forward(self, x, logdet, cond=None):
        w = self.weight()
        return F.conv2d(x, w[:, :, None, None]), logdet + x.shape[2] * x.shape[3] * self.log_s.sum()

    def inverse(self, y, cond=None):
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


def checkerboard(h: int, w: int, parity: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) mask, 1 where (i + j + parity) is even: those pixels pass unchanged."""
    i = torch.arange(h, device=like.device)[:, None]
    j = torch.arange(w, device=like.device)[None, :]
    return ((i + j + parity) % 2 == 0).to(like.dtype)[None, None]


class Coupling(nn.Module):
    """Affine coupling: the masked half x_a passes, the other is y_b = x_b * exp(s) + t with
    (s, t) = net(x_a [, cond]); log|det J| = sum s. mask: "checker0/1" (spatial) or
    "channel0/1" (which channel half passes). s = scale * tanh(raw) keeps exp(s) bounded."""

    def __init__(self, channels, hidden, mask, dropout=0.0, cond_channels=0):
        super().__init__()
        self.kind, self.parity = mask[:-1], int(mask[-1])
        c_in = channels + 1 if self.kind == "checker" else channels // 2
        c_out = channels if self.kind == "checker" else channels - channels // 2
        self.net = nn.Sequential(
            nn.Conv2d(c_in + cond_channels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(hidden, 2 * c_out, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, c_out, 1, 1))

    def _st(self, x_a, cond):
        h = self.net(x_a if cond is None else torch.cat([x_a, cond], 1))  # (B, 2 c_out, H, W)
        raw, t = h.chunk(2, 1)
        return self.scale * torch.tanh(raw), t  # s = scale * tanh(raw)

    def _split(self, x):
        a, b = x.chunk(2, 1) if self.parity == 0 else x.chunk(2, 1)[::-1]
        return a, b

    def _join(self, a, b):
        return torch.cat([a, b] if self.parity == 0 else [b, a], 1)

    def forward(self, x, logdet, cond=None):
        if self.kind == "checker":
            m = checkerboard(x.shape[2], x.shape[3], self.parity, x)  # (1, 1, H, W)
            s, t = self._st(torch.cat([x * m, m.expand(len(x), 1, -1, -1)], 1), cond)
            s, t = s * (1 - m), t * (1 - m)  # identity where m = 1
            return x * s.exp() + t, logdet + s.flatten(1).sum(1)
        a, b = self._split(x)
        s, t = self._st(a, cond)
        return self._join(a, b * s.exp() + t), logdet + s.flatten(1).sum(1)

    def inverse(self, y, cond=None):
        if self.kind == "checker":
            m = checkerboard(y.shape[2], y.shape[3], self.parity, y)
            s, t = self._st(torch.cat([y * m, m.expand(len(y), 1, -1, -1)], 1), cond)
            return (y - t * (1 - m)) * torch.exp(-s * (1 - m))  # x_b = (y_b - t) exp(-s)
        a, b = self._split(y)
        s, t = self._st(a, cond)
        return self._join(a, (b - t) * torch.exp(-s))
