"""The latent widgets' GAN additions: a class selector and interpolation between prior draws."""

import torch

from gentools.widgets.interpolation import RandomInterpolation, interpolate
from gentools.widgets.latent import LatentExplorer


def draw(seed, truncation):
    z = torch.randn(3, generator=torch.Generator().manual_seed(seed))
    return z if truncation is None else z.clamp(-truncation, truncation)


class Recorder:
    """A conditional decoder that remembers its calls: images filled with label / 10."""

    def __init__(self):
        self.calls = []

    def __call__(self, z, label=None):
        self.calls.append((z.clone(), label))
        value = 0.5 if label is None else label / 10
        return torch.full((len(z), 1, 8, 8), value)


def test_latent_explorer_class_selector_passes_the_label():
    dec = Recorder()
    explorer = LatentExplorer(dec, 3, classes=range(10))
    assert dec.calls[-1][1] == 0
    explorer.label.value = 7
    assert dec.calls[-1][1] == 7 and len(explorer.label.options) == 10
    explorer.sliders[1].value = 1.0
    assert torch.equal(dec.calls[-1][0][0], torch.tensor([0.0, 1.0, 0.0]))
    assert dec.calls[-1][1] == 7


def test_latent_explorer_without_classes_is_unchanged():
    dec = Recorder()
    explorer = LatentExplorer(dec, 2)
    assert dec.calls[-1][1] is None and not hasattr(explorer, "label")


def test_random_interpolation_rows_follow_the_controls():
    dec = Recorder()
    w = RandomInterpolation(draw, dec, steps=5)
    z, label = dec.calls[-1]
    assert label is None and z.shape == (5, 3)
    assert torch.allclose(z, interpolate(draw(0, None), draw(1, None), 5, "spherical"))
    w.seed_b.value = 9
    assert torch.allclose(dec.calls[-1][0][-1], draw(9, None))
    w.truncation.value = 0.5
    ends = dec.calls[-1][0][[0, -1]]  # slerp may bulge between them; the ends are draws
    assert torch.allclose(ends, torch.stack([draw(0, 0.5), draw(9, 0.5)]))
    assert "truncation 0.5" in w.caption.value
    w.mode.value = "linear"
    assert torch.allclose(dec.calls[-1][0], interpolate(draw(0, 0.5), draw(9, 0.5), 5))
    w.steps.value = 3
    assert dec.calls[-1][0].shape == (3, 3)
    assert bytes(w.image.value)[:4] == b"\x89PNG"


def test_random_interpolation_class_selector():
    dec = Recorder()
    w = RandomInterpolation(draw, dec, classes=[str(i) for i in range(10)])
    assert dec.calls[-1][1] == 0
    w.label.value = 4
    assert dec.calls[-1][1] == 4 and "class 4" in w.caption.value
