"""Exactness tests for gentools.nn: what each masked / causal convolution can and cannot see."""

import pytest
import torch

from gentools.nn import CausalConv1d, MaskedConv2d, pixel_mask


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
