"""The GAN: smoke runs at the tiny size, its two-player step, and the exact gradient penalty."""

import math

import pytest
import torch
from torch import nn

from gentools.data import load_images
from gentools.models.gan import GAN, gradient_penalty, truncated_normal
from gentools.train import TrainConfig, fit


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
@pytest.mark.parametrize("conditional", [False, True])
def test_tiny_train_and_sample(digits, loss, conditional):
    torch.manual_seed(0)
    model = GAN.from_size("tiny", loss=loss, conditional=conditional, n_critic=2)
    state = fit(model, digits, TrainConfig(steps=2, eval_batches=1, progress=False))
    keys = {"loss", "d_loss", "g_loss"} | ({"wasserstein", "gp"} if loss == "wgan-gp" else set())
    assert set(state.val) == keys and set(state.metrics) == keys
    assert all(math.isfinite(v) for v in state.val.values())
    assert state.val["loss"] == state.val["d_loss"]
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert not hasattr(model, "nll")  # no likelihood


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_shapes_for_other_image_sizes(shape):
    model = GAN.from_size("tiny", shape=shape, levels=256, conditional=True)
    x = torch.randint(0, 256, (2, *shape))
    y = torch.tensor([1, 7])
    assert model.sample(3).shape == (3, *shape)
    assert model.decode(torch.randn(2, 4), y).shape == (2, *shape)
    assert model.discriminator(x / 255, y).shape == (2,)
    assert model.loss((x, y))["loss"].shape == ()


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        GAN.from_size("tiny", shape=(1, 30, 30))
    with pytest.raises(ValueError, match="unknown loss"):
        GAN.from_size("tiny", loss="hinge")
    with pytest.raises(ValueError, match="needs labels"):
        GAN.from_size("tiny", conditional=True).decode(torch.randn(2, 4))


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = w . x has gradient w everywhere: the penalty is (||w|| - 1)^2."""
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False), nn.Flatten(0))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[1.0, 2.0, 2.0, 0.0]]))  # ||w|| = 3
    real, fake = torch.rand(5, 1, 2, 2), torch.rand(5, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0)  # (3 - 1)^2


def test_gradient_penalty_by_hand_on_a_quadratic_critic():
    """D(x) = sum x^2: grad = 2 x_hat with x_hat = eps x + (1 - eps) x_fake."""
    critic = lambda x: x.pow(2).flatten(1).sum(1)  # noqa: E731
    real = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])  # (2, 1, 1, 2)
    fake = torch.tensor([[[[0.0, 0.0]]], [[[0.0, 0.0]]]])
    eps = torch.tensor([0.5, 0.25])
    # x_hat = (0.5, 0) and (0, 0.5); ||2 x_hat|| = 1 and 1: penalty 0
    assert gradient_penalty(critic, real, fake, eps=eps).item() == pytest.approx(0.0)
    eps = torch.tensor([1.0, 1.0])
    # x_hat = real: ||2 x|| = 2 and 4, penalty ((2 - 1)^2 + (4 - 1)^2) / 2 = 5
    assert gradient_penalty(critic, real, fake, eps=eps).item() == pytest.approx(5.0)
    with torch.no_grad():  # evaluation calls it under no_grad: same value, no graph
        assert gradient_penalty(critic, real, fake, eps=eps, create_graph=False).item() == 5.0


def test_gradient_penalty_is_differentiable_for_the_critic_step():
    model = GAN.from_size("tiny", loss="wgan-gp")
    real, fake = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    gradient_penalty(model.discriminator, real, fake).backward()
    weights = [p for p in model.discriminator.parameters() if p.dim() > 1]  # biases drop out
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)


@pytest.mark.parametrize("loss, n_disc", [("nonsaturating", 1), ("wgan-gp", 3)])
def test_training_step_updates_each_player_with_its_own_optimizer(loss, n_disc):
    """D steps first (n_critic for WGAN-GP), then one G step; a D step leaves G's grads alone."""
    torch.manual_seed(0)
    model = GAN.from_size("tiny", loss=loss, n_critic=3)
    opts = model.configure_optimizers(1e-3, 0.0)
    betas = (0.5, 0.999) if loss == "nonsaturating" else (0.0, 0.9)
    assert opts["disc"].defaults["betas"] == opts["gen"].defaults["betas"] == betas
    calls = []

    def optimize(value, name):
        opts[name].zero_grad(set_to_none=True)
        value.backward()
        other = model.generator if name == "disc" else None
        if other is not None:
            assert all(p.grad is None for p in other.parameters())
        calls.append(name)
        opts[name].step()

    g_before = [p.clone() for p in model.generator.parameters()]
    batch = (torch.randint(0, 17, (8, 1, 8, 8)), torch.randint(0, 10, (8,)))
    out = model.training_step(batch, optimize)
    assert calls == ["disc"] * n_disc + ["gen"]
    assert out["loss"] is out["d_loss"]
    after = model.generator.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(g_before, after, strict=True))


def test_loss_updates_nothing_and_leaves_no_gradients():
    torch.manual_seed(0)
    model = GAN.from_size("tiny", loss="wgan-gp")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randint(0, 17, (8, 1, 8, 8)), torch.randint(0, 10, (8,)))
    model.eval()
    with torch.no_grad():
        out = model.loss(batch)
    assert set(out) == {"loss", "d_loss", "g_loss", "wasserstein", "gp"}
    assert out["loss"] == -out["wasserstein"] + 10.0 * out["gp"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_decode_does_not_depend_on_the_batch():
    """G keeps batch norm, but decode uses its running statistics: one z, one image."""
    torch.manual_seed(0)
    model = GAN.from_size("tiny")
    model.train()
    model.training_step(
        (torch.randint(0, 17, (8, 1, 8, 8)), torch.zeros(8, dtype=torch.long)),
        lambda loss, name: loss.backward(),
    )
    z = torch.randn(6, 4)
    assert torch.allclose(model.decode(z[:1]), model.decode(z)[:1], atol=1e-6)
    assert model.generator.training  # decode restored the mode


def test_truncation_resamples_large_components():
    z = truncated_normal(500, 8, 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    again = truncated_normal(500, 8, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    with pytest.raises(ValueError, match="positive"):
        truncated_normal(2, 2, 0.0)
    model = GAN.from_size("tiny")
    a = model.sample(4, torch.Generator().manual_seed(1), truncation=0.5)
    b = model.sample(4, torch.Generator().manual_seed(1), truncation=0.5)
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(4, torch.Generator().manual_seed(1)))


def test_conditional_labels_change_the_image():
    torch.manual_seed(0)
    model = GAN.from_size("tiny", conditional=True)
    nn.init.normal_(model.generator.embed.weight)
    z = torch.randn(1, 4).expand(2, 4)
    x = model.decode(z, torch.tensor([2, 5]))
    assert not torch.allclose(x[0], x[1])
    assert torch.equal(model.decode(z, 2), model.decode(z, torch.tensor([2, 2])))
    s = model.sample(4, torch.Generator().manual_seed(0), labels=torch.tensor([1, 1, 1, 1]))
    assert s.shape == (4, 1, 8, 8)


def test_latent_directions_are_the_principal_axes_of_the_first_layer():
    """Cov(W z) for z ~ N(0, I) is W W^T: its top eigenvalue is |W v_1|^2 along direction 1."""
    torch.manual_seed(0)
    model = GAN.from_size("tiny")
    v = model.latent_directions(3)  # (3, 4)
    assert v.shape == (3, 4) and torch.allclose(v @ v.T, torch.eye(3), atol=1e-5)
    w = model.generator.net[0].weight.detach()  # (D_h, d)
    gains = (v @ w.T).norm(dim=1)  # |W v_k|
    assert torch.all(gains[:-1] >= gains[1:])
    top = torch.linalg.eigvalsh(w @ w.T)[-1]
    assert gains[0] ** 2 == pytest.approx(top.item(), rel=1e-4)


@pytest.mark.parametrize("conditional", [False, True])
def test_labels_seen_only_when_conditional(conditional):
    model = GAN.from_size("tiny", conditional=conditional)
    assert model.labels_seen == conditional and not model.averaged_weights
