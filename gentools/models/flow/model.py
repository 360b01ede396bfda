"""Normalizing flows: RealNVP (Dinh et al. 2017, https://arxiv.org/abs/1605.08803) and Glow
(Kingma & Dhariwal 2018, https://arxiv.org/abs/1807.03039), with uniform and variational
dequantization (Flow++, Ho et al. 2019, https://arxiv.org/abs/1902.00275).

An invertible f maps an image y in (0, 1)^D to z = f(y) with a N(0, I) prior, so the density
is exact: log p(y) = log N(f(y); 0, I) + log |det df/dy|. Each layer (`layers.py`) returns
its log-det. The data are discrete (x in {0..L-1}^D), so a flow models v = x + u, u in [0, 1)^D:

    log P(x) = log E_q[p(x + u) / q(u|x)] >= E_q[log p(x + u) - log q(u|x)]   (Jensen)

uniform q = 1 gives -log P(x) <= -E_u[log p_y((x + u) / L)] + D log L (the 1/L scaling of
v to y costs D log L); a learned q(u|x) (a small conditional flow, `dequantizers.py`)
tightens it, and K samples give the importance-weighted bound
log P(x) >= E[log (1/K) sum_k p(x + u_k) / q(u_k|x)].

NOTE: at full resolution (8x8x1 digits) there is one channel, so both variants start with
checkerboard couplings before the first squeeze; "glow" adds actnorm, and uses actnorm + LU
1x1 convolution + channel coupling after each squeeze; "realnvp" alternates checkerboard and
channel couplings without batch norm (and without actnorm or 1x1 convolutions).
NOTE: a logit layer, y -> logit(a + (1 - 2a) y), precedes the flow as in RealNVP. It maps
(0, 1) onto a bounded interval, so the model puts a little mass outside the data cube: P(x)
sums to slightly under 1 over all images and every reported bound is, if anything, pessimistic.
NOTE: coupling log-scales are s = scale * tanh(raw) for stability; couplings use dropout;
factored-out halves have a N(0, I) prior (no learned conditional prior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gentools.models.base import GenerativeModel
from gentools.models.flow.dequantizers import UniformDequantizer, VariationalDequantizer
from gentools.models.flow.layers import (
    ActNorm,
    Coupling,
    InvConv1x1,
    Logit,
    Squeeze,
    normal_log_prob,
)


@dataclass
class FlowConfig:
    shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W); H and W divisible by 2**scales
    levels: int = 17  # discrete intensity levels of the data (17 for digits, 256 for 8-bit)
    variant: str = "glow"  # "glow" (actnorm + 1x1 conv + coupling) or "realnvp" (couplings only)
    hidden: int = 64  # channels in each coupling network
    full_res_steps: int = 4  # checkerboard couplings at full resolution, before the 1st squeeze
    steps: int = 4  # flow steps per scale after each squeeze
    scales: int = 2  # squeezes; after each but the last, half the channels are factored out
    dropout: float = 0.1  # dropout inside the coupling networks
    dequantization: str = "variational"  # "uniform" or "variational" (learned q(u|x))
    deq_steps: int = 4  # conditional couplings in the variational dequantizer
    deq_hidden: int = 32  # channels of the dequantizer's networks
    alpha: float = 0.05  # logit pre-processing: y -> logit(alpha + (1 - 2 alpha) y)

    def __post_init__(self) -> None:
        if self.variant not in ("glow", "realnvp"):
            raise ValueError(f"unknown variant {self.variant!r}: use glow or realnvp")
        if self.dequantization not in ("uniform", "variational"):
            raise ValueError(
                f"unknown dequantization {self.dequantization!r}: use uniform or variational"
            )
        _, H, W = self.shape
        if H % 2**self.scales or W % 2**self.scales:
            raise ValueError(
                f"H and W must be divisible by 2**scales={2**self.scales}: {self.shape}"
            )


def flow_step(variant, channels, hidden, mask, dropout) -> list[nn.Module]:
    """One step: glow = actnorm [+ 1x1 conv for channel masks] + coupling; realnvp = coupling."""
    layers = [Coupling(channels, hidden, mask, dropout)]
    if variant == "glow":
        layers[:0] = [ActNorm(channels)] + ([InvConv1x1(channels)] if "channel" in mask else [])
    return layers


class Flow(GenerativeModel):
    Config = FlowConfig
    sizes = {
        "tiny": dict(hidden=8, full_res_steps=2, steps=2, deq_steps=2, deq_hidden=8),
        "default": dict(hidden=64, full_res_steps=4, steps=4, deq_steps=4, deq_hidden=32),
        "medium": dict(hidden=64, full_res_steps=2, steps=4, deq_steps=2, deq_hidden=16),  # 28x28
        "gpu": dict(hidden=256, full_res_steps=6, steps=8, deq_steps=6, deq_hidden=96),
    }

    def __init__(self, config: FlowConfig):
        super().__init__(config)  # FlowConfig checked the variant, dequantization and shape
        c = config
        C, H, W = c.shape
        self.dims = C * H * W  # D
        self.logit = Logit(c.alpha)
        steps = lambda ch, masks: [m for mask in masks
                                   for m in flow_step(c.variant, ch, c.hidden, mask, c.dropout)]
        stages = [steps(C, [f"checker{k % 2}" for k in range(c.full_res_steps)])]
        masks = ["channel0", "channel1"] if c.variant == "glow" else [
            "checker0", "channel0", "checker1", "channel1"]
        self.z_shapes = []  # the shape of each factored-out z, in order, then the last
        for scale in range(c.scales):
            C, H, W = 4 * C, H // 2, W // 2  # squeeze
            stages.append([Squeeze()] + steps(C, [masks[k % len(masks)] for k in range(c.steps)]))
            if scale < c.scales - 1:  # factor out half the channels
                self.z_shapes.append((C // 2, H, W))
                C -= C // 2
        self.z_shapes.append((C, H, W))
        self.stages = nn.ModuleList(nn.ModuleList(s) for s in stages)
        self.dequantizer = (VariationalDequantizer(c.shape, c.levels, c.deq_hidden, c.deq_steps)
                            if c.dequantization == "variational" else UniformDequantizer())

    # --- the bijection y <-> z -------------------------------------------------------
    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y: (B, C, H, W) in (0, 1) -> z (B, D) and log|det dz/dy| (B,)."""
        h, logdet = self.logit(y, y.new_zeros(len(y)))
        zs = []
        for i, stage in enumerate(self.stages):
            for layer in stage:
                h, logdet = layer(h, logdet)
            if 0 < i < len(self.stages) - 1:  # factor out half the channels
                k = self.z_shapes[i - 1][0]
                zs.append(h[:, :k].flatten(1))  # (B, k H W)
                h = h[:, k:]
        return torch.cat(zs + [h.flatten(1)], 1), logdet  # (B, D), (B,)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, D) -> y (B, C, H, W): the exact inverse of forward."""
        parts = z.split([math.prod(s) for s in self.z_shapes], 1)
        h = parts[-1].view(len(z), *self.z_shapes[-1])
        for i in reversed(range(len(self.stages))):
            if 0 < i < len(self.stages) - 1:
                h = torch.cat([parts[i - 1].view(len(z), *self.z_shapes[i - 1]), h], 1)
            for layer in reversed(self.stages[i]):
                h = layer.inverse(h)
        return self.logit.inverse(h)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Exact log-density of y in (0, 1)^D: log N(f(y)) + log|det df/dy|, (B,)."""
        z, logdet = self(y)
        return normal_log_prob(z) + logdet

    def log_weights(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """log p(x + u) - log q(u|x), one u ~ q(u|x) per image: (B,), a lower bound on log P(x)."""
        x = x.to(self._like())  # integer levels as floats, on the model's device
        u, log_q = self.dequantizer(x, generator)
        L = self.config.levels
        # p_v(x + u) = p_y((x + u) / L) / L^D: the change of variables of the 1/L scaling
        return self.log_prob((x + u) / L) - self.dims * math.log(L) - log_q

    def _like(self) -> torch.Tensor:
        """A parameter, for the model's device and dtype."""
        return next(self.parameters())

    # --- the contract --------------------------------------------------------------
    def loss(self, batch) -> dict[str, torch.Tensor]:
        nll = -self.log_weights(batch[0]).mean()  # -E_q[log p(x + u) - log q(u|x)] >= -log P(x)
        return {"loss": nll, "nll": nll, "bpd": nll / (self.dims * math.log(2))}

    @torch.no_grad()
    def nll(self, batch, k: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Upper bound on -log P(x) in nats per image, (B,); k > 1: the importance-weighted one,
        -log (1/k) sum_i p(x + u_i) / q(u_i|x)."""
        x, log_w = batch[0], []
        chunk = max(1, 1024 // len(x))  # about 1k images per pass
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            xs = x.repeat(m, *[1] * (x.dim() - 1))  # (m B, C, H, W)
            log_w.append(self.log_weights(xs, generator).view(m, len(x)))
        return -(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))  # (B,)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0):
        """n images (n, C, H, W) in [0, 1] on the data's levels: z ~ N(0, T^2 I), x = floor(L y)."""
        z = torch.randn(n, self.dims, generator=generator).to(self._like())  # (n, D)
        L = self.config.levels
        return (self.inverse(z * temperature) * L).floor().clamp(0, L - 1) / (L - 1)

    @torch.no_grad()
    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> z (B, D), dequantized at the bin centres (u = 1/2)."""
        L = self.config.levels
        x01 = x01.to(self._like())
        return self((x01 * (L - 1) + 0.5) / L)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> images in [0, 1] (continuous); decode(encode(x)) = x."""
        L = self.config.levels
        return ((self.inverse(z) * L - 0.5) / (L - 1)).clamp(0, 1).view(-1, *self.config.shape)
