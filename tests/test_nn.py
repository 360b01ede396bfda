"""Exactness tests for gentools.nn: what each masked / causal convolution can and cannot see."""

import math

import pytest
import torch

from gentools.nn import (
    CausalConv1d,
    MaskedConv2d,
    logistic_mixture_log_prob,
    logistic_mixture_sample,
    pixel_mask,
)


def input_gradient_2d(conv, shape=(1, 2, 7, 7), at=(3, 3)) -> torch.Tensor:
    """|d out[:, :, at] / d x| summed over channels: (H, W), nonzero where the output looks."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.rand_like(p) + 0.1)  # positive weights: no accidental cancellation
    x = torch.randn(shape, requires_grad=True)
    out = conv(x)
    assert out.shape[-2:] == x.shape[-2:]
    out[:, :, at[0], at[1]].sum().backward()
    return x.grad.abs().sum((0, 1))


@pytest.mark.parametrize(
    "region, centre, expected",
    [
        ("full", False, ["11111", "11111", "11000", "00000", "00000"]),
        ("full", True, ["11111", "11111", "11100", "00000", "00000"]),
        ("vertical", False, ["11111", "11111", "00000", "00000", "00000"]),
        ("vertical", True, ["11111", "11111", "11111", "00000", "00000"]),
        ("horizontal", False, ["00000", "00000", "11000", "00000", "00000"]),
        ("horizontal", True, ["00000", "00000", "11100", "00000", "00000"]),
    ],
)
def test_masked_conv_sees_exactly_its_mask(region, centre, expected):
    want = torch.tensor([[int(ch) for ch in row] for row in expected], dtype=torch.float32)
    assert torch.equal(pixel_mask((5, 5), region, centre), want)
    seen = input_gradient_2d(MaskedConv2d(2, 3, 5, region, centre)) > 0  # (7, 7)
    assert torch.equal(seen[1:6, 1:6], want.bool())  # the 5x5 window round (3, 3)
    assert seen.sum() == want.sum()  # and nothing outside it


def test_masked_conv_stores_only_the_bounding_box_and_matches_a_full_masked_kernel():
    conv = MaskedConv2d(2, 3, 5, "vertical", include_centre=False)
    assert conv.conv.weight.shape == (3, 2, 2, 5) and conv.mask is None
    full = torch.zeros(3, 2, 5, 5)
    full[:, :, :2] = conv.conv.weight.detach()  # the same kernel, zero-padded back to 5x5
    x = torch.randn(4, 2, 6, 8)
    ref = torch.nn.functional.conv2d(x, full, conv.conv.bias, padding=2)
    assert torch.allclose(conv(x), ref, atol=1e-6)


def test_masked_conv_rejects_even_kernels_and_empty_masks():
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d(1, 1, 4)
    with pytest.raises(ValueError, match="empty"):
        pixel_mask((1, 1), "horizontal", include_centre=False)


@pytest.mark.parametrize("kernel, dilation, current", [(2, 1, True), (3, 4, True), (2, 8, False)])
def test_causal_conv1d_sees_exactly_its_receptive_field(kernel, dilation, current):
    T = 40
    conv = CausalConv1d(2, 3, kernel, dilation=dilation, include_current=current)
    assert conv.receptive_field == 1 + (kernel - 1) * dilation
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    for t in range(T):
        x = torch.randn(1, 2, T, requires_grad=True)
        out = conv(x)
        assert out.shape == (1, 3, T)
        out[:, :, t].sum().backward()
        seen = set((x.grad.abs().sum((0, 1)) > 0).nonzero().flatten().tolist())
        last = t if current else t - 1  # the latest input step the output may see
        taps = {last - j * dilation for j in range(kernel)}
        assert seen == {s for s in taps if s >= 0}, (t, seen)


def test_stacked_dilated_convs_have_the_computed_receptive_field():
    """A WaveNet-style stack, dilations 1, 2, 4, 8, kernel 2: R = 1 + sum (k - 1) d = 16."""
    torch.manual_seed(0)
    stack = torch.nn.Sequential(*[CausalConv1d(2, 2, 2, dilation=d) for d in (1, 2, 4, 8)])
    with torch.no_grad():
        for p in stack.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    x = torch.randn(1, 2, 50, requires_grad=True)
    stack(x)[:, :, 40].sum().backward()
    seen = (x.grad.abs().sum((0, 1)) > 0).nonzero().flatten()
    assert seen.tolist() == list(range(25, 41))  # t - 15 .. t: 16 steps, nothing later


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_logistic_mixture_sums_to_one_over_the_levels(levels):
    torch.manual_seed(0)
    params = torch.randn(7, 3 * 4, dtype=torch.double) * 2  # 7 pixels, K = 4 components
    params[:, 8:] -= 3  # log-scales from very sharp to broad
    every = torch.arange(levels)[:, None].expand(levels, 7)  # (levels, 7)
    log_p = logistic_mixture_log_prob(every, params.expand(levels, 7, 12), levels)
    assert torch.allclose(log_p.exp().sum(0), torch.ones(7, dtype=torch.double))


def test_logistic_mixture_is_the_mass_of_each_bin():
    """Checked against the plain formula, sigmoid((c + h - mu) / s) - sigmoid((c - h - mu) / s)
    with the end bins open, on one component and on a two-component mixture."""
    mu, log_s, levels = torch.tensor([0.1, -0.5]), torch.tensor([-1.0, -2.0]), 17
    x = torch.arange(levels)
    c, h = 2 * x / (levels - 1) - 1, 1 / (levels - 1)
    cdf = lambda v, k: torch.sigmoid((v - mu[k]) / log_s[k].exp())
    mass = [torch.where(x == levels - 1, 1.0, cdf(c + h, k))
            - torch.where(x == 0, 0.0, cdf(c - h, k)) for k in (0, 1)]
    one = torch.stack([torch.zeros(()), mu[0], log_s[0]])
    assert torch.allclose(logistic_mixture_log_prob(x, one.expand(levels, 3), levels),
                          mass[0].log(), atol=1e-6)
    two = torch.cat([torch.tensor([0.0, math.log(3.0)]), mu, log_s])  # weights 1/4, 3/4
    expected = (0.25 * mass[0] + 0.75 * mass[1]).log()
    assert torch.allclose(logistic_mixture_log_prob(x, two.expand(levels, 6), levels), expected,
                          atol=1e-6)


def test_logistic_mixture_samples_follow_its_probabilities():
    torch.manual_seed(0)
    params = torch.tensor([0.5, -0.2, -0.6, 0.7, -1.2, -1.6])  # K = 2, 5 levels
    draws = logistic_mixture_sample(params.expand(40000, 6), 5,
                                    generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).float() / 40000
    p = logistic_mixture_log_prob(torch.arange(5), params.expand(5, 6), 5).exp()
    assert torch.allclose(freq, p, atol=4 * (0.25 / 40000) ** 0.5)  # 4 standard errors
