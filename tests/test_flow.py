"""The flow: exact invertibility and log-determinants, actnorm init and checkpoints, the bounds."""

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from gentools.checkpoint import load_model
from gentools.data import load_images
from gentools.models.flow import (
    ActNorm,
    Coupling,
    Flow,
    InvConv1x1,
    Logit,
    Squeeze,
    VariationalDequantizer,
)
from gentools.train import TrainConfig, fit


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


def randomise(module: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its (often identity) init so the checks are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module.double().eval()


def check_layer(layer, shape, cond=None, seed=0):
    """inverse(forward(x)) == x, and the layer's log-det equals log|det J| from autograd."""
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.double)
    y, logdet = layer(x, torch.zeros(1, dtype=torch.double), cond=cond)
    assert y.shape[0] == 1 and y.numel() == x.numel()
    assert torch.allclose(layer.inverse(y, cond=cond), x, atol=1e-4)
    J = jacobian(lambda v: layer(v.view(1, *shape), torch.zeros(1), cond=cond)[0].flatten(),
                 x.flatten())  # (D, D)
    sign, log_abs_det = torch.linalg.slogdet(J)
    assert sign != 0
    assert logdet.item() == pytest.approx(log_abs_det.item(), abs=1e-6)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: ActNorm(3), (3, 4, 4)),
        (lambda: InvConv1x1(4), (4, 2, 2)),
        (lambda: Coupling(1, 8, "checker0"), (1, 4, 4)),
        (lambda: Coupling(2, 8, "checker1"), (2, 4, 4)),
        (lambda: Coupling(4, 8, "channel0"), (4, 2, 2)),
        (lambda: Coupling(3, 8, "channel1"), (3, 2, 2)),
        (lambda: Squeeze(), (2, 4, 4)),
        (lambda: Logit(0.05), (1, 4, 4)),
    ],
    ids=["actnorm", "1x1conv", "checker0", "checker1", "channel0", "channel1-odd", "squeeze",
         "logit"],
)
def test_each_layer_inverts_and_its_logdet_is_exact(make, shape):
    torch.manual_seed(0)
    layer = randomise(make())
    if isinstance(layer, Logit):  # defined on (0, 1)
        x = torch.rand(1, *shape, dtype=torch.double)
        y, ld = layer(x, torch.zeros(1, dtype=torch.double))
        assert torch.allclose(layer.inverse(y), x, atol=1e-6)
        J = jacobian(lambda v: layer(v.view(1, *shape), torch.zeros(1))[0].flatten(), x.flatten())
        assert ld.item() == pytest.approx(torch.linalg.slogdet(J)[1].item(), abs=1e-6)
        return
    check_layer(layer, shape)


def test_conditional_coupling_is_exact_given_the_condition():
    torch.manual_seed(0)
    layer = randomise(Coupling(1, 8, "checker1", cond_channels=5))
    cond = torch.randn(1, 5, 4, 4, dtype=torch.double)
    check_layer(layer, (1, 4, 4), cond=cond)


def test_lu_parametrisation_keeps_its_structure():
    layer = randomise(InvConv1x1(5))
    w = layer.weight()
    assert torch.linalg.slogdet(w)[1].item() == pytest.approx(layer.log_s.sum().item(), abs=1e-9)
    assert torch.equal(layer.P @ layer.P.T, torch.eye(5, dtype=torch.double))  # a permutation


@pytest.mark.parametrize("variant", ["glow", "realnvp"])
def test_whole_flow_inverts_and_its_logdet_is_exact(variant):
    torch.manual_seed(0)
    model = Flow.from_size("tiny", variant=variant, shape=(1, 4, 4))
    model.train()
    model.loss((torch.randint(0, 17, (32, 1, 4, 4)),))  # data-dependent actnorm init
    model = randomise(model, std=0.1)
    y = torch.rand(3, 1, 4, 4, dtype=torch.double)
    z, logdet = model(y)
    assert z.shape == (3, 16)
    assert torch.allclose(model.inverse(z), y, atol=1e-4)
    J = jacobian(lambda v: model(v.view(1, 1, 4, 4))[0][0], y[0].flatten())  # (16, 16)
    assert logdet[0].item() == pytest.approx(torch.linalg.slogdet(J)[1].item(), abs=1e-6)
    x01 = torch.randint(0, 17, (3, 1, 4, 4)).double() / 16
    assert torch.allclose(model.decode(model.encode(x01)), x01, atol=1e-4)


def test_dequantizer_log_q_is_its_change_of_variables():
    """log q(u|x) = log N(eps) - log|det du/deps|, checked against an autograd Jacobian."""
    torch.manual_seed(0)
    deq = randomise(VariationalDequantizer((1, 4, 4), levels=17, hidden=8, steps=2), std=0.2)
    x = torch.randint(0, 17, (1, 1, 4, 4)).double()
    u, log_q = deq(x, torch.Generator().manual_seed(3))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).double()
    J = jacobian(lambda e: deq.transform(e.view(x.shape), x)[0].flatten(), eps.flatten())
    expected = (-0.5 * eps.pow(2) - 0.5 * math.log(2 * math.pi)).sum() - torch.linalg.slogdet(J)[1]
    assert log_q.item() == pytest.approx(expected.item(), abs=1e-6)
    assert ((0 < u) & (u < 1)).all()


def test_actnorm_init_gives_zero_mean_unit_variance_once():
    layer = ActNorm(3)
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.1, 2.0, 5.0]).view(1, 3, 1, 1) + 3.0
    y, _ = layer(x, torch.zeros(64))  # training mode: initialises on this batch
    assert bool(layer.initialized)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    before = layer.log_scale.detach().clone()
    layer(x * 10, torch.zeros(64))  # a second batch does not re-initialise
    assert torch.equal(layer.log_scale, before)


def actnorms(model):
    return [m for m in model.modules() if isinstance(m, ActNorm)]


def test_checkpoint_keeps_actnorm_initialised_and_the_likelihoods(digits, tmp_path):
    torch.manual_seed(0)
    model = Flow.from_size("tiny")
    fit(model, digits, TrainConfig(steps=3, eval_batches=1, progress=False, out_dir=str(tmp_path)))
    assert actnorms(model) and all(bool(a.initialized) for a in actnorms(model))
    loaded = load_model(Flow, tmp_path / "checkpoint.safetensors")
    assert all(bool(a.initialized) for a in actnorms(loaded))
    batch = (digits.test.tensors[0][:16],)
    model.eval()
    same = [m.nll(batch, k=4, generator=torch.Generator().manual_seed(1)) for m in (model, loaded)]
    assert torch.equal(same[0], same[1])
    # training on from the checkpoint does not re-initialise actnorm on the new batch
    biases = [a.bias.detach().clone() for a in actnorms(loaded)]
    loaded.train()
    with torch.no_grad():
        loaded(torch.rand(8, 1, 8, 8) * 0.1)
    assert all(torch.equal(a.bias, b) for a, b in zip(actnorms(loaded), biases, strict=True))
    fresh = Flow.from_size("tiny")  # a state_dict round trip does the same
    assert not any(bool(a.initialized) for a in actnorms(fresh))
    fresh.load_state_dict(model.state_dict())
    assert all(bool(a.initialized) for a in actnorms(fresh))


@pytest.mark.parametrize("variant", ["glow", "realnvp"])
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_tiny_train_and_sample(digits, variant, dequantization):
    torch.manual_seed(0)
    model = Flow.from_size("tiny", variant=variant, dequantization=dequantization)
    state = fit(model, digits, TrainConfig(steps=2, eval_batches=1, progress=False))
    assert set(state.val) == {"loss", "nll", "bpd"}
    assert all(math.isfinite(v) for v in state.val.values())
    assert state.val["bpd"] == pytest.approx(state.val["nll"] / (64 * math.log(2)), rel=1e-5)
    x = model.sample(5, generator=torch.Generator().manual_seed(0), temperature=0.7)
    assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x * 16, (x * 16).round(), atol=1e-5)  # on the data's levels
    cold = model.sample(3, temperature=0.0)
    assert torch.equal(cold[0], cold[1])  # T = 0: every draw decodes z = 0


def test_importance_weighting_tightens_the_bound(digits):
    torch.manual_seed(0)
    model = Flow.from_size("tiny")
    fit(model, digits, TrainConfig(steps=30, eval_batches=1, progress=False))
    model.eval()
    batch = (digits.test.tensors[0][:32],)
    torch.manual_seed(1)
    k1 = torch.stack([model.nll(batch) for _ in range(50)]).mean()
    k32 = model.nll(batch, k=32)
    assert k32.shape == (32,) and torch.isfinite(k32).all()
    assert k32.mean() < k1


def test_uniform_bound_is_above_the_exact_discrete_nll():
    """D = 4 binary pixels: P(x) = int_[0,1]^4 p_v(x + u) du by Gauss-Legendre quadrature.

    The 16 values of P(x) sum to at most 1 (the D log L bookkeeping), the k=1 bound of `nll`
    matches -int log p_v(x + u) du and is >= -log P(x), and a large-k bound approaches it.
    """
    torch.manual_seed(0)
    model = Flow.from_size("tiny", shape=(1, 2, 2), levels=2, scales=1, variant="realnvp",
                           dequantization="uniform", alpha=0.2)
    model = randomise(model, std=0.1)
    nodes, weights = np.polynomial.legendre.leggauss(10)
    nodes, weights = torch.tensor((nodes + 1) / 2), torch.tensor(weights / 2)  # on [0, 1]
    u = torch.cartesian_prod(*[nodes] * 4)  # (10^4, 4)
    w = torch.cartesian_prod(*[weights] * 4).prod(1)  # (10^4,)
    xs = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4)  # all 16 images
    exact, jensen = [], []
    with torch.no_grad():
        for x in xs:
            v = (x + u).view(-1, 1, 2, 2)
            log_pv = model.log_prob(v / 2) - 4 * math.log(2)  # p_v(v) = p_y(v / L) / L^D
            exact.append(-torch.log((w * log_pv.exp()).sum()))
            jensen.append(-(w * log_pv).sum())
    exact, jensen = torch.stack(exact), torch.stack(jensen)
    total = torch.exp(-exact).sum()
    assert 0.5 < total <= 1.0 + 1e-6
    assert (jensen >= exact).all()
    batch = (xs.view(16, 1, 2, 2).repeat(2000, 1, 1, 1),)
    g = torch.Generator().manual_seed(0)
    draws = model.nll(batch, generator=g).view(2000, 16)  # one u per row
    error = 4 * draws.std(0) / math.sqrt(2000)  # 4 standard errors of the Monte Carlo mean
    assert ((draws.mean(0) - jensen).abs() < error).all()
    k_many = model.nll((xs.view(16, 1, 2, 2),), k=4000, generator=g)
    assert ((k_many - exact).abs() < 0.05).all()
    assert (jensen - exact > 0.05).any()  # the gap that the importance weights close


def test_sizes_and_config_errors():
    counts = [Flow.from_size(s).num_parameters() for s in ("tiny", "default", "gpu")]
    assert counts == sorted(counts) and counts[0] < 20_000
    with pytest.raises(ValueError, match="unknown variant"):
        Flow.from_size("tiny", variant="maf")
    with pytest.raises(ValueError, match="unknown dequantization"):
        Flow.from_size("tiny", dequantization="none")
    with pytest.raises(ValueError, match="divisible"):
        Flow.from_size("tiny", shape=(1, 6, 6))
