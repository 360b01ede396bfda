"""The gated PixelCNN: causality and no blind spot from gradients, exact normalisation, sampling."""

import itertools
import math
import types

import pytest
import torch

from gentools.models.pixelcnn import PixelCNN
from gentools.train import TrainConfig, fit


def tiny(**kw) -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN.from_size("tiny", **kw).double().eval()


def logit_gradients(model: PixelCNN) -> torch.Tensor:
    """G[i, j] = sum |d logits at pixel i (every level, every channel) / d input at pixel j|.

    The input is the first layer's embedding of each pixel's level (the integer levels have
    no gradient). One backward pass: copy b of the image only back-propagates its pixel b.
    """
    C, H, W = model.config.shape
    D = H * W
    torch.manual_seed(1)
    x = torch.randint(0, model.config.levels, (1, C, H, W)).expand(D, -1, -1, -1)  # (D, C, H, W)
    leaf = []

    def make_leaf(module, inputs, output):
        leaf.append(output.detach().requires_grad_())
        return leaf[-1]

    handle = model.embed.register_forward_hook(make_leaf)
    y = torch.arange(D) % max(1, model.config.num_classes)
    logits = model(x, y if model.config.num_classes else None)  # (D, L, C, H, W)
    handle.remove()
    pick = torch.eye(D, dtype=torch.double).view(D, 1, 1, H, W)  # copy b keeps pixel b
    (logits * pick).sum().backward()
    return leaf[0].grad.abs().sum(1).flatten(1)  # (D outputs, D inputs)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"skip": False},
        {"num_classes": 10},
        {"shape": (3, 8, 8), "levels": 5},
        {"embedding": False, "shape": (3, 8, 8)},
        {"output": "logistic", "levels": 256},
    ],
    ids=["default", "no-skip", "conditional", "three-channels", "intensity-input", "logistic"],
)
def test_causal_and_no_blind_spot(kw):
    model = tiny(**kw)
    H, W = model.config.shape[1:]
    assert model.receptive_field() >= max(H, W) - 1  # the tiny model sees the whole image
    G = logit_gradients(model)  # (64, 64)
    order = torch.arange(H * W)
    later_or_same = order[None, :] >= order[:, None]  # input j at or after output i
    assert (G[later_or_same] == 0).all(), "an output depends on its own or a later pixel"
    assert (G[~later_or_same] > 0).all(), "a blind spot: an earlier pixel is not seen"


@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_conditionals_are_normalised_and_agree_with_the_nll(output):
    model = tiny(shape=(1, 6, 6), levels=256, output=output)
    x = torch.randint(0, 256, (2, 1, 6, 6))
    with torch.no_grad():
        log_p = model.conditionals(x)  # (2, 256, 1, 6, 6)
        nll = model.nll((x, None))
    assert torch.allclose(log_p.exp().sum(1), torch.ones(2, 1, 6, 6, dtype=torch.double))
    assert torch.allclose(-log_p.gather(1, x[:, None]).flatten(1).sum(1), nll)


@pytest.mark.parametrize("size", ["tiny", "default", "medium"])
def test_sampling_reads_only_the_rows_the_receptive_field_reaches(size):
    """sample() feeds rows top..r, top = r - receptive_field(): the outputs at row r are the
    full pass's, exactly; one row fewer changes them, so the crop is as tight as it can be."""
    torch.manual_seed(0)
    model = PixelCNN.from_size(size, shape=(1, 28, 28), levels=256, output="logistic")
    model = model.double().eval()
    x = torch.randint(0, 256, (1, 1, 28, 28))
    rf = model.receptive_field()
    with torch.no_grad():
        full = model(x)  # (1, O, 1, 28, 28)
        for r in (rf, rf + 3, 27):
            cropped = model(x[:, :, r - rf : r + 1])[:, :, :, -1]
            assert torch.allclose(cropped, full[:, :, :, r], rtol=0, atol=1e-12)
            tighter = model(x[:, :, r - rf + 1 : r + 1])[:, :, :, -1]
            assert not torch.allclose(tighter, full[:, :, :, r])


def test_receptive_field_is_limited_by_depth():
    """One layer of kernel 3 sees one row up (three columns) and one pixel left: no further."""
    model = tiny(layers=1, kernel=3)
    G = logit_gradients(model).view(8, 8, 8, 8)  # (out row, out col, in row, in col)
    seen = (G[4, 4] > 0).nonzero().tolist()
    assert sorted(seen) == [[3, 3], [3, 4], [3, 5], [4, 3]]


@pytest.mark.parametrize("output", ["softmax", "logistic"])
@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2)])
def test_likelihood_is_normalised_over_every_image(shape, output):
    """sum over all levels^D images of p(x) = 1 exactly, for one and for two channels."""
    model = tiny(shape=shape, levels=3, output=output)
    every = torch.tensor(list(itertools.product(range(3), repeat=4))).view(81, *shape)
    with torch.no_grad():
        nll = model.nll((every, torch.zeros(81, dtype=torch.long)))  # (81,)
    assert nll.shape == (81,)
    assert torch.allclose(torch.logsumexp(-nll, 0), torch.zeros((), dtype=torch.double))


def test_loss_reports_nll_and_bits_per_dim():
    model = tiny()
    x = torch.randint(0, 17, (5, 1, 8, 8))
    out = model.loss((x, torch.zeros(5, dtype=torch.long)))
    nll = model.nll((x, None))
    assert torch.allclose(out["loss"], nll.mean()) and torch.allclose(out["nll"], nll.mean())
    assert torch.allclose(out["bpd"], nll.mean() / (64 * math.log(2)))


@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_samples_follow_the_model_distribution(output):
    """Empirical frequencies of 30000 draws of a 1x1x2 image with 3 levels match exp(-nll)."""
    model = tiny(shape=(1, 1, 2), levels=3, output=output).float()
    every = torch.tensor(list(itertools.product(range(3), repeat=2))).view(9, 1, 1, 2)
    with torch.no_grad():
        p = (-model.nll((every, None))).exp()  # (9,)
    draws = model.sample(30000, generator=torch.Generator().manual_seed(0))  # in [0, 1]
    codes = (draws * 2).round().long().view(-1, 2) @ torch.tensor([3, 1])  # level pair -> 0..8
    freq = torch.bincount(codes, minlength=9).float() / 30000
    assert torch.allclose(freq, p, atol=4 * (0.25 / 30000) ** 0.5)  # 4 standard errors


def test_near_zero_temperature_is_deterministic_and_greedy():
    model = tiny().float()
    a = model.sample(6, generator=torch.Generator().manual_seed(1), temperature=1e-4)
    b = model.sample(6, generator=torch.Generator().manual_seed(2), temperature=1e-4)
    greedy = model.sample(6, temperature=0.0)
    assert torch.equal(a, b) and torch.equal(a, greedy)
    c = model.sample(6, generator=torch.Generator().manual_seed(1))
    d = model.sample(6, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(c, d)  # at temperature 1 the generator matters


def test_completion_keeps_the_given_rows_and_is_reproducible():
    model = tiny().float()
    x = torch.randint(0, 17, (1, 1, 8, 8))
    g = lambda: torch.Generator().manual_seed(3)
    out = model.sample(4, generator=g(), x=x, rows_kept=5)
    assert out.shape == (4, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    assert torch.equal((out[:, :, :5] * 16).round().long(), x[:, :, :5].expand(4, -1, -1, -1))
    assert torch.equal(out, model.sample(4, generator=g(), x=x, rows_kept=5))
    assert not torch.equal(out[:, :, 5:], model.sample(4, generator=g())[:, :, 5:])


def test_sampling_restores_training_mode_and_conditional_needs_labels():
    model = PixelCNN.from_size("tiny", num_classes=10)
    model.train()
    model.sample(2, labels=torch.tensor([3, 7]))
    assert model.training
    x = torch.randint(0, 17, (2, 1, 8, 8))
    with pytest.raises(ValueError, match="labels"):
        model(x)
    with torch.no_grad():
        model.eval()
        assert not torch.allclose(model(x, torch.tensor([0, 0])), model(x, torch.tensor([1, 1])))


def test_tiny_model_trains_and_samples():
    x = torch.randint(0, 17, (64, 1, 8, 8), dtype=torch.uint8)
    ds = torch.utils.data.TensorDataset(x, torch.zeros(64, dtype=torch.long))
    data = types.SimpleNamespace(train=ds, val=ds)
    model = PixelCNN.from_size("tiny")
    cfg = TrainConfig(steps=4, batch_size=16, eval_every=2, progress=False)
    state = fit(model, data, cfg)
    assert state.step == 4 and math.isfinite(state.val["nll"])
    assert state.history[0]["nll"] > state.val["nll"]  # four steps already help
    assert model.sample(3).shape == (3, 1, 8, 8)


def test_sizes_build():
    for size in PixelCNN.sizes:
        model = PixelCNN.from_size(size)
        assert model.num_parameters() > 0
    assert PixelCNN.from_size("tiny").receptive_field() >= 7


def test_dependencies_method_agrees_with_the_gradient_check():
    model = tiny()
    x = torch.randint(0, 17, (1, 1, 8, 8))
    deps = model.dependencies(x)
    assert deps.shape == (64, 64) and deps.dtype == torch.bool
    assert torch.equal(deps, torch.ones(64, 64).tril(-1).bool())  # exactly the earlier pixels
    shallow = tiny(layers=1, kernel=3).dependencies(x)
    assert shallow[4 * 8 + 4].sum() == 4  # one layer: three pixels above, one to the left
