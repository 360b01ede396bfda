"""Layers that several gentools models share: masked 2-D and causal 1-D convolutions.

Who uses what:
- `MaskedConv2d` (with `pixel_mask`): the gated PixelCNN (`models/pixelcnn.py`) builds its
  vertical and horizontal stacks from it (van den Oord et al. 2016, "Conditional Image
  Generation with PixelCNN Decoders", https://arxiv.org/abs/1606.05328); the plain PixelCNN
  "A"/"B" masks (van den Oord et al. 2016, https://arxiv.org/abs/1601.06759) are the "full"
  region.
- `CausalConv1d`: WaveNet's dilated causal convolutions (van den Oord et al. 2016,
  https://arxiv.org/abs/1609.03499), and the causal-conv ARM baseline in
  `benchmarks/pixelcnn.py`.
- The discretized likelihoods of grey levels: `logistic_mixture_log_prob` (PixelCNN and the
  VAE's "logistic" decoder) and `discretized_gaussian_log_prob` (the VAE's "gaussian" decoder
  and the diffusion model's decoder term with output="direct").

Both keep the output the size of the input and never look ahead in raster / time order.
A kernel position that a mask zeroes for good is not stored at all: `MaskedConv2d` keeps
only the bounding box of its mask and pads the input asymmetrically (a negative pad crops,
which is how a strictly-above or strictly-left region becomes a one-pixel shift), so a
vertical-stack 3x3 kernel costs a 2x3 convolution and a horizontal one a 1x2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REGIONS = ("full", "vertical", "horizontal")


def pixel_mask(kernel_size: tuple[int, int], region: str, include_centre: bool) -> torch.Tensor:
    """A 0/1 mask (kh, kw) over a kernel centred on pixel (kh // 2, kw // 2).

    region "full": every row above the centre, and the centre row left of the centre (the
        PixelCNN mask: "A" without the centre, "B" with it).
    region "vertical": the rows above the centre, all columns; with the centre, the whole
        centre row too (the vertical stack: its features at row r must see only rows < r,
        which its first layer ensures by excluding the centre row).
    region "horizontal": the centre row only, left of the centre (and the centre).
    """
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kernel_size}")
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    ci, cj = kh // 2, kw // 2
    mask = torch.zeros(kh, kw)
    if region in ("full", "vertical"):
        mask[:ci] = 1.0  # rows above the centre
    if region == "vertical" and include_centre:
        mask[ci] = 1.0  # the whole centre row
    if region in ("full", "horizontal"):
        mask[ci, :cj] = 1.0  # left of the centre
        mask[ci, cj] = float(include_centre)
    if not mask.any():
        raise ValueError(f"the {region!r} mask of a {kernel_size} kernel is empty")
    return mask


class MaskedConv2d(nn.Module):
    """A 2-D convolution that only sees the pixels its `pixel_mask` allows; same output size.

    in_channels, out_channels: as nn.Conv2d. kernel_size: odd int or (kh, kw).
    region, include_centre: see `pixel_mask`. The weight is stored cropped to the mask's
    bounding box; a mask that is not all ones on that box (the "full" region) multiplies it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        region: str = "full",
        include_centre: bool = True,
        bias: bool = True,
    ):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        mask = pixel_mask((kh, kw), region, include_centre)
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        mask = mask[r0 : r1 + 1, c0 : c1 + 1]  # (kh', kw'): the bounding box
        self.conv = nn.Conv2d(in_channels, out_channels, tuple(mask.shape), bias=bias)
        # F.pad order (left, right, top, bottom); a negative value crops (a shift)
        self.pad = (kw // 2 - c0, c1 - kw // 2, kh // 2 - r0, r1 - kh // 2)
        self.register_buffer("mask", mask if not mask.all() else None, persistent=False)
        self.region, self.include_centre = region, include_centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight if self.mask is None else self.conv.weight * self.mask
        return F.conv2d(F.pad(x, self.pad), w, self.conv.bias)  # (B, out, H, W)


class CausalConv1d(nn.Module):
    """A dilated 1-D convolution whose output at t sees inputs t - (k-1)d .. t only.

    include_current=False (the first layer of an autoregressive model) shifts the window
    one step back, to t - 1 - (k-1)d .. t - 1. Input and output are (B, C, T).
    `receptive_field` = 1 + (k - 1) * dilation time steps (the same count when shifted).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        include_current: bool = True,
        bias: bool = True,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.receptive_field = 1 + (kernel_size - 1) * dilation  # R = 1 + (k - 1) d
        shift = 0 if include_current else 1
        self.pad = (self.receptive_field - 1 + shift, -shift)  # left pad, crop `shift` on the right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))  # (B, out, T)


# --- discretized Gaussian ------------------------------------------------------------------------


def discretized_gaussian_log_prob(x: torch.Tensor, mean, std, levels: int, low: float = -1.0,
                                  high: float = 1.0) -> torch.Tensor:
    """log P(x) per element, x on the grid of `levels` values from `low` to `high`: the mass of
    N(mean, std^2) on x's bin, P(x) = Phi((x + h - mean) / std) - Phi((x - h - mean) / std) with
    h half a bin, the two outer bins open to -inf and +inf, so P sums to 1 over the levels."""
    half = (high - low) / (2 * (levels - 1))  # h
    normal = torch.distributions.Normal(mean, std)
    upper = torch.where(x > high - half, torch.ones_like(mean), normal.cdf(x + half))
    lower = torch.where(x < low + half, torch.zeros_like(mean), normal.cdf(x - half))
    return torch.log((upper - lower).clamp_min(1e-12))


# --- discretized logistic mixture (PixelCNN++) -------------------------------------------------


def logistic_mixture_log_prob(x: torch.Tensor, params: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(x) under a mixture of K discretized logistics (PixelCNN++, Salimans et al. 2017,
    https://arxiv.org/abs/1701.05517). Level x has the bin [c - h, c + h] around its centre
    c = 2x / (levels - 1) - 1 in [-1, 1], h half a bin; the two end bins are open to -inf and
    +inf, so P sums to exactly 1 over the levels.

    x: (...) integer levels. params: (..., 3K): mixture logits, means, log-scales.
    Returns (...) log-probabilities in nats.
    """
    logit_pi, mu, log_s = params.chunk(3, dim=-1)  # (..., K) each
    inv_s = torch.exp(-log_s.clamp(min=-7.0))  # 1 / s
    x = x.unsqueeze(-1)  # (..., 1)
    c = 2 * x.to(params.dtype) / (levels - 1) - 1  # bin centre
    h = 1.0 / (levels - 1)
    plus, minus = inv_s * (c + h - mu), inv_s * (c - h - mu)  # (..., K)
    # sigma(p) - sigma(m) = sigma(p) sigma(-m) (1 - e^(m - p)), and m - p = -2h / s
    inner = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(-2 * h * inv_s))
    log_p = torch.where(x == 0, F.logsigmoid(plus),  # P(x <= c + h)
                        torch.where(x == levels - 1, F.logsigmoid(-minus), inner))  # P(x >= c - h)
    return torch.logsumexp(log_p + F.log_softmax(logit_pi, dim=-1), dim=-1)


def logistic_mixture_sample(params: torch.Tensor, levels: int, temperature: float = 1.0,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw levels (...) from the mixture `params` (..., 3K) of `logistic_mixture_log_prob`.

    temperature divides the mixture logits and multiplies every scale s (0: the centre of
    the most likely component). Uniforms come from `generator` on the CPU.
    """
    logit_pi, mu, log_s = params.chunk(3, dim=-1)  # (..., K) each
    K = logit_pi.shape[-1]
    u = torch.rand(*params.shape[:-1], K + 1, generator=generator).to(params.device)
    u = u.clamp(1e-6, 1 - 1e-6)
    gumbel = -torch.log(-torch.log(u[..., :K]))  # (..., K)
    k = (logit_pi + temperature * gumbel).argmax(-1, keepdim=True)  # k ~ softmax(logit_pi / T)
    m = mu.gather(-1, k)[..., 0]
    s = log_s.clamp(min=-7.0).gather(-1, k)[..., 0].exp()
    v = m + temperature * s * (torch.log(u[..., K]) - torch.log1p(-u[..., K]))  # + s * logistic
    return ((v + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1).long()
