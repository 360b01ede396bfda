"""Diffusion and flow matching: the forward chain, the bound's terms, samplers and smoke runs."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gentools.checkpoint import CHECKPOINT, load_model
from gentools.data import load_images
from gentools.models.diffusion import (
    DDPMPath,
    Diffusion,
    DiffusionConfig,
    FlowPath,
    alpha_bars,
    flow_matching_loss,
    gaussian_kl,
)
from gentools.train import TrainConfig, fit


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


def tiny(**kw) -> Diffusion:
    torch.manual_seed(0)
    return Diffusion.from_size("tiny", **kw).double().eval()


@pytest.fixture(scope="module")
def trained(digits):
    """The tiny model after a few hundred steps, in float32: enough to denoise digits a little."""
    torch.manual_seed(0)
    model = Diffusion.from_size("tiny", ema=0.0)
    fit(
        model,
        digits,
        TrainConfig(
            steps=150, batch_size=64, lr=3e-3, progress=False, eval_every=10**6, eval_batches=1
        ),
    )
    return model.eval()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_marginal_equals_the_iterated_chain(schedule):
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, 1 - abar_t) against t steps of q(x_t | x_{t-1})."""
    T = 300
    abar = alpha_bars(schedule, T)
    betas = 1 - abar[1:] / abar[:-1]
    x0 = torch.linspace(-1, 1, 17, dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros((), dtype=torch.float64)
    for t in range(1, T + 1):
        # x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps: the mean scales, the variances add
        mean, var = (1 - betas[t - 1]).sqrt() * mean, (1 - betas[t - 1]) * var + betas[t - 1]
        assert torch.allclose(mean, abar[t].sqrt() * x0, rtol=1e-12, atol=1e-15)
        assert torch.allclose(var, 1 - abar[t], rtol=1e-12, atol=1e-15)
    assert abar[0] == 1 and bool((betas > 0).all()) and bool((betas < 1).all())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_is_bayes_rule(schedule):
    """q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0): compare the
    log densities at random points (the normaliser is log q(x_t | x_0))."""
    model = tiny(schedule=schedule, timesteps=50)
    abar = model.abar64
    g = torch.Generator().manual_seed(0)
    x0, xt, xprev = (torch.randn(20, generator=g, dtype=torch.float64) for _ in range(3))
    for t in (2, 7, 30, 50):
        beta = 1 - abar[t] / abar[t - 1]
        mean, var = model.posterior(x0, xt, t)
        lhs = Normal(mean, var.sqrt()).log_prob(xprev)
        rhs = (
            Normal((1 - beta).sqrt() * xprev, beta.sqrt()).log_prob(xt)
            + Normal(abar[t - 1].sqrt() * x0, (1 - abar[t - 1]).sqrt()).log_prob(xprev)
            - Normal(abar[t].sqrt() * x0, (1 - abar[t]).sqrt()).log_prob(xt)
        )
        assert torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_every_kl_term_matches_torch_distributions(digits, variance):
    model = tiny(variance=variance, timesteps=20)
    x = digits.test.tensors[0][:3]
    x0 = model.to_signal(x).double()
    y = model.labels(None, 3, x0.device)
    for t in range(2, 21):
        torch.manual_seed(t)
        ours = model.bound_term(x0, y, t)
        torch.manual_seed(t)
        noise = torch.randn_like(x0)  # the same x_t as inside bound_term
        xt = model.abar64[t].sqrt() * x0 + (1 - model.abar64[t]).sqrt() * noise
        x0_hat = model.denoise(xt, torch.full((3,), t / 20), y)
        mu, _ = model.posterior(x0_hat, xt, t)
        mean_q, var_q = model.posterior(x0, xt, t)
        sigma = model.reverse_variance(t).sqrt()
        theirs = kl_divergence(Normal(mean_q, var_q.sqrt()), Normal(mu, sigma)).flatten(1).sum(1)
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6), t
    ab = model.abar64[-1]
    prior = kl_divergence(Normal(ab.sqrt() * x0, (1 - ab).sqrt()), Normal(0.0, 1.0))
    assert torch.allclose(model.prior_term(x0), prior.flatten(1).sum(1), rtol=1e-9)
    m1, v1, m2, v2 = torch.randn(4, 10, dtype=torch.float64).unbind()
    v1, v2 = v1.exp(), v2.exp()
    expected = kl_divergence(Normal(m1, v1.sqrt()), Normal(m2, v2.sqrt()))
    assert torch.allclose(gaussian_kl(m1, v1, m2, v2), expected, rtol=1e-9)


def test_decoder_sums_to_one_over_the_levels(digits):
    """p(x_0 | x_1) is a categorical over the 17 levels for every pixel, and L_0 reads it."""
    model = tiny()
    x0 = model.to_signal(digits.test.tensors[0][:4]).double()
    x1 = x0 + 0.3 * torch.randn_like(x0)  # anywhere, not only near the data
    y = model.labels(None, 4, x0.device)
    for t in (1 / 50, 0.5, 1.0):
        logp = model.level_log_probs(x1, torch.full((4,), t), y)  # (4, 1, 8, 8, 17)
        assert logp.shape == (4, 1, 8, 8, 17)
        assert torch.allclose(logp.exp().sum(-1), torch.ones(4, 1, 8, 8).double(), atol=1e-12)
    torch.manual_seed(0)
    decoder = model.bound_term(x0, y, 1)
    assert decoder.shape == (4,) and bool((decoder >= 0).all())


def test_stratified_estimate_is_unbiased(monkeypatch):
    """With every term replaced by a known f(t), the K-draw estimate averages to the full sum."""
    model = tiny(timesteps=40)
    f = lambda x0, y, t: torch.full((len(x0),), float(t) ** 2, dtype=torch.float64)
    monkeypatch.setattr(model, "bound_term", f)
    monkeypatch.setattr(model, "prior_term", lambda x0: torch.zeros(len(x0), dtype=torch.float64))
    batch = (torch.zeros(1, 1, 8, 8, dtype=torch.long),)
    exact = sum(t**2 for t in range(1, 41))
    assert model.nll(batch).item() == exact  # draws = 0: every term
    g = torch.Generator().manual_seed(0)
    for draws in (1, 3, 4, 39):
        est = torch.cat([model.nll(batch, draws=draws, generator=g) for _ in range(4000)])
        assert abs(est.mean().item() - exact) < 4 * est.std().item() / math.sqrt(len(est)) + 1e-9
    assert model.nll(batch, draws=39).item() == exact  # one draw per term: exact
    many = (torch.zeros(200, 1, 8, 8, dtype=torch.long),)  # each image draws its own t, so the
    per_image = model.nll(many, draws=2, generator=g)  # standard error over images is honest
    assert len(per_image.unique()) > 20


def test_guidance_scale_one_is_conditional_and_zero_is_unconditional():
    model = tiny()
    x, t = torch.randn(5, 1, 8, 8, dtype=torch.float64), torch.full((5,), 0.4)
    y = torch.arange(5)
    cond = model.denoise(x, t, y)
    uncond = model.denoise(x, t, model.labels(None, 5, "cpu"))
    assert torch.allclose(model.denoise(x, t, y, guidance=1.0), cond)
    assert torch.allclose(model.denoise(x, t, y, guidance=0.0), uncond, atol=1e-12)
    assert torch.allclose(model.denoise(x, t, y, guidance=3.0), uncond + 3 * (cond - uncond))


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_deterministic_sampler_and_encode_decode_round_trip(trained, digits, objective):
    model = trained
    if objective == "flow":
        torch.manual_seed(0)
        model = Diffusion.from_size("tiny", objective="flow", ema=0.0)
        fit(
            model,
            digits,
            TrainConfig(
                steps=150, batch_size=64, lr=3e-3, progress=False, eval_every=10**6, eval_batches=1
            ),
        )
        model.eval()
    noise = torch.randn(6, 1, 8, 8)
    a = model.sample(6, generator=torch.Generator().manual_seed(1), noise=noise, steps=20)
    b = model.sample(6, generator=torch.Generator().manual_seed(2), noise=noise, steps=20)
    assert torch.equal(a, b)  # eta = 0: no randomness beyond the starting noise
    x = digits.test.tensors[0][:6].float() / 16
    z = model.encode(x, steps=200)
    back = model.sample(6, noise=z, steps=200, sampler="euler")
    assert (back - x).abs().mean() < 0.02  # at most a few pixels off by a level


def test_flow_matching_loss_is_zero_for_the_true_velocity():
    """All the data at one point x*: the velocity that moves x_t straight to it is (x_t - x*)/t."""
    g = torch.Generator().manual_seed(0)
    x_star = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    x0 = x_star.expand(16, -1, -1, -1)
    noise = torch.randn(16, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.rand(16, generator=g, dtype=torch.float64) * 0.99 + 0.01
    true = lambda xt, tt: (xt - x_star) / tt.view(-1, 1, 1, 1)
    assert torch.allclose(
        flow_matching_loss(true, x0, noise, t), torch.zeros(16).double(), atol=1e-20
    )
    wrong = lambda xt, tt: xt - x_star
    assert bool((flow_matching_loss(wrong, x0, noise, t) > 1e-3).all())


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_tiny_train_and_sample(digits, objective):
    torch.manual_seed(0)
    model = Diffusion.from_size("tiny", objective=objective)
    state = fit(model, digits, TrainConfig(steps=2, eval_batches=1, progress=False))
    assert set(state.val) == {"loss", "mse"} and math.isfinite(state.val["loss"])
    g = torch.Generator().manual_seed(0)
    x = model.sample(5, generator=g, steps=4, labels=torch.arange(5), guidance=2.0)
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x * 16, (x * 16).round(), atol=1e-5)  # on the data's levels
    times, xs, x0s = model.trajectory(torch.randn(3, 1, 8, 8), steps=4, eta=1.0, generator=g)
    assert len(times) == 5 and xs.shape == x0s.shape == (5, 3, 1, 8, 8)
    if objective == "ddpm":
        nll = model.nll(digits.test.tensors, draws=3, conditional=True)
        assert nll.shape == (447,) and bool(torch.isfinite(nll).all())
    else:
        with pytest.raises(ValueError, match="ddpm"):
            model.nll(digits.test.tensors)


def test_bad_configs():
    for kw, msg in [
        ({"objective": "score"}, "objective"),
        ({"network": "vit"}, "network"),
        ({"schedule": "sigmoid"}, "schedule"),
        ({"variance": "learned"}, "variance"),
        ({"output": "score"}, "output"),
    ]:
        with pytest.raises(ValueError, match=msg):
            Diffusion.from_size("tiny", **kw)
        with pytest.raises(ValueError, match=f"unknown {msg}"):  # the config checks itself
            DiffusionConfig(**kw)


def test_direct_output_and_its_discretized_decoder(digits):
    """output="direct" predicts eps (or v); its decoder N(mu, beta_1) discretized over the 17
    levels, the outer bins open, sums to 1 for every pixel."""
    from gentools.models.diffusion import discretized_gaussian_log_prob

    grid = torch.linspace(-1, 1, 17, dtype=torch.float64)
    mean = torch.randn(64, dtype=torch.float64)
    for std in (0.01, 0.1, 2.0):
        p = torch.stack(
            [discretized_gaussian_log_prob(v.expand(64), mean, std, 17).exp() for v in grid]
        )  # (17, 64)
        assert torch.allclose(p.sum(0), torch.ones(64, dtype=torch.float64), atol=1e-9)
    model = tiny(output="direct")
    torch.manual_seed(0)
    nll = model.nll((digits.test.tensors[0][:4],), draws=2)
    assert nll.shape == (4,) and bool(torch.isfinite(nll).all())
    with pytest.raises(ValueError, match="levels"):
        model.level_log_probs(
            torch.zeros(1, 1, 8, 8).double(), torch.ones(1), torch.zeros(1).long()
        )


@pytest.mark.parametrize("mults", [(1, 2), (1, 2, 2), (1, 1, 2, 2)])
def test_unet_network_shapes(mults):
    torch.manual_seed(0)
    model = Diffusion.from_size("tiny", network="unet", width=16, depth=1, mults=mults)
    assert [len(model.net.down), len(model.net.up)] == [len(mults) - 1] * 2
    x = torch.randint(0, 17, (3, 1, 8, 8))
    out = model.loss((x, torch.arange(3)))
    assert out["loss"].shape == () and math.isfinite(out["loss"].item())
    assert model.sample(2, steps=3).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("mults, shape", [((1,), (1, 8, 8)), ((1, 2, 2), (1, 6, 6))])
def test_a_unet_needs_two_resolutions_and_sides_that_halve(mults, shape):
    with pytest.raises(ValueError, match="resolutions"):
        Diffusion.from_size("tiny", network="unet", width=16, mults=mults, shape=shape)


def test_parameters_count_the_trained_network_not_its_weight_average():
    model = Diffusion.from_size("tiny")
    trained = sum(p.numel() for p in model.net.parameters())
    assert model.ema_net is not None and model.num_parameters() == trained
    assert model.averaged_weights and model.labels_seen
    plain = Diffusion.from_size("tiny", ema=0.0)
    assert plain.num_parameters() == trained and not plain.averaged_weights
    assert not Diffusion.from_size("tiny", num_classes=0).labels_seen


@pytest.mark.parametrize("path", ["cosine", "linear", "flow"])
def test_both_noise_paths_mix_data_and_noise_the_same_way(path):
    """x_t = a x_0 + s eps with x_0 at t = 0 and (almost, for DDPM) pure noise at t = 1; a path's
    loss is 0 for the true x_0, and x0_from_output inverts the true eps (DDPM) or v (flow)."""
    path = FlowPath() if path == "flow" else DDPMPath(path, 50).double()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    a, s = path.scales(torch.zeros(6))
    assert a.shape == s.shape == (6, 1, 1, 1) and bool((a == 1).all() and (s == 0).all())
    a, s = path.scales(torch.ones(6))
    assert bool((s == 1).all() and (a == 0).all()) if path.heun else bool((a < 0.01).all())
    grid = torch.tensor(path.time_grid(10))
    assert grid[0] == 1 and grid[-1] == 0 and bool((grid.diff() < 0).all())
    t = path.draw_t(500, "cpu").double()
    assert t.shape == (500,) and bool((t > 0).all() and (t <= 1).all())
    a, s = path.scales(t[:6])
    if not path.heun:  # DDPM's path preserves the variance: a^2 + s^2 = 1
        assert torch.allclose(a**2 + s**2, torch.ones_like(a), atol=1e-12)
    assert path.loss(lambda xt, tt: x0, x0, noise, t[:6]).item() < 1e-20
    xt = a * x0 + s * noise
    out = noise - x0 if path.heun else noise  # v = eps - x_0, or eps
    assert torch.allclose(path.x0_from_output(xt, out, t[:6]), x0, atol=1e-9)
    v = noise - x0 if path.heun else a * noise - s * x0  # the velocity, or v = a eps - s x_0
    assert torch.allclose(path.x0_from_v(xt, v, t[:6]), x0, atol=1e-9)
    if not path.heun:  # where a is near 0, x_0 from eps is far off and x_0 from v exact
        a1, s1 = path.scales(torch.ones(6, dtype=torch.float64).float())
        x1 = (a1 * x0 + s1 * noise).float()
        eps32, v32 = noise.float(), (a1 * noise - s1 * x0).float()
        far = (path.x0_from_output(x1, eps32, torch.ones(6)) - x0).abs().max()
        near = (path.x0_from_v(x1, v32, torch.ones(6)) - x0).abs().max()
        assert near < 1e-5 < far


def test_ddim_at_eta_one_takes_ancestral_ddpm_steps():
    """sigma^2 of the DDIM step from t to t - 1/T at eta = 1 is beta~_t, the posterior variance."""
    model = tiny(timesteps=50)
    model.path.abar = model.path.abar64  # abar_t itself: the sampler's float32 copy rounds it
    ts = torch.arange(2, 51)
    sigma = model.path.ddim_sigma(ts / 50, (ts - 1) / 50, 1.0).flatten()
    var = torch.stack([model.posterior(0.0, 0.0, t)[1] for t in ts.tolist()])
    assert torch.allclose(sigma**2, var, rtol=1e-9)
    assert bool((FlowPath().ddim_sigma(ts / 50, (ts - 1) / 50, 1.0) == 0).all())


def test_weight_average_is_the_lerp_of_every_step(digits):
    """theta_ema <- d theta_ema + (1 - d) theta after each step, from the first weights on."""
    torch.manual_seed(0)
    model = Diffusion.from_size("tiny")
    opt = model.configure_optimizers(1e-2, 0.0)["main"]

    def optimize(loss, name="main"):
        opt.zero_grad()
        loss.backward()
        opt.step()

    ema = [p.detach().clone() for p in model.net.parameters()]
    batch = (digits.train.tensors[0][:16], digits.train.tensors[1][:16])
    for _ in range(2):
        model.training_step(batch, optimize)
        net = model.net.parameters()
        ema = [e.lerp(p.detach(), 1 - 0.995) for e, p in zip(ema, net, strict=True)]
        for e, pe in zip(ema, model.ema_net.module.parameters(), strict=True):
            assert torch.equal(e, pe)


def test_checkpoints_load_with_the_weight_average_and_old_ones_too(digits, tmp_path):
    torch.manual_seed(0)
    model = Diffusion.from_size("tiny")
    cfg = TrainConfig(steps=3, batch_size=16, eval_batches=1, progress=False, out_dir=str(tmp_path))
    fit(model, digits, cfg)
    loaded = load_model(Diffusion, tmp_path / CHECKPOINT)
    assert loaded.averaged_weights and loaded.num_parameters() == model.num_parameters()
    saved = model.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())
    # written before the average was an AveragedModel: its weights as ema_net.<name>
    old = {k.replace("ema_net.module.", "ema_net."): v for k, v in saved.items()
           if k != "ema_net.n_averaged"}
    assert any(k.startswith("ema_net.cond") for k in old)
    fresh = Diffusion.from_size("tiny")
    fresh.load_state_dict(old)
    assert fresh.ema_net.n_averaged == 1  # averaged before: the next step lerps
    assert all(torch.equal(v, saved[k]) for k, v in fresh.state_dict().items() if k in old)
