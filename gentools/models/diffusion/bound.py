"""The variational bound of the DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239, eq. 5).

The reverse model p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) bounds the likelihood:
-log P(x_0) <= L_T + sum_{t=2}^T L_{t-1} + L_0, with
- the prior term L_T = KL(q(x_T | x_0) || N(0, I)) (`prior_term`),
- the KL terms L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) (`bound_term`), where
  mu_theta is the posterior mean q(x_{t-1} | x_t, x_0) at the predicted x_0,
- the decoder term L_0 = -log P(x_0 | x_1), a distribution over the data's grey levels
  (`decoder_term`), so `nll` bounds the probability of the discrete images.

NOTE: with output="levels" the decoder P(x_0 | x_1) is the network's categorical over the levels
  (Dieleman et al. 2022, https://arxiv.org/abs/2211.15089), not Ho et al.'s discretized
  Gaussian, which the direct output (eps) keeps.
"""

from __future__ import annotations

import math

import torch

from gentools.nn import discretized_gaussian_log_prob


def gaussian_kl(mu1, var1, mu2, var2) -> torch.Tensor:
    """KL(N(mu1, var1) || N(mu2, var2)) per element: 1/2 (log v2/v1 + (v1 + (m1-m2)^2)/v2 - 1)."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)


class VariationalBound:
    """The bound's terms as methods of `Diffusion`, which mixes this class in. They read the
    model's `abar64` (float64 abar_t), `denoise`, `level_log_probs`, `grid`, `to_signal`,
    `labels` and `config`; images x0 are float64 in [-1, 1], t an integer step 1..T."""

    def posterior(self, x0, xt, t: int):
        """q(x_{t-1} | x_t, x_0) = N(mean, var): the mean (like x0) and the variance (scalar)."""
        ab, ab_prev = self.abar64[t], self.abar64[t - 1]
        beta = 1 - ab / ab_prev  # beta_t
        # mu~ = (sqrt(abar_{t-1}) beta_t x_0 + sqrt(alpha_t) (1 - abar_{t-1}) x_t) / (1 - abar_t)
        mean = (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * xt) / (1 - ab)
        var = beta * (1 - ab_prev) / (1 - ab)  # beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t
        return mean, var

    def reverse_variance(self, t: int) -> torch.Tensor:
        """sigma_t^2 of p(x_{t-1} | x_t): beta_t or beta~_t (at t = 1 both use beta_1)."""
        beta = 1 - self.abar64[t] / self.abar64[t - 1]
        if self.config.variance == "beta" or t == 1:
            return beta
        return beta * (1 - self.abar64[t - 1]) / (1 - self.abar64[t])

    def prior_term(self, x0) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per image (B,)."""
        ab = self.abar64[-1]
        kl = gaussian_kl(ab.sqrt() * x0, 1 - ab, torch.zeros_like(x0), torch.ones(()))
        return kl.flatten(1).sum(1)

    def bound_term(self, x0, y, t: int) -> torch.Tensor:
        """L_{t-1} per image, nats (B,): the KL for t >= 2; for t = 1 the decoder term
        -log p(x_0 | x_1). One draw of x_t ~ q(x_t | x_0) per image."""
        noise = torch.randn_like(x0)
        ab = self.abar64[t]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise  # x_t ~ q(x_t | x_0)
        tt = torch.full((len(x0),), t / self.config.timesteps, device=x0.device)
        if t == 1:
            return self.decoder_term(x0, xt, tt, y)
        x0_hat = self.denoise(xt.to(self.grid.dtype), tt, y).double()
        mu, _ = self.posterior(x0_hat, xt, t)  # mu_theta(x_t, t)
        mean_q, var_q = self.posterior(x0, xt, t)
        return gaussian_kl(mean_q, var_q, mu, self.reverse_variance(t)).flatten(1).sum(1)

    def decoder_term(self, x0, x1, t1, y) -> torch.Tensor:
        """L_0 = -log P(x_0 | x_1) per image (B,): the categorical over the levels that
        `level_log_probs` gives, or for a direct output N(mu_theta, beta_1) discretized."""
        if self.config.output == "levels":
            levels = ((x0 + 1) / 2 * (self.config.levels - 1)).round().long()  # (B, C, H, W)
            logp = self.level_log_probs(x1.to(self.grid.dtype), t1, y).gather(-1, levels[..., None])
            return -logp.double().flatten(1).sum(1)
        mu, _ = self.posterior(self.denoise(x1.to(self.grid.dtype), t1, y).double(), x1, 1)
        std = self.reverse_variance(1).sqrt()
        return -discretized_gaussian_log_prob(x0, mu, std, self.config.levels).flatten(1).sum(1)

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
