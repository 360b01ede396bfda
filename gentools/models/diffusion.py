"""Denoising diffusion (Ho et al. 2020, https://arxiv.org/abs/2006.11239) and flow matching
(Lipman et al. 2023, https://arxiv.org/abs/2210.02747; rectified flow, Liu et al. 2023,
https://arxiv.org/abs/2209.03003) on one denoising network.

DDPM ("ddpm"): a fixed chain q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) gives in
closed form q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 - beta_s).
Training minimises Ho's L_simple, E ||eps - eps_theta(x_t, t)||^2. The reverse model
p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) gives the variational bound
-log P(x_0) <= L_T + sum_{t=2}^T L_{t-1} + L_0: L_T = KL(q(x_T|x_0) || N(0, I)),
L_{t-1} = KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t)), L_0 = -log P(x_0 | x_1) a distribution over
the data's grey levels, so `nll` bounds the probability of the discrete images.

Samplers: DDIM (Song et al. 2021, https://arxiv.org/abs/2010.02502) on any subset of the T steps,
deterministic at eta = 0 (and invertible: `encode`), ancestral DDPM at eta = 1 with all T steps.
Classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598): labels are
dropped to a null class in training; sampling uses x0 = x0(null) + w (x0(y) - x0(null)).

Flow matching ("flow"): on the straight path x_t = (1 - t) x_0 + t eps the velocity is
v = eps - x_0; the loss is E ||v - v_theta(x_t, t)||^2, and sampling integrates dx/dt = v_theta
from t = 1 to 0 with Euler or Heun steps.

NOTE: the network does not output eps or v (unless output="direct"). It outputs logits over the
  grey levels of each pixel, and adds the exact log-likelihood of each level v given the noisy
  pixel, log N(x_t; a_t v, s_t^2) for x_t = a_t x_0 + s_t eps, before the softmax; x0_hat is the
  mean level and eps_hat = (x_t - a_t x0_hat) / s_t (v_hat = (x_t - x0_hat) / t). At low noise the
  likelihood term pins x0_hat to the right level, which the bound's many small-t terms need: on
  the digits the bound fell from 218 to 103 nats at equal training (benchmarks/diffusion.py,
  measured with an earlier estimator that drew one t per stratum for all images at once).
  The softmax over categories follows Dieleman et al. 2022 (https://arxiv.org/abs/2211.15089);
  the same categorical is the decoder P(x_0 | x_1).
NOTE: images are scaled to [-1, 1]; samples are put on the data's levels at the end.
NOTE: the network is a residual MLP on the flattened pixels, or a two-resolution U-Net. On 8x8
  digits the MLP gave the better samples per CPU second and the U-Net the tighter bound (the
  design table in benchmarks/diffusion.py); the default size is the MLP.
NOTE: evaluation and sampling use an exponential moving average of the weights (`ema`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gentools.models.base import GenerativeModel


@dataclass
class DiffusionConfig:
    shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W) of the images
    levels: int = 17  # discrete grey levels of the data (17 for digits, 256 for 8-bit)
    objective: str = "ddpm"  # "ddpm" (noise prediction, variational bound) or "flow" (matching)
    output: str = (
        "levels"  # "levels": logits per grey level + its exact likelihood; "direct": eps or v
    )
    network: str = "mlp"  # "mlp" (residual MLP on flattened pixels) or "unet" (conv U-Net)
    width: int = 256  # hidden units of the MLP, or channels of the U-Net's first level
    depth: int = 3  # residual blocks of the MLP, or of each U-Net level
    timesteps: int = 1000  # T, the steps of the DDPM forward chain
    schedule: str = "cosine"  # beta schedule: "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    variance: str = (
        "posterior"  # reverse variance sigma_t^2: "beta" (beta_t) or "posterior" (beta~_t)
    )
    num_classes: int = 10  # > 0: class-conditional with a null class for guidance
    label_dropout: float = 0.2  # probability of training on the null label instead
    ema: float = 0.995  # decay of the weight average used for evaluation (0: none)
    dropout: float = 0.0  # dropout inside the residual blocks


# --- noise schedules ------------------------------------------------------------------------


def alpha_bars(schedule: str, T: int) -> torch.Tensor:
    """abar_t for t = 0..T (abar_0 = 1), float64: (T + 1,)."""
    if schedule == "linear":
        scale = 1000 / T  # Ho et al.'s 1e-4 .. 0.02 at T = 1000, stretched for other T
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0)  # abar_t = prod_{s<=t} (1 - beta_s)
    elif schedule == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2)
        abar = (f / f[0]).pow(2)[1:]  # abar_t = f(t) / f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)
        betas = (1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])).clamp(
            max=0.999
        )
        abar = torch.cumprod(1 - betas, 0)  # re-derived from the clipped betas
    else:
        raise ValueError(f"unknown schedule {schedule!r}: use linear or cosine")
    return torch.cat([torch.ones(1, dtype=torch.float64), abar])


def gaussian_kl(mu1, var1, mu2, var2) -> torch.Tensor:
    """KL(N(mu1, var1) || N(mu2, var2)) per element: 1/2 (log v2/v1 + (v1 + (m1-m2)^2)/v2 - 1)."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)


def discretized_gaussian_log_prob(x: torch.Tensor, mean, std, levels: int) -> torch.Tensor:
    """log P(x) per element, x on the grid of `levels` values in [-1, 1]: the mass of N(mean, std^2)
    on x's bin of width 2/(levels-1), the two outer bins open to -inf and +inf."""
    half = 1.0 / (levels - 1)
    normal = torch.distributions.Normal(mean, std)
    upper = torch.where(x > 1 - half, torch.ones_like(mean), normal.cdf(x + half))
    lower = torch.where(x < -1 + half, torch.zeros_like(mean), normal.cdf(x - half))
    return torch.log((upper - lower).clamp_min(1e-12))


def flow_matching_loss(velocity, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """E ||v - v_theta(x_t, t)||^2 per example on the straight path; t: (B,) in [0, 1]."""
    tb = t.view(-1, *[1] * (x0.dim() - 1))
    xt = (1 - tb) * x0 + tb * noise  # x_t = (1 - t) x_0 + t eps
    return (velocity(xt, t) - (noise - x0)).pow(2).flatten(1).mean(1)  # v = eps - x_0


# --- the denoising networks -------------------------------------------------------------------


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


# --- the model ----------------------------------------------------------------------------------


class Diffusion(GenerativeModel):
    Config = DiffusionConfig
    sizes = {
        "tiny": dict(network="mlp", width=32, depth=1, timesteps=50),
        "default": dict(network="mlp", width=256, depth=3, timesteps=1000),
        "gpu": dict(network="unet", width=128, depth=2, timesteps=1000),
    }

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        c = config
        if c.objective not in ("ddpm", "flow"):
            raise ValueError(f"unknown objective {c.objective!r}: use ddpm or flow")
        if c.output not in ("levels", "direct"):
            raise ValueError(f"unknown output {c.output!r}: use levels or direct")
        if c.variance not in ("beta", "posterior"):
            raise ValueError(f"unknown variance {c.variance!r}: use beta or posterior")
        nets = {"mlp": DenoiserMLP, "unet": DenoiserUNet}
        if c.network not in nets:
            raise ValueError(f"unknown network {c.network!r}: use mlp or unet")
        self.dims = math.prod(c.shape)  # D
        self.net = nets[c.network](c)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False) if c.ema else None
        abar = alpha_bars(c.schedule, c.timesteps)  # (T + 1,) float64
        self.register_buffer("grid", torch.linspace(-1, 1, c.levels), persistent=False)
        self.register_buffer("abar", abar.float(), persistent=False)
        self.register_buffer("abar64", abar, persistent=False)

    def configure_optimizers(self, lr: float, weight_decay: float):
        """AdamW over the network; the weight average is not optimised."""
        return {"main": torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, batch, optimize):
        out = self.loss(batch)
        optimize(out["loss"])
        if self.ema_net is not None:  # theta_ema <- d theta_ema + (1 - d) theta
            with torch.no_grad():
                for pe, p in zip(self.ema_net.parameters(), self.net.parameters(), strict=True):
                    pe.lerp_(p, 1 - self.config.ema)
        return out

    @property
    def averaged_weights(self) -> bool:
        return self.ema_net is not None

    def denoiser(self) -> nn.Module:
        """The trained network while training, its weight average in eval mode."""
        return self.net if self.training or self.ema_net is None else self.ema_net

    # --- data and labels -------------------------------------------------------------------
    def to_signal(self, x: torch.Tensor) -> torch.Tensor:
        """Integer levels (B, C, H, W) -> floats in [-1, 1]."""
        return 2 * x.float() / (self.config.levels - 1) - 1

    def to_levels(self, x: torch.Tensor) -> torch.Tensor:
        """Floats in [-1, 1] -> the nearest level, returned in [0, 1] (the form of the data)."""
        L = self.config.levels - 1
        return ((x.clamp(-1, 1) + 1) / 2 * L).round() / L

    def labels(self, y, n: int, device) -> torch.Tensor:
        """y (n,) class indices; None or -1 entries mean the null label (unconditional)."""
        null = self.config.num_classes
        if y is None or not null:
            return torch.full((n,), null, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device).long().expand(n)
        return torch.where(y < 0, torch.full_like(y, null), y)

    def scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = a x_0 + s eps at time t in [0, 1]: (a, s) shaped (B, 1, 1, 1)."""
        t = t.view(-1, 1, 1, 1)
        if self.config.objective == "flow":
            return 1 - t, t  # x_t = (1 - t) x_0 + t eps
        ab = self.abar[(t * self.config.timesteps).round().long()]
        return ab.sqrt(), (1 - ab).sqrt()  # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps

    def level_log_probs(self, x, t, y) -> torch.Tensor:
        """log p(x_0 = v | x_t) for each level v: (B, C, H, W, L), the network's logits plus the
        exact per-pixel log-likelihood log N(x_t; a v, s^2), normalised over the levels."""
        if self.config.output != "levels":
            raise ValueError("level probabilities need output='levels'")
        a, s = self.scales(t)
        grid = self.grid.to(x.dtype)  # (L,) the levels in [-1, 1]
        loglik = -(x[..., None] - a[..., None] * grid).pow(2) / (2 * s[..., None] ** 2)
        return (self.denoiser()(x, t, y) + loglik).log_softmax(-1)

    def predict_x0(self, x, t, y) -> torch.Tensor:
        """The predicted x_0 (B, C, H, W) from x_t at time t (B,): E[x_0 | x_t] over the levels,
        or from a direct eps (x_0 = (x_t - s eps) / a) or v (x_0 = x_t - t v)."""
        if self.config.output == "levels":
            return self.level_log_probs(x, t, y).exp() @ self.grid.to(x.dtype)
        out = self.denoiser()(x, t, y)[..., 0]  # (B, C, H, W)
        a, s = self.scales(t)
        return x - s * out if self.config.objective == "flow" else (x - s * out) / a

    def denoise(self, x, t, y, guidance: float = 1.0) -> torch.Tensor:
        """The predicted x_0 with classifier-free guidance w: x0(null) + w (x0(y) - x0(null))."""
        null = self.config.num_classes
        if guidance == 1.0 or not null or bool((y == null).all()):
            return self.predict_x0(x, t, y)
        x2, t2, y2 = torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)])
        cond, uncond = self.predict_x0(x2, t2, y2).chunk(2)
        return uncond + guidance * (cond - uncond)

    # --- the contract -------------------------------------------------------------------------
    def loss(self, batch) -> dict[str, torch.Tensor]:
        c = self.config
        x0 = self.to_signal(batch[0])  # (B, C, H, W) in [-1, 1]
        B = len(x0)
        y = self.labels(batch[1] if len(batch) > 1 else None, B, x0.device)
        if c.num_classes and self.training:  # drop labels to the null class for guidance
            y = torch.where(torch.rand(B, device=x0.device) < c.label_dropout, c.num_classes, y)
        noise = torch.randn_like(x0)
        if c.objective == "flow":
            t = 1e-3 + (1 - 1e-3) * torch.rand(B, device=x0.device)
            velocity = lambda xt, tt: (xt - self.denoise(xt, tt, y)) / tt.view(-1, 1, 1, 1)
            mse = flow_matching_loss(velocity, x0, noise, t).mean()  # v = (x_t - x_0) / t
        else:
            t = torch.randint(1, c.timesteps + 1, (B,), device=x0.device) / c.timesteps
            a, s = self.scales(t)
            xt = a * x0 + s * noise  # q(x_t|x_0) in closed form
            eps = (xt - a * self.denoise(xt, t, y)) / s  # eps = (x_t - a x_0) / s
            mse = (eps - noise).pow(2).mean()  # Ho's L_simple
        return {"loss": mse, "mse": mse}

    # --- the variational bound (DDPM) --------------------------------------------------------
    def posterior(self, x0, xt, t: int):
        """q(x_{t-1} | x_t, x_0) = N(mean, var): the mean (like x0) and the variance (scalar)."""
        ab, ab_prev = self.abar64[t], self.abar64[t - 1]
        beta = 1 - ab / ab_prev  # beta_t
        # mu~ = (sqrt(abar_{t-1}) beta_t x_0 + sqrt(alpha_t) (1 - abar_{t-1}) x_t) / (1 - abar_t)
        mean = (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * xt) / (1 - ab)
        return mean, beta * (1 - ab_prev) / (
            1 - ab
        )  # beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t

    def reverse_variance(self, t: int) -> torch.Tensor:
        """sigma_t^2 of p(x_{t-1} | x_t): beta_t or beta~_t (at t = 1 both use beta_1)."""
        beta = 1 - self.abar64[t] / self.abar64[t - 1]
        if self.config.variance == "beta" or t == 1:
            return beta
        return beta * (1 - self.abar64[t - 1]) / (1 - self.abar64[t])

    def bound_term(self, x0, y, t: int) -> torch.Tensor:
        """L_{t-1} per image, nats (B,): the KL for t >= 2; for t = 1 the decoder
        -log p(x_0 | x_1), the categorical over the levels that `level_log_probs` gives."""
        noise = torch.randn_like(x0)
        ab = self.abar64[t]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise  # x_t ~ q(x_t | x_0)
        tt = torch.full((len(x0),), t / self.config.timesteps, device=x0.device)
        if t == 1 and self.config.output == "levels":
            levels = ((x0 + 1) / 2 * (self.config.levels - 1)).round().long()  # (B, C, H, W)
            logp = self.level_log_probs(xt.to(self.grid.dtype), tt, y).gather(-1, levels[..., None])
            return -logp.double().flatten(1).sum(1)
        mu, _ = self.posterior(
            self.denoise(xt.to(self.grid.dtype), tt, y).double(), xt, t
        )  # mu_theta(x_t, t)
        if t == 1:  # a direct output: the discretized Gaussian N(mu, beta_1) over the levels
            std = self.reverse_variance(1).sqrt()
            logp = discretized_gaussian_log_prob(x0, mu, std, self.config.levels)
            return -logp.flatten(1).sum(1)
        mean_q, var_q = self.posterior(x0, xt, t)
        return gaussian_kl(mean_q, var_q, mu, self.reverse_variance(t)).flatten(1).sum(1)

    def prior_term(self, x0) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per image (B,)."""
        ab = self.abar64[-1]
        return (
            gaussian_kl(ab.sqrt() * x0, 1 - ab, torch.zeros_like(x0), torch.ones(()))
            .flatten(1)
            .sum(1)
        )

    @torch.no_grad()
    def nll(
        self,
        batch,
        draws: int = 0,
        conditional: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Upper bound on -log P(x) in nats per image (B,).

        conditional=False: the bound of the unconditional model (the null label).
        conditional=True: -log P(x) <= -log p(y) - log P(x|y) for the image's label y, with
        p(y) uniform: a bound on the marginal P(x) = sum_y p(y) P(x|y) of the conditional model.
        draws = 0: every one of the T terms. draws = K > 0: an unbiased estimate that draws
        K of the T - 1 KL terms per image, one from each of K equal strata of t = 2..T, and
        weights each by its stratum's size. The prior term L_T is exact; the decoder term L_0,
        like each KL term, is a one-sample estimate: one draw of x_1 ~ q(x_1 | x_0) per image.
        """
        if self.config.objective != "ddpm":
            raise ValueError("the variational bound is defined for the ddpm objective")
        T = self.config.timesteps
        x0 = self.to_signal(batch[0]).double()
        y = self.labels(batch[1] if conditional else None, len(x0), x0.device)
        total = self.prior_term(x0) + self.bound_term(x0, y, 1)
        if conditional:
            total = total + math.log(self.config.num_classes)  # -log p(y), p(y) = 1/classes
        if not draws:
            return total + sum(self.bound_term(x0, y, t) for t in range(2, T + 1))
        edges = torch.linspace(2, T + 1, draws + 1).round().long().tolist()
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            if hi > lo:  # each image draws its own t in [lo, hi)
                ts = torch.randint(lo, hi, (len(x0),), generator=generator)  # (B,)
                for t in ts.unique().tolist():
                    rows = (ts == t).nonzero().squeeze(1).to(x0.device)  # images that drew t
                    term = self.bound_term(x0[rows], y[rows], t)  # (rows,)
                    total = total.index_add(0, rows, (hi - lo) * term)  # stratum weight x term
        return total

    # --- sampling --------------------------------------------------------------------------------
    def time_grid(self, steps: int) -> list[float]:
        """Times from 1 (noise) down to 0 (data) in `steps` steps; DDPM times sit on t/T."""
        if self.config.objective == "flow":
            return torch.linspace(1, 0, steps + 1).tolist()
        T = self.config.timesteps
        ts = torch.linspace(T, 0, steps + 1).round().long().unique_consecutive()
        return (ts.double() / T).tolist()

    def step(
        self,
        x,
        t: float,
        s: float,
        y,
        guidance: float = 1.0,
        eta: float = 0.0,
        generator=None,
        sampler: str = "heun",
    ):
        """x at time t -> (x at time s, the predicted x_0); s < t samples, s > t encodes.

        DDIM: x_s = a_s x_0 + sqrt(s_s^2 - sigma^2) eps + sigma z, eps = (x_t - a_t x_0) / s_t,
        with sigma from eta (DDPM only). For flow this deterministic step is exactly Euler's on
        dx/dt = v = eps - x_0; `sampler="heun"` averages v at both ends (Heun)."""
        full = lambda u: torch.full((len(x),), u, device=x.device)
        a_s, s_s = self.scales(full(s))
        r = t if t > 0 else s  # leaving t = 0 (encoding), the network is read at s
        a_r, s_r = self.scales(full(r))
        x0 = self.denoise(x, full(r), y, guidance).clamp(-1, 1)  # (a direct eps may overshoot)
        eps = (x - a_r * x0) / s_r  # the noise that x_0 implies
        if t == 0:
            x0 = x
        if s == 0:
            return x0, x0
        sigma = torch.zeros_like(s_s)
        if eta > 0 and self.config.objective == "ddpm":
            ab_t, ab_s = self.scales(full(t))[0] ** 2, a_s**2
            # sigma = eta sqrt((1 - abar_s)/(1 - abar_t)) sqrt(1 - abar_t/abar_s)
            sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).clamp_min(0).sqrt()
        x_s = a_s * x0 + (s_s**2 - sigma**2).sqrt() * eps
        if eta > 0:
            x_s = x_s + sigma * torch.randn(x.shape, generator=generator).to(x.device)
        if self.config.objective == "flow" and sampler == "heun" and 0 < t:
            x0_s = self.denoise(x_s, full(s), y, guidance)
            v_s = (x_s - x0_s) / s  # v = (x_t - x_0) / t
            x_s = x + (s - t) * ((eps - x0) + v_s) / 2  # Heun: the mean of both slopes
        return x_s, x0

    @torch.no_grad()
    def trajectory(
        self,
        noise,
        labels=None,
        steps: int = 50,
        guidance: float = 1.0,
        eta: float = 0.0,
        generator=None,
        sampler: str = "heun",
    ):
        """From noise (n, C, H, W) down to data: times (steps + 1,), x_t and predicted x_0,
        each (steps + 1, n, C, H, W) in [-1, 1] (the first x_0 is the prediction at t = 1)."""
        was_training = self.training
        self.eval()
        x, y = noise, self.labels(labels, len(noise), noise.device)
        grid = self.time_grid(steps)
        xs, x0s = [x], []
        for t, s in zip(grid[:-1], grid[1:], strict=True):
            x, x0 = self.step(x, t, s, y, guidance, eta, generator, sampler)
            xs.append(x)
            x0s.append(x0)
        self.train(was_training)
        return grid, torch.stack(xs), torch.stack([x0s[0], *x0s])

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        steps: int = 100,
        labels=None,
        guidance: float = 1.0,
        eta: float = 0.0,
        noise=None,
        sampler: str = "heun",
    ) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1] on the data's levels.

        steps: sampling steps (DDIM, or ODE steps for flow). eta: DDIM's noise (0
        deterministic, 1 ancestral). labels: (n,) classes or None (unconditional); guidance:
        the classifier-free guidance scale. noise: the starting x_1 (n, C, H, W), else drawn.
        """
        device = self.abar.device
        if noise is None:
            noise = torch.randn(n, *self.config.shape, generator=generator)
        _, xs, _ = self.trajectory(
            noise.to(device), labels, steps, guidance, eta, generator, sampler
        )
        return self.to_levels(xs[-1])

    @torch.no_grad()
    def encode(self, images, labels=None, steps: int = 100) -> torch.Tensor:
        """The deterministic map back from images (n, C, H, W) in [0, 1] to noise, the reverse
        of `sample` with eta = 0 (DDIM inversion; for flow, Euler steps of the ODE forward)."""
        was_training = self.training
        self.eval()
        x = 2 * images.to(self.abar.device).float() - 1
        y = self.labels(labels, len(x), x.device)
        grid = self.time_grid(steps)[::-1]  # 0 -> 1
        for t, s in zip(grid[:-1], grid[1:], strict=True):
            x, _ = self.step(x, t, s, y, sampler="euler")
        self.train(was_training)
        return x
