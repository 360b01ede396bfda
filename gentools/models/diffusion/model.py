"""The diffusion model: one denoising network, trained on a noise path, sampled by stepping it.

x_t = a_t x_0 + s_t eps moves the data x_0 (t = 0) to noise (t = 1) along a path (`paths.py`):
DDPM's chain (Ho et al. 2020, https://arxiv.org/abs/2006.11239) or flow matching's straight
line (Lipman et al. 2023, https://arxiv.org/abs/2210.02747). The network (`networks.py`) predicts
x_0 from x_t; the path turns that into its loss, and the samplers (`samplers.py`) into steps
from noise to data. The DDPM also bounds the likelihood (`bound.py`).

Classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598): labels are
dropped to a null class in training; sampling uses x0 = x0(null) + w (x0(y) - x0(null)).

NOTE: the network does not output eps or v (unless output="direct" or "v"). It outputs logits
  over the grey levels of each pixel, and adds the exact log-likelihood of each level v given
  the noisy pixel, log N(x_t; a_t v, s_t^2) for x_t = a_t x_0 + s_t eps, before the softmax;
  x0_hat is the mean level and eps_hat = (x_t - a_t x0_hat) / s_t (v_hat = (x_t - x0_hat) / t).
  At low noise the likelihood term pins x0_hat to the right level, which the bound's many
  small-t terms need: on the digits the bound fell from 218 to 103 nats at equal training
  (benchmarks/diffusion.py, measured with an earlier estimator that drew one t per stratum
  for all images at once).
  The softmax over categories follows Dieleman et al. 2022 (https://arxiv.org/abs/2211.15089);
  the same categorical is the decoder P(x_0 | x_1).
NOTE: images are scaled to [-1, 1]; samples are put on the data's levels at the end.
NOTE: evaluation and sampling use an exponential moving average of the weights (`ema`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from gentools.data.images import to_unit
from gentools.models.base import GenerativeModel
from gentools.models.diffusion.bound import VariationalBound
from gentools.models.diffusion.networks import NETWORKS
from gentools.models.diffusion.paths import DDPMPath, FlowPath
from gentools.models.diffusion.samplers import ddim_step, heun_step, inversion_step


@dataclass
class DiffusionConfig:
    shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W) of the images
    levels: int = 17  # discrete grey levels of the data (17 for digits, 256 for 8-bit)
    objective: str = "ddpm"  # "ddpm" (noise prediction, variational bound) or "flow" (matching)
    # "levels": logits per grey level + its exact likelihood; "direct": eps (DDPM) or the
    # velocity (flow); "v": v = a eps - s x_0 (Salimans & Ho 2022; the velocity for flow)
    output: str = "levels"
    network: str = "mlp"  # "mlp" (residual MLP on flattened pixels) or "unet" (conv U-Net)
    width: int = 256  # hidden units of the MLP, or channels of the U-Net's first level
    depth: int = 3  # residual blocks of the MLP, or of each U-Net level
    mults: tuple[int, ...] = (1, 2)  # U-Net: channels of each resolution, in units of width
    timesteps: int = 1000  # T, the steps of the DDPM forward chain
    schedule: str = "cosine"  # beta schedule: "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    variance: str = (
        "posterior"  # reverse variance sigma_t^2: "beta" (beta_t) or "posterior" (beta~_t)
    )
    num_classes: int = 10  # > 0: class-conditional with a null class for guidance
    label_dropout: float = 0.2  # probability of training on the null label instead
    ema: float = 0.995  # decay of the weight average used for evaluation (0: none)
    dropout: float = 0.0  # dropout inside the residual blocks

    def __post_init__(self) -> None:
        for field, allowed in [("objective", ("ddpm", "flow")),
                               ("output", ("levels", "direct", "v")),
                               ("variance", ("beta", "posterior")), ("network", ("mlp", "unet")),
                               ("schedule", ("linear", "cosine"))]:
            if getattr(self, field) not in allowed:
                raise ValueError(f"unknown {field} {getattr(self, field)!r}: use "
                                 f"{' or '.join(allowed)}")
        self.mults = tuple(self.mults)  # a list when read back from a checkpoint's JSON
        halvings = 2 ** (len(self.mults) - 1)
        if self.network == "unet" and (len(self.mults) < 2 or self.shape[1] % halvings
                                       or self.shape[2] % halvings):
            raise ValueError(f"a U-Net of {len(self.mults)} resolutions (mults {self.mults}) "
                             f"needs at least 2 and images whose sides divide by {halvings}: "
                             f"got {self.shape[1]}x{self.shape[2]}")


def ema_update(averaged: list, current: list, n_averaged, decay: float) -> None:
    """theta_ema <- d theta_ema + (1 - d) theta, in place: AveragedModel's multi_avg_fn."""
    for pe, p in zip(averaged, current, strict=True):
        pe.lerp_(p, 1 - decay)


def legacy_ema_keys(module, state_dict, prefix, *args) -> None:
    """Read a checkpoint written before the average was an AveragedModel: its weights were
    `ema_net.<name>`, now `ema_net.module.<name>`, and it had averaged at least once."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if not key.startswith(f"{prefix}module.") and key != f"{prefix}n_averaged":
            state_dict[f"{prefix}module.{key[len(prefix):]}"] = state_dict.pop(key)
    state_dict.setdefault(f"{prefix}n_averaged", torch.tensor(1))


def weight_average(net: nn.Module, decay: float) -> AveragedModel:
    """A frozen copy of `net` that `update_parameters(net)` moves towards it after each step."""
    ema = AveragedModel(net, multi_avg_fn=partial(ema_update, decay=decay)).requires_grad_(False)
    ema.n_averaged.fill_(1)  # the copy already holds the first weights: average from step 1 on
    ema.register_load_state_dict_pre_hook(legacy_ema_keys)
    return ema


class Diffusion(VariationalBound, GenerativeModel):
    Config = DiffusionConfig
    sizes = {
        "tiny": dict(network="mlp", width=32, depth=1, timesteps=50),
        "default": dict(network="mlp", width=256, depth=3, timesteps=1000),
        "medium": dict(network="unet", width=16, depth=1, mults=(1, 2, 2), timesteps=1000,
                       output="v", ema=0.99),  # 28x28 on a CPU: 28, 14 and 7 pixels a side
        "gpu": dict(network="unet", width=128, depth=2, timesteps=1000),
    }

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)  # DiffusionConfig checked every choice
        c = config
        self.dims = math.prod(c.shape)  # D
        self.net = NETWORKS[c.network](c)
        self.ema_net = weight_average(self.net, c.ema) if c.ema else None
        self.path = DDPMPath(c.schedule, c.timesteps) if c.objective == "ddpm" else FlowPath()
        self.register_buffer("grid", torch.linspace(-1, 1, c.levels), persistent=False)

    @property
    def abar64(self) -> torch.Tensor:
        """abar_t for t = 0..T in float64 (T + 1,): the DDPM path's, which the bound reads."""
        return self.path.abar64

    def configure_optimizers(self, lr: float, weight_decay: float):
        """AdamW over the network; the weight average is not optimised."""
        return {"main": torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, batch, optimize):
        out = self.loss(batch)
        optimize(out["loss"])
        if self.ema_net is not None:  # theta_ema <- d theta_ema + (1 - d) theta
            self.ema_net.update_parameters(self.net)
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
        return 2 * to_unit(x, self.config.levels) - 1

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

    # --- the prediction of x_0 -----------------------------------------------------------------
    def level_log_probs(self, x, t, y) -> torch.Tensor:
        """log p(x_0 = v | x_t) for each level v: (B, C, H, W, L), the network's logits plus the
        exact per-pixel log-likelihood log N(x_t; a v, s^2), normalised over the levels."""
        if self.config.output != "levels":
            raise ValueError("level probabilities need output='levels'")
        a, s = self.path.scales(t)
        grid = self.grid.to(x.dtype)  # (L,) the levels in [-1, 1]
        loglik = -(x[..., None] - a[..., None] * grid).pow(2) / (2 * s[..., None] ** 2)
        return (self.denoiser()(x, t, y) + loglik).log_softmax(-1)

    def predict_x0(self, x, t, y) -> torch.Tensor:
        """The predicted x_0 (B, C, H, W) from x_t at time t (B,): E[x_0 | x_t] over the levels,
        or from a direct eps (x_0 = (x_t - s eps) / a), velocity (x_0 = x_t - t v) or v."""
        if self.config.output == "levels":
            return self.level_log_probs(x, t, y).exp() @ self.grid.to(x.dtype)
        out = self.denoiser()(x, t, y)[..., 0]  # (B, C, H, W)
        if self.config.output == "v":
            return self.path.x0_from_v(x, out, t)
        return self.path.x0_from_output(x, out, t)

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
        """The path's loss at times t it draws: Ho's L_simple E ||eps - eps_hat||^2 (DDPM) or
        E ||v - v_hat||^2 (flow matching), from the predicted x_0; labels dropped for guidance."""
        c = self.config
        x0 = self.to_signal(batch[0])  # (B, C, H, W) in [-1, 1]
        B = len(x0)
        y = self.labels(batch[1] if len(batch) > 1 else None, B, x0.device)
        if c.num_classes and self.training:  # drop labels to the null class for guidance
            y = torch.where(torch.rand(B, device=x0.device) < c.label_dropout, c.num_classes, y)
        noise = torch.randn_like(x0)  # eps
        t = self.path.draw_t(B, x0.device)  # (B,)
        mse = self.path.loss(lambda xt, tt: self.denoise(xt, tt, y), x0, noise, t)
        return {"loss": mse, "mse": mse}

    # --- sampling --------------------------------------------------------------------------------
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
        each (steps + 1, n, C, H, W) in [-1, 1] (the first x_0 is the prediction at t = 1).
        DDPM takes DDIM steps with noise eta; flow takes Heun's steps, or Euler's (sampler)."""
        was_training = self.training
        self.eval()
        x, y = noise, self.labels(labels, len(noise), noise.device)
        step = heun_step if sampler == "heun" and self.path.heun else ddim_step
        grid = self.path.time_grid(steps)
        xs, x0s = [x], []
        for t, s in zip(grid[:-1], grid[1:], strict=True):
            x, x0 = step(self, x, t, s, y, guidance, eta, generator)
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
        device = self.grid.device
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
        x = 2 * images.to(self.grid.device).float() - 1
        y = self.labels(labels, len(x), x.device)
        grid = self.path.time_grid(steps)[::-1]  # 0 -> 1
        for t, s in zip(grid[:-1], grid[1:], strict=True):
            x = inversion_step(self, x, t, s, y)
        self.train(was_training)
        return x
