"""ImageCompletion: widget state without a browser, through a fake `complete` callable."""

import struct

import numpy as np
import pytest
import torch

from gentools.widgets import ImageCompletion


class FakeCompleter:
    """Keeps the first rows of x and fills the others with the temperature / 2 (in [0, 1])."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, rows_kept, n, temperature):
        self.calls.append((x, rows_kept, n, temperature))
        out = x.repeat(n, 1, 1, 1).clone()  # (n, C, H, W)
        out[:, :, rows_kept:] = temperature / 2
        return out


def png_size(data) -> tuple[int, int]:
    data = bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])  # (width, height)


@pytest.fixture
def images():
    return torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_first_render_completes_image_zero_from_half_its_rows(images):
    fake = FakeCompleter()
    w = ImageCompletion(fake, images, labels=[3, 1, 4, 1, 5], n=3)
    assert len(fake.calls) == 1
    x, rows, n, t = fake.calls[0]
    assert torch.equal(x, images[:1]) and (rows, n, t) == (4, 3, 1.0)
    assert w.completions.shape == (3, 1, 8, 8)
    width, height = png_size(w.image.value)
    scale = width // (1 + 5 * 9)  # five tiles of 8 px, padded by 1
    assert (width, height) == ((1 + 5 * 9) * scale, (1 + 9) * scale) and scale > 1
    assert "image 0 (label 3)" in w.caption.value and "3 completions" in w.caption.value


def test_each_control_calls_complete_with_its_value(images):
    fake = FakeCompleter()
    w = ImageCompletion(fake, images, n=2)
    w.index.value = 3
    assert torch.equal(fake.calls[-1][0], images[3:4])
    w.rows.value = 6
    assert fake.calls[-1][1] == 6
    np.testing.assert_allclose(w.completions[:, :, :6], images[3:4, :, :6].expand(2, -1, -1, -1))
    w.temperature.value = 0.5
    assert fake.calls[-1][3] == 0.5
    np.testing.assert_allclose(w.completions[:, :, 6:], 0.25)
    w.resample.click()
    assert len(fake.calls) == 5 and fake.calls[-1][1:] == (6, 2, 0.5)
    assert "image 3:" in w.caption.value and "6 row(s) kept" in w.caption.value
    assert w.rows.max == 7 and w.index.max == 4


def test_numpy_images_and_errors_go_through_the_output(images):
    calls = []

    def broken(x, rows_kept, n, temperature):
        calls.append(type(x))
        if rows_kept == 2:
            raise RuntimeError("model exploded")
        return np.zeros((n, *x.shape[1:]), np.float32)

    w = ImageCompletion(broken, images.numpy(), n=2)
    assert calls == [np.ndarray]
    assert w.completions.shape == (2, 1, 8, 8) and not w.completions.any()
    # In a kernel, w.out shows the traceback; without one, Output.capture re-raises it.
    with pytest.raises(RuntimeError, match="model exploded"):
        w.rows.value = 2
    with pytest.raises(ValueError, match="at least 1"):
        ImageCompletion(broken, images, n=0)


def test_a_wrongly_shaped_completion_is_rejected(images):
    with pytest.raises(ValueError, match="expected"):
        ImageCompletion(lambda x, r, n, t: torch.zeros(n, 1, 4, 4), images, n=2)
