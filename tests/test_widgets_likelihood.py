"""The likelihood readout and the temperature sampler: widget state, without a browser."""

import math

import numpy as np
import pytest
import torch

from gentools.widgets import LikelihoodReadout, SampleExplorer


class PixelModel:
    """Independent pixels: log p(x) = sum_d log p(x_d), with p(level) = (level + 1) / sum."""

    def __init__(self, levels: int):
        self.log_p = torch.log(torch.arange(1.0, levels + 1) / (levels * (levels + 1) / 2))
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert x.shape[0] == 1 and not x.is_floating_point()
        return self.log_p[x.flatten(1)].sum(1)  # (1,)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 5, (3, 1, 4, 4), generator=g).to(torch.uint8)


def test_readout_shows_the_log_likelihood_of_the_selected_image(images):
    model = PixelModel(5)
    w = LikelihoodReadout(model, images, levels=5, labels=[7, 8, 9])
    expected = float(model(images[:1].long()))
    assert w.nats == pytest.approx(expected)
    assert len(w.pixels) == 16
    assert f"<b>{expected:.2f}</b> nats" in w.readout.value and "label 7" in w.readout.value
    bpd = -expected / (16 * math.log(2))
    assert f"{bpd:.3f} bits/dim" in w.readout.value
    w.index.value = 2  # picking another image re-evaluates
    assert w.nats == pytest.approx(float(model(images[2:3].long())))
    assert torch.equal(w.x, images[2].long()) and "label 9" in w.readout.value
    w.select(1)  # programmatic selection labels the readout with the right image
    assert "image 1 (label 8)" in w.readout.value


def test_painting_a_pixel_changes_the_image_and_the_readout(images):
    model = PixelModel(5)
    w = LikelihoodReadout(model, images, levels=5)
    before, old_level = w.nats, int(images[0, 0, 1, 2])
    w.brush.value = 4 if old_level != 4 else 0
    w.pixels[1 * 4 + 2].click()  # row 1, column 2
    assert int(w.x[0, 1, 2]) == w.brush.value
    delta = (model.log_p[w.brush.value] - model.log_p[old_level]).item()
    assert w.nats - before == pytest.approx(delta, abs=1e-5)
    assert f"{delta:+.2f} nats" in w.readout.value
    assert w.pixels[6].style.button_color == ("#ffffff" if w.brush.value == 4 else "#000000")
    assert int(images[0, 0, 1, 2]) == old_level  # the source images are never edited in place
    w.reset_button.click()
    assert torch.equal(w.x, images[0].long()) and w.nats == pytest.approx(before)


def test_readout_png_tracks_the_edits(images):
    w = LikelihoodReadout(PixelModel(5), images, levels=5)
    png = bytes(w.image.value)
    w.brush.value = 0 if int(w.x[0, 0, 0]) != 0 else 4
    w.pixels[0].click()
    assert bytes(w.image.value) != png
    source = images.clone()
    LikelihoodReadout(PixelModel(5), images, levels=5).pixels[0].click()
    assert torch.equal(images, source)


def test_readout_errors_go_to_its_output_and_bad_shapes_are_refused(images):
    with pytest.raises(ValueError, match="N, C, H, W"):
        LikelihoodReadout(PixelModel(5), images[:, 0], levels=5)
    calls = []

    def failing(x):
        calls.append(x)
        if len(calls) > 2:
            raise RuntimeError("boom")
        return torch.zeros(1)

    w = LikelihoodReadout(failing, images, levels=5)
    w.pixels[3].click()  # raises inside the callback: captured, not propagated
    assert len(calls) == 3


def test_sample_explorer_redraws_on_temperature_and_seed():
    seen = []

    def sample_fn(temperature, seed):
        seen.append((temperature, seed))
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(6, 1, 8, 8, generator=g) * temperature).clamp(0, 1)

    s = SampleExplorer(sample_fn, temperature=0.5, seed=3)
    assert seen == [(0.5, 3)]
    first = bytes(s.grid.value)
    s.temperature.value = 1.0
    assert seen[-1] == (1.0, 3) and bytes(s.grid.value) != first
    s.new_button.click()
    assert seen[-1] == (1.0, 4) and s.seed.value == 4
    assert len(seen) == 3
    assert np.frombuffer(bytes(s.grid.value)[:8], np.uint8).tolist()[1:4] == [80, 78, 71]  # PNG


@pytest.mark.parametrize("side, px", [(8, 26), (28, 16)])
def test_the_pixel_board_fits_beside_its_controls(side, px):
    """8x8 digits get 26-pixel buttons; a 28x28 image 16-pixel ones, a board of about 530
    pixels, so the controls beside it stay in view."""
    x = torch.zeros(1, 1, side, side, dtype=torch.uint8)
    w = LikelihoodReadout(PixelModel(256), x, levels=256)
    assert {b.layout.width for b in w.pixels} == {f"{px}px"} and len(w.pixels) == side * side
    assert side * (px + 2) + side - 1 <= 540  # the columns and the 1-pixel gaps
