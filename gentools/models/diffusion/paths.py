"""The noise paths of the diffusion model: x_t = a_t x_0 + s_t eps, from data (t = 0) to noise.

DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239): a fixed chain
q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) gives in closed form
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 - beta_s), so
a = sqrt(abar_t) and s = sqrt(1 - abar_t) on the T times t = k/T. Training minimises Ho's
L_simple, E ||eps - eps_theta(x_t, t)||^2.

Flow matching (Lipman et al. 2023, https://arxiv.org/abs/2210.02747; rectified flow, Liu et
al. 2023, https://arxiv.org/abs/2209.03003): the straight path x_t = (1 - t) x_0 + t eps, so
a = 1 - t and s = t, with velocity v = dx_t/dt = eps - x_0; the loss is
E ||v - v_theta(x_t, t)||^2, and sampling integrates dx/dt = v_theta from t = 1 to 0.

Both paths answer the same questions, so the model never asks which one it has:
- `scales(t)`: (a, s) at times t (B,) in [0, 1], each shaped (B, 1, 1, 1);
- `draw_t(n, device)`: the times of a training batch;
- `loss(denoise, x0, noise, t)`: the training loss, given denoise(x_t, t) -> predicted x_0;
- `x0_from_output(x, out, t)`: x_0 from a network that outputs eps (DDPM) or v (flow);
- `x0_from_v(x, v, t)`: x_0 from v = a eps - s x_0 (DDPM; for flow, the velocity again);
- `time_grid(steps)`: the times a sampler visits, from 1 (noise) down to 0 (data);
- `ddim_sigma(t, s, eta)`: the noise of a DDIM step from t to s (none on the straight path);
- `heun`: whether Heun's correction applies (the straight path's ODE) when sampling.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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


def flow_matching_loss(velocity, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """E ||v - v_theta(x_t, t)||^2 per example on the straight path; t: (B,) in [0, 1]."""
    tb = t.view(-1, *[1] * (x0.dim() - 1))
    xt = (1 - tb) * x0 + tb * noise  # x_t = (1 - t) x_0 + t eps
    return (velocity(xt, t) - (noise - x0)).pow(2).flatten(1).mean(1)  # v = eps - x_0


class DDPMPath(nn.Module):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at the T times t = k/T of the chain.

    A module only so that abar (float32, for the network's inputs) and abar64 (float64, for
    the bound) follow the model's device; they are not saved in checkpoints."""

    heun = False  # DDIM steps, eta sets their noise; the `sampler` argument is ignored

    def __init__(self, schedule: str, timesteps: int):
        super().__init__()
        self.T = timesteps
        abar = alpha_bars(schedule, timesteps)  # (T + 1,) float64
        self.register_buffer("abar", abar.float(), persistent=False)
        self.register_buffer("abar64", abar, persistent=False)

    def scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.abar[(t.view(-1, 1, 1, 1) * self.T).round().long()]  # (B, 1, 1, 1)
        return ab.sqrt(), (1 - ab).sqrt()  # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps

    def draw_t(self, n: int, device) -> torch.Tensor:
        """t = k/T with k uniform on 1..T: (n,)."""
        return torch.randint(1, self.T + 1, (n,), device=device) / self.T

    def loss(self, denoise, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
        """Ho's L_simple, E ||eps - eps_hat||^2 with eps_hat = (x_t - a x0_hat) / s."""
        a, s = self.scales(t)
        xt = a * x0 + s * noise  # q(x_t|x_0) in closed form
        eps = (xt - a * denoise(xt, t)) / s  # eps = (x_t - a x_0) / s
        return (eps - noise).pow(2).mean()

    def x0_from_output(self, x, eps, t) -> torch.Tensor:
        a, s = self.scales(t)
        return (x - s * eps) / a  # x_0 = (x_t - s eps) / a

    def x0_from_v(self, x, v, t) -> torch.Tensor:
        """x_0 from v = a eps - s x_0 (Salimans & Ho 2022): x_0 = a x_t - s v, since a^2 + s^2 = 1.
        Unlike x_0 from eps it never divides by a, which is near 0 at high noise."""
        a, s = self.scales(t)
        return a * x - s * v

    def time_grid(self, steps: int) -> list[float]:
        """`steps` steps from t = 1 to 0 on the times k/T (fewer if steps > T)."""
        ts = torch.linspace(self.T, 0, steps + 1).round().long().unique_consecutive()
        return (ts.double() / self.T).tolist()

    def ddim_sigma(self, t: torch.Tensor, s: torch.Tensor, eta: float) -> torch.Tensor:
        """sigma = eta sqrt((1 - abar_s)/(1 - abar_t)) sqrt(1 - abar_t/abar_s): (B, 1, 1, 1);
        at eta = 1 and s = t - 1/T, sigma^2 is the posterior variance beta~_t (ancestral DDPM)."""
        ab_t, ab_s = self.scales(t)[0] ** 2, self.scales(s)[0] ** 2
        return eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).clamp_min(0).sqrt()


class FlowPath(nn.Module):
    """x_t = (1 - t) x_0 + t eps for t in [0, 1]: the straight path of flow matching."""

    heun = True  # sampling integrates the ODE dx/dt = v: Euler's steps, or Heun's

    def scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = t.view(-1, 1, 1, 1)
        return 1 - t, t  # x_t = (1 - t) x_0 + t eps

    def draw_t(self, n: int, device) -> torch.Tensor:
        """t uniform on [0.001, 1] (v = (x_t - x_0) / t is undefined at t = 0): (n,)."""
        return 1e-3 + (1 - 1e-3) * torch.rand(n, device=device)

    def loss(self, denoise, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
        """E ||v - v_hat||^2 with v_hat = (x_t - x0_hat) / t, the network's velocity."""
        velocity = lambda xt, tt: (xt - denoise(xt, tt)) / tt.view(-1, 1, 1, 1)
        return flow_matching_loss(velocity, x0, noise, t).mean()

    def x0_from_output(self, x, v, t) -> torch.Tensor:
        _, s = self.scales(t)
        return x - s * v  # x_0 = x_t - t v

    x0_from_v = x0_from_output  # the straight path's v is its velocity

    def time_grid(self, steps: int) -> list[float]:
        return torch.linspace(1, 0, steps + 1).tolist()

    def ddim_sigma(self, t: torch.Tensor, s: torch.Tensor, eta: float) -> torch.Tensor:
        return torch.zeros_like(self.scales(s)[1])  # the ODE has no noise: eta is ignored
