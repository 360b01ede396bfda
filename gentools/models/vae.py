"""Variational autoencoder (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114).

An encoder q(z|x) = N(mu(x), diag sigma(x)^2), a standard normal prior p(z), and a
decoder p(x|z) whose form fits the data:

- "categorical": one softmax over the `levels` intensity levels per pixel (digits
  have 17). A proper likelihood of discrete data, so nats are comparable with the
  autoregressive models.
- "gaussian": a discretised Gaussian per pixel with a learned scale: the mass of
  N(mu, sigma^2) on the pixel's bin of width 1/(levels-1), the outer bins open.
- "logistic": a mixture of `mixtures` discretized logistics per pixel (PixelCNN++, Salimans
  et al. 2017), the end bins open: a few numbers per pixel in place of 256 logits on 8-bit data.
- "bernoulli": for binary data; intensities are binarised at one half.

Training maximises the ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)); test NLL uses
the importance-weighted bound of Burda et al. 2016 (https://arxiv.org/abs/1509.00519),
log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i|x)], which tightens as k grows.

NOTE: encoder and decoder are small convolutional nets (two stride-2 stages), where
the paper used one-hidden-layer MLPs: on 1000 training digits an MLP decoder
memorised the training set (train -ELBO 67, val 110), the convolutions do not.
Image height and width must be divisible by 4 (8, 28 and 32 are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gentools.data.images import to_unit
from gentools.models.base import GenerativeModel
from gentools.nn import (
    discretized_gaussian_log_prob,
    logistic_mixture_log_prob,
    logistic_mixture_sample,
)

DECODERS = ("categorical", "gaussian", "logistic", "bernoulli")


@dataclass
class VAEConfig:
    shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W) of the images
    levels: int = 17  # discrete intensity levels of the data (17 for digits, 256 for 8-bit)
    decoder: str = "categorical"  # one of DECODERS ("gaussian" and "logistic" are discretised)
    latent_dim: int = 16  # size of z
    channels: int = 16  # channels of the first conv stage (the second has twice as many)
    beta: float = 1.0  # weight on the KL term (1 = the true ELBO)
    mixtures: int = 3  # components of the "logistic" decoder per pixel

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}: use {', '.join(DECODERS)}")
        if self.shape[1] % 4 or self.shape[2] % 4:
            raise ValueError(f"image height and width must be divisible by 4, got {self.shape}")


def conv_encoder(c_in: int, h: int, hw: tuple[int, int], n_out: int) -> nn.Sequential:
    """(B, C, H, W) -> (B, n_out): two stride-2 convolutions, then a linear layer."""
    return nn.Sequential(
        nn.Conv2d(c_in, h, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(h, h, 4, stride=2, padding=1),
        nn.GELU(),  # (B, h, H/2, W/2)
        nn.Conv2d(h, 2 * h, 4, stride=2, padding=1),
        nn.GELU(),  # (B, 2h, H/4, W/4)
        nn.Flatten(),
        nn.Linear(2 * h * (hw[0] // 4) * (hw[1] // 4), n_out),
    )


def conv_decoder(d: int, h: int, hw: tuple[int, int], c_out: int) -> nn.Sequential:
    """(B, d) -> (B, c_out, H, W): a linear layer, then two stride-2 transposed convolutions."""
    return nn.Sequential(
        nn.Linear(d, 2 * h * (hw[0] // 4) * (hw[1] // 4)),
        nn.GELU(),
        nn.Unflatten(1, (2 * h, hw[0] // 4, hw[1] // 4)),
        nn.ConvTranspose2d(2 * h, h, 4, stride=2, padding=1),
        nn.GELU(),  # (B, h, H/2, W/2)
        nn.ConvTranspose2d(h, h, 4, stride=2, padding=1),
        nn.GELU(),  # (B, h, H, W)
        nn.Conv2d(h, c_out, 3, padding=1),
    )


class VAE(GenerativeModel):
    Config = VAEConfig
    sizes = {
        "tiny": dict(latent_dim=4, channels=8),
        "default": dict(latent_dim=16, channels=16),
        "medium": dict(latent_dim=32, channels=32),  # 28x28 images on a CPU
        "gpu": dict(latent_dim=32, channels=128),
    }

    def __init__(self, config: VAEConfig):
        super().__init__(config)  # VAEConfig checked the decoder and the image shape
        c = config
        self.dims = math.prod(c.shape)  # D = C * H * W
        out_per_pixel = {"categorical": c.levels, "gaussian": 2, "logistic": 3 * c.mixtures,
                         "bernoulli": 1}[c.decoder]
        hw = c.shape[1:]
        self.encoder = conv_encoder(c.shape[0], c.channels, hw, 2 * c.latent_dim)
        self.decoder = conv_decoder(c.latent_dim, c.channels, hw, c.shape[0] * out_per_pixel)
        self.out_per_pixel = out_per_pixel

    # --- the two halves ------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, H, W) in [0, 1] -> posterior mean and log-variance, each (B, d)."""
        h = self.encoder(2 * x - 1)  # inputs centred to [-1, 1]
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def decode_params(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., d) -> decoder outputs (..., D, o), o = outputs per pixel value."""
        (C, H, W), o = self.config.shape, self.out_per_pixel
        p = self.decoder(z.reshape(-1, z.shape[-1]))  # (N, C*o, H, W)
        p = p.view(-1, C, o, H * W).transpose(2, 3).reshape(-1, self.dims, o)  # (N, D, o)
        return p.view(*z.shape[:-1], self.dims, o)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, d) -> the decoder's mean image (B, C, H, W) in [0, 1]."""
        p = self.decode_params(z)
        c = self.config
        if c.decoder == "categorical":
            grid = torch.linspace(0, 1, c.levels, device=z.device)
            mean = p.softmax(-1) @ grid  # E[x] = sum_l p_l * l / (L - 1)
        elif c.decoder == "gaussian":
            mean = p[..., 0].clamp(0, 1)
        elif c.decoder == "logistic":
            logit_pi, mu, _ = p.chunk(3, dim=-1)  # (..., D, K) each, mu in [-1, 1] units
            mean = ((logit_pi.softmax(-1) * mu).sum(-1).clamp(-1, 1) + 1) / 2
        else:
            mean = p[..., 0].sigmoid()
        return mean.view(-1, *c.shape)

    # --- likelihood of the decoder ----------------------------------------------------
    def pixel_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x_d|z) for each pixel value d. x: (B, C, H, W) levels; params: (..., B, D, o)."""
        c = self.config
        x = x.flatten(1).long().expand(*params.shape[:-1])  # (..., B, D)
        if c.decoder == "categorical":
            return params.log_softmax(-1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
        if c.decoder == "logistic":
            return logistic_mixture_log_prob(x, params, c.levels)
        if c.decoder == "bernoulli":
            target = (to_unit(x, c.levels) > 0.5).float()
            return -F.binary_cross_entropy_with_logits(params[..., 0], target, reduction="none")
        # discretised Gaussian: P(x) = Phi((x + h - mu) / s) - Phi((x - h - mu) / s), h = half a bin
        mu, log_s = params[..., 0], params[..., 1].clamp(-7, 2)
        return discretized_gaussian_log_prob(to_unit(x, c.levels), mu, log_s.exp(), c.levels,
                                             low=0.0, high=1.0)

    def log_px_given_z(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = sum_d log p(x_d|z): (..., B)."""
        return self.pixel_log_probs(x, params).sum(-1)

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit(x, self.config.levels)

    # --- the contract ---------------------------------------------------------------
    def loss(self, batch) -> dict[str, torch.Tensor]:
        x = batch[0]  # (B, C, H, W) integer levels
        mu, logvar = self.encode(self._unit(x))
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        recon = -self.log_px_given_z(x, self.decode_params(z)).mean()
        # KL(N(mu, s^2) || N(0, 1)) = 1/2 sum (mu^2 + s^2 - 1 - log s^2)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()
        elbo = -(recon + kl)
        return {
            "loss": recon + self.config.beta * kl,
            "recon": recon,
            "kl": kl,
            "nelbo": -elbo,
            "bpd": -elbo / (self.dims * math.log(2)),
        }

    @torch.no_grad()
    def nll(self, batch, k: int = 1000) -> torch.Tensor:
        """IWAE upper bound on -log p(x) in nats, per example: (B,)."""
        x = batch[0]
        # about 2k decoder passes at once, cache-friendly on a CPU, and at most 2^24 outputs
        # (64 MB): 2k passes of a 256-way softmax over 784 pixels would take 1.6 GB
        per_z = len(x) * self.dims * self.out_per_pixel
        chunk = max(1, min(2048 // len(x), 2**24 // per_z))
        mu, logvar = self.encode(self._unit(x))
        std = (0.5 * logvar).exp()
        log_w = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn(m, *mu.shape, device=mu.device)
            z = mu + eps * std  # (m, B, d)
            log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_p = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_w.append(self.log_px_given_z(x, self.decode_params(z)) + log_p - log_q)
        # log p(x) >= logsumexp_i log w_i - log k
        return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               mean: bool = False) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]; `mean=True` shows the decoder mean instead of a draw."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device) * temperature
        if mean:
            return self.decode(z)
        return self.decode_sample(z, generator)

    def decode_sample(
        self, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw x ~ p(x|z): (B, C, H, W) in [0, 1]."""
        c, p = self.config, self.decode_params(z).cpu()
        if c.decoder == "categorical":
            probs = p.softmax(-1).flatten(0, -2)
            x = to_unit(torch.multinomial(probs, 1, generator=generator), c.levels)  # (N, 1)
        elif c.decoder == "logistic":
            x = to_unit(logistic_mixture_sample(p, c.levels, generator=generator), c.levels)
        elif c.decoder == "bernoulli":
            x = torch.bernoulli(p[..., 0].sigmoid(), generator=generator)
        else:
            noise = torch.randn(p.shape[:-1], generator=generator)
            x = (p[..., 0] + noise * p[..., 1].clamp(-7, 2).exp()).clamp(0, 1)
            x = (x * (c.levels - 1)).round() / (c.levels - 1)
        return x.view(-1, *c.shape).to(z.device)
