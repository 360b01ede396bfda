"""The VAE: smoke runs at the tiny size, and the exact properties of its likelihoods."""

import math

import pytest
import torch

from gentools.data import load_images
from gentools.models.vae import VAE
from gentools.train import TrainConfig, fit


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.mark.parametrize("decoder", ["categorical", "gaussian", "logistic", "bernoulli"])
def test_tiny_train_and_sample(digits, decoder):
    torch.manual_seed(0)
    model = VAE.from_size("tiny", decoder=decoder)
    state = fit(model, digits, TrainConfig(steps=2, eval_batches=1, progress=False))
    assert set(state.val) == {"loss", "recon", "kl", "nelbo", "bpd"}
    assert all(math.isfinite(v) for v in state.val.values())
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    levels = (x * 16).round()
    assert torch.allclose(x * 16, levels, atol=1e-5)  # draws sit on the data's levels


def test_shapes_for_other_image_sizes():
    model = VAE.from_size("tiny", shape=(3, 32, 32), levels=256)
    x = torch.randint(0, 256, (2, 3, 32, 32))
    mu, logvar = model.encode(x / 255)
    assert mu.shape == logvar.shape == (2, 4)
    assert model.decode(mu).shape == (2, 3, 32, 32)
    assert model.loss((x,))["loss"].shape == ()
    with pytest.raises(ValueError, match="divisible by 4"):
        VAE.from_size("tiny", shape=(1, 30, 30))
    with pytest.raises(ValueError, match="unknown size"):
        VAE.from_size("huge")
    with pytest.raises(ValueError, match="unknown decoder"):
        VAE.from_size("tiny", decoder="poisson")


@pytest.mark.parametrize("decoder", ["categorical", "gaussian", "logistic"])
def test_decoder_is_a_normalised_distribution_over_levels(decoder):
    """sum over the levels l of p(x_d = l | z) is exactly 1 for every pixel d."""
    torch.manual_seed(0)
    model = VAE.from_size("tiny", decoder=decoder, levels=5)
    params = model.decode_params(torch.randn(1, 4))  # (1, 64, o)
    probs = torch.stack(
        [model.pixel_log_probs(torch.full((1, 1, 8, 8), level), params).exp() for level in range(5)]
    )  # (levels, 1, 64)
    assert torch.allclose(probs.sum(0), torch.ones(1, 64), atol=1e-5)


def test_kl_term_matches_torch_distributions():
    torch.manual_seed(0)
    model = VAE.from_size("tiny")
    x = torch.randint(0, 17, (6, 1, 8, 8))
    mu, logvar = model.encode(x / 16)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1).mean()
    assert torch.allclose(model.loss((x,))["kl"], expected, atol=1e-5)


def test_iwae_bound_is_tighter_than_the_elbo(digits):
    """k=1 is an unbiased -ELBO estimate; more samples can only lower the bound on average."""
    torch.manual_seed(0)
    model = VAE.from_size("tiny")
    fit(model, digits, TrainConfig(steps=50, progress=False, eval_batches=1))
    model.eval()
    x = digits.test.tensors[0][:64]
    torch.manual_seed(1)
    k1 = torch.stack([model.nll((x,), k=1) for _ in range(200)]).mean(0)
    nelbo = torch.stack([model.loss((x,))["nelbo"] for _ in range(200)]).mean()
    k100 = model.nll((x,), k=100)
    assert k1.mean().item() == pytest.approx(nelbo.item(), rel=0.01)
    assert k100.mean() < k1.mean()
    assert k100.shape == (64,) and torch.isfinite(k100).all()


@pytest.mark.parametrize("k", [1, 7, 100])
def test_iwae_bound_is_exact_when_every_weight_is_the_same(digits, k):
    """With q(z|x) = p(z) and a decoder that ignores z, every importance weight
    w_i = p(x|z_i) p(z_i) / q(z_i|x) equals p(x), so the bound -log (1/k) sum_i w_i is
    exactly -log p(x) for every k: dropping the 1/k (the - log k) would miss it by log k."""
    torch.manual_seed(0)
    model = VAE.from_size("tiny").eval()
    with torch.no_grad():
        model.encoder[-1].weight.zero_()  # mu = 0, log sigma^2 = 0: q(z|x) = N(0, I) = p(z)
        model.encoder[-1].bias.zero_()
        model.decoder[0].weight.zero_()  # the decoder sees only its biases: p(x|z) = p(x)
    x = digits.test.tensors[0][:16]
    logits = model.decode_params(torch.randn(1, model.config.latent_dim))[0].detach()  # (D, L)
    log_px = torch.distributions.Categorical(logits=logits).log_prob(x.flatten(1)).sum(-1)
    assert torch.allclose(model.nll((x,), k=k), -log_px, atol=1e-3)
    assert model.loss((x,))["nelbo"].item() == pytest.approx(-log_px.mean().item(), abs=1e-3)


def test_iwae_chunks_stay_within_memory_and_give_the_same_bound():
    """On 28x28 images with a 256-way softmax the decoder passes are chunked by memory (2^24
    outputs): the bound is the same as one pass over all k draws at once."""
    torch.manual_seed(0)
    model = VAE.from_size("tiny", shape=(1, 28, 28), levels=256)
    x = torch.randint(0, 256, (4, 1, 28, 28))
    seen = []
    model.decoder.register_forward_hook(lambda m, i, out: seen.append(out.numel()))
    torch.manual_seed(1)
    chunked = model.nll((x,), k=40)
    assert max(seen) <= 2**24 < 40 * 4 * 784 * 256 and len(seen) > 1
    mu, logvar = model.encode(x / 255)
    torch.manual_seed(1)
    eps = torch.cat([torch.randn(n, 4, 4) for n in
                     [2**24 // (4 * 784 * 256)] * (len(seen) - 1) + [40 - (len(seen) - 1) * (
                         2**24 // (4 * 784 * 256))]])  # the same draws, in the same order
    z = mu + eps * (0.5 * logvar).exp()  # (40, 4, d)
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_w = model.log_px_given_z(x, model.decode_params(z)) + log_p - log_q  # (40, 4)
    assert torch.allclose(chunked, -(torch.logsumexp(log_w, 0) - math.log(40)), rtol=1e-5)
