"""The samplers of the diffusion model: steps that take x at time t to x at time s.

- `ddim_step` (Song et al. 2021, https://arxiv.org/abs/2010.02502): on any subset of the T
  steps, deterministic at eta = 0. At eta = 1 with all T steps it is ancestral DDPM sampling
  (Ho et al. 2020): sigma^2 is then the posterior variance beta~_t. On flow matching's straight
  path the deterministic step is exactly Euler's step of dx/dt = v = eps - x_0.
- `heun_step`: flow matching's ODE with Heun's method, Euler's step then the mean of the
  velocities at both ends (two network evaluations per step).
- `inversion_step`: DDIM inversion, the deterministic step run from data towards noise; with
  `encode` it maps images to the noise that `ddim_step` at eta = 0 maps back to them.

Each step reads the model through `model.denoise` (the predicted x_0, with classifier-free
guidance) and `model.path` (the scales a, s of x_t = a x_0 + s eps), and works for either path.
"""

from __future__ import annotations

import torch


def full(x: torch.Tensor, t: float) -> torch.Tensor:
    """The time t for every image of x: (B,)."""
    return torch.full((len(x),), t, device=x.device)


def predict(model, x, t: float, y, guidance: float = 1.0):
    """The predicted x_0 at time t, clipped to [-1, 1] (a direct eps may overshoot), and the
    noise that it implies, eps = (x_t - a x_0) / s: both like x."""
    a, s = model.path.scales(full(x, t))
    x0 = model.denoise(x, full(x, t), y, guidance).clamp(-1, 1)
    return x0, (x - a * x0) / s


def ddim_step(model, x, t: float, s: float, y, guidance=1.0, eta=0.0, generator=None):
    """x at time t -> (x at time s < t, the predicted x_0):
    x_s = a_s x_0 + sqrt(s_s^2 - sigma^2) eps + sigma z, sigma from eta (`path.ddim_sigma`)."""
    x0, eps = predict(model, x, t, y, guidance)
    if s == 0:
        return x0, x0
    a_s, s_s = model.path.scales(full(x, s))
    sigma = torch.zeros_like(s_s)
    if eta > 0:
        sigma = model.path.ddim_sigma(full(x, t), full(x, s), eta)
    x_s = a_s * x0 + (s_s**2 - sigma**2).sqrt() * eps
    if eta > 0:
        x_s = x_s + sigma * torch.randn(x.shape, generator=generator).to(x.device)
    return x_s, x0


def heun_step(model, x, t: float, s: float, y, guidance=1.0, eta=0.0, generator=None):
    """x at time t -> (x at time s < t, the predicted x_0) on the straight path: Heun's method,
    x_s = x_t + (s - t) (v_t + v_s) / 2, v_s read at Euler's x_s, with v = (x - x_0) / t."""
    x_s, x0 = ddim_step(model, x, t, s, y, guidance, eta, generator)  # Euler's step
    if s == 0:
        return x_s, x0
    a_t, s_t = model.path.scales(full(x, t))
    v_t = (x - a_t * x0) / s_t - x0  # v = eps - x_0
    v_s = (x_s - model.denoise(x_s, full(x, s), y, guidance)) / s  # v = (x_s - x_0) / s
    return x + (s - t) * (v_t + v_s) / 2, x0  # the mean of both slopes


def inversion_step(model, x, t: float, s: float, y) -> torch.Tensor:
    """x at time t -> x at a later time s > t, the deterministic DDIM step run backwards:
    x_s = a_s x_0 + s_s eps with x_0 and eps predicted at t. Leaving t = 0, x is x_0 itself and
    eps is read at s (the network never sees t = 0)."""
    x0, eps = predict(model, x, t if t > 0 else s, y)
    if t == 0:
        x0 = x
    a_s, s_s = model.path.scales(full(x, s))
    return a_s * x0 + (s_s**2).sqrt() * eps  # s_s, rounded as ddim_step's sqrt(s_s^2 - 0)
