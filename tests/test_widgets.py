"""Tests for gentools.widgets: PNG encoding, grids, and the latent-space widgets (no browser)."""

import struct
import types
import zlib

import numpy as np
import pytest
import torch

from gentools.widgets import (
    ImageGrid,
    Interpolation,
    LatentExplorer,
    LatentMap,
    grid,
    grid_png,
    grid_scale,
    interpolate,
    picture,
    principal_directions,
    show_source,
    to_png,
)


def decode_png(data: bytes) -> np.ndarray:
    """A tiny PNG reader for what to_png writes: 8-bit grey/RGB, no interlace, filter 0."""
    data = bytes(data)  # ipywidgets.Image.value is a memoryview
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color_type in (0, 2)
    channels = 1 if color_type == 0 else 3
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    assert (raw[:, 0] == 0).all()  # filter type 0 on every row: the bytes are the pixels
    pixels = raw[:, 1:].reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


class FakeCoder:
    """decode(z) = sigmoid(W z) as 1x8x8 images; encode is its exact inverse on the range."""

    def __init__(self, d: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.d = d
        self.W = torch.randn(64, d, generator=g) / d**0.5  # (64, d); logits ~ N(0, 1)
        self.W_pinv = torch.linalg.pinv(self.W)  # (d, 64)
        self.calls = 0

    def decode(self, z):
        self.calls += 1
        return torch.sigmoid(z @ self.W.T).view(-1, 1, 8, 8)  # (N, 1, 8, 8)

    def encode(self, x):
        logits = torch.logit(x.flatten(1).clamp(1e-6, 1 - 1e-6))  # (N, 64)
        return logits @ self.W_pinv.T  # (N, d)

    def dataset(self, n: int = 40, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.d, generator=g)
        return self.decode(z), torch.arange(n) % 4  # images (n, 1, 8, 8), labels


# ---- image.py --------------------------------------------------------------------------------
def test_png_roundtrip_grey_float():
    img = np.random.default_rng(0).random((5, 7))
    expected = np.round(img * 255).astype(np.uint8)
    assert np.array_equal(decode_png(to_png(img)), expected)


def test_png_roundtrip_rgb_channels_first_and_last_and_uint8():
    rng = np.random.default_rng(1)
    chw = rng.integers(0, 256, (3, 4, 6), dtype=np.uint8)
    hwc = chw.transpose(1, 2, 0)
    assert np.array_equal(decode_png(to_png(chw)), hwc)
    assert np.array_equal(decode_png(to_png(hwc)), hwc)
    assert np.array_equal(decode_png(to_png(torch.from_numpy(chw))), hwc)  # torch input


def test_png_scale_is_nearest_neighbour_and_clips():
    img = np.array([[0.0, 1.0], [0.5, 2.0]])  # 2.0 is clipped to 1
    out = decode_png(to_png(img, scale=3))
    assert out.shape == (6, 6)
    assert (out[:3, :3] == 0).all() and (out[:3, 3:] == 255).all()
    assert (out[3:, :3] == 128).all() and (out[3:, 3:] == 255).all()
    with pytest.raises(TypeError):
        to_png(np.zeros((2, 2), np.int64))


def test_grid_places_tiles_row_major_with_padding():
    x = np.stack([np.full((1, 4, 4), (i + 1) / 10) for i in range(5)])  # (5, 1, 4, 4)
    g = grid(x, nrow=3, pad=1, pad_value=0.0)
    assert g.shape == (1 + 2 * 5, 1 + 3 * 5)
    for i in range(5):
        r, c = divmod(i, 3)
        tile = g[1 + 5 * r : 5 + 5 * r, 1 + 5 * c : 5 + 5 * c]
        assert np.allclose(tile, (i + 1) / 10)
    assert g[0].max() == 0.0 and np.allclose(g[6:, 11:], 0.0)  # padding and the empty 6th slot
    assert grid(torch.rand(4, 3, 2, 2)).shape == (1 + 2 * 3, 1 + 2 * 3, 3)  # RGB, 2x2 default


def test_picture_shows_each_digit_at_a_visible_size():
    """48 digits in rows of 16 (the notebooks' sample strips): every 8x8 digit is drawn 56x56
    by nearest neighbour, so the strip is (1 + 16 * 9) * 7 = 1015 pixels wide, not 145."""
    x = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    png = decode_png(picture(x, nrow=16).data)
    scale = grid_scale((8, 8), (1 + 3 * 9, 1 + 16 * 9))
    assert scale == 7 and png.shape == ((1 + 3 * 9) * 7, (1 + 16 * 9) * 7) == (196, 1015)
    assert np.array_equal(png[::7, ::7], np.round(grid(x, nrow=16) * 255).astype(np.uint8))
    first = png[7:63, 7:63]  # the first digit: 8x8 blocks of 7x7 equal pixels
    assert np.array_equal(first, np.repeat(np.repeat(first[::7, ::7], 7, 0), 7, 1))
    assert decode_png(ImageGrid(x, nrow=16).value).shape == png.shape  # the widget's grid too


def test_grid_scale_keeps_long_rows_and_big_images_within_bounds():
    row = decode_png(grid_png(torch.rand(48, 1, 8, 8), nrow=48))  # one row of 48 digits
    assert row.shape[1] == (1 + 48 * 9) * 2 <= 1024  # the grid's cap wins over the tile size
    assert grid_scale((28, 28), (30, 30)) == 2  # a 28x28 tile is drawn 56x56
    assert grid_scale((28, 28), (1 + 3 * 29, 1 + 16 * 29)) == 2  # also in strips of 16
    assert grid_scale((4, 4), (6, 6)) == 8  # tiny tiles: at most auto_scale's 8x


def test_image_grid_widget_shows_the_grid():
    x = torch.rand(4, 1, 8, 8)
    w = ImageGrid(x, scale=1)
    assert np.array_equal(decode_png(w.value), np.round(grid(x) * 255).astype(np.uint8))
    before = w.value
    w.set_images(torch.rand(4, 1, 8, 8))
    assert w.value != before


# ---- latent.py and interpolation.py: pure functions ------------------------------------------
def test_principal_directions_recover_a_stretched_axis():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))  # random orthogonal basis
    scales = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.5, 0.5])
    z = (torch.randn(4000, 6, generator=g) * scales) @ q.T + 3.0  # stretched along q[:, 0]
    dirs, std = principal_directions(z, 2)
    assert dirs.shape == (2, 6) and std.shape == (2,)
    assert abs(float(dirs[0] @ q[:, 0])) > 0.99
    assert abs(float(dirs[1] @ q[:, 1])) > 0.98
    assert std[0] == pytest.approx(5.0, rel=0.05) and std[1] == pytest.approx(2.0, rel=0.05)
    assert torch.allclose(dirs @ dirs.T, torch.eye(2), atol=1e-5)
    assert dirs[0, dirs[0].abs().argmax()] > 0  # sign convention


@pytest.mark.parametrize("mode", ["linear", "spherical"])
def test_interpolate_endpoints_exact_and_n_points(mode):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, generator=g), torch.randn(7, generator=g)
    zs = interpolate(a, b, 9, mode)
    assert zs.shape == (9, 7)
    assert torch.equal(zs[0], a) and torch.equal(zs[-1], b)


def test_slerp_keeps_norm_and_lerp_does_not():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    b = b / b.norm() * a.norm()
    norms = interpolate(a, b, 11, "spherical").norm(dim=1)
    assert torch.allclose(norms, a.norm().expand(11), rtol=1e-5)
    assert interpolate(a, b, 11, "linear").norm(dim=1)[5] < 0.95 * a.norm()


def test_slerp_falls_back_to_lerp_for_parallel_codes():
    a = torch.tensor([1.0, 2.0, 3.0])
    zs = interpolate(a, 2 * a, 5, "spherical")
    assert torch.isfinite(zs).all()
    assert torch.allclose(zs, interpolate(a, 2 * a, 5, "linear"))
    with pytest.raises(ValueError):
        interpolate(a, a, 5, "cubic")


# ---- latent.py and interpolation.py: widgets -------------------------------------------------
def test_latent_explorer_one_slider_per_dim_moves_z_and_image():
    coder = FakeCoder(3)
    ex = LatentExplorer(coder.decode, dim=3)
    assert len(ex.sliders) == 3
    before = ex.image.value
    assert decode_png(before).shape == (128, 128)  # 8x8 upscaled so it is visible
    ex.sliders[0].value = 2.0
    assert ex.image.value != before
    assert torch.allclose(ex.z, torch.tensor([2.0, 0.0, 0.0]))
    calls = coder.calls
    ex.reset()
    assert coder.calls == calls + 1  # one redraw for the whole reset
    assert ex.image.value == before and torch.equal(ex.z, torch.zeros(3))


def test_latent_explorer_starts_from_a_drawn_code_and_draws_new_ones():
    coder = FakeCoder(3)
    draw = lambda s: torch.randn(3, generator=torch.Generator().manual_seed(s))  # noqa: E731
    ex = LatentExplorer(coder.decode, 3, draw=draw, seed=4)
    assert ex.code_seed.value == 4 and torch.equal(ex.z, draw(4))  # not z = 0
    assert ex.image.value == to_png(coder.decode(draw(4)[None])[0], scale=16)
    ex.sliders[1].value = 1.5
    calls = coder.calls
    ex.new_code.click()
    assert ex.code_seed.value == 5 and coder.calls == calls + 1  # one redraw
    assert torch.equal(ex.z, draw(5)) and all(s.value == 0 for s in ex.sliders)
    ex.code_seed.value = 4
    assert torch.equal(ex.z, draw(4))
    ex.sliders[0].value = 1.0
    assert torch.allclose(ex.z, draw(4) + torch.tensor([1.0, 0, 0]))
    assert not hasattr(LatentExplorer(coder.decode, 3), "new_code")  # no draw, no button
    with pytest.raises(ValueError, match="not both"):
        LatentExplorer(coder.decode, 3, z0=torch.zeros(3), draw=draw)


def test_latent_explorer_principal_directions_in_std_units():
    coder = FakeCoder(20)
    codes = torch.randn(500, 20) * torch.linspace(3.0, 0.1, 20)
    dirs, std = principal_directions(codes, 8)
    with pytest.raises(ValueError):
        LatentExplorer(coder.decode, dim=20)  # too many dims for sliders, no directions
    z0 = codes.mean(0)
    ex = LatentExplorer(coder.decode, 20, z0=z0, directions=dirs, std=std, max_sliders=4)
    assert len(ex.sliders) == 4
    before = ex.image.value
    ex.sliders[0].value = 2.0
    assert ex.image.value != before
    assert torch.allclose(ex.z - z0, 2.0 * std[0] * dirs[0], atol=1e-5)  # along direction 0


def test_interpolation_widget_reacts_to_mode_indices_and_steps():
    coder = FakeCoder(3)
    images, labels = coder.dataset()
    w = Interpolation(coder.encode, coder.decode, images, labels=labels, steps=6)
    png = decode_png(w.image.value)
    assert png.shape[1] == (1 + 8 * 9) * w.scale  # originals + 6 decodes in one row
    first = w.image.value
    w.mode.value = "spherical"
    assert w.image.value != first
    second = w.image.value
    w.index_b.value = 5
    assert w.image.value != second
    assert "index 5 (label 1)" in w.caption.value and "spherical" in w.caption.value
    w.steps.value = 3
    assert decode_png(w.image.value).shape[1] == (1 + 5 * 9) * w.scale


def test_interpolation_row_shows_originals_and_decodes():
    coder = FakeCoder(3)
    images, _ = coder.dataset()
    w = Interpolation(coder.encode, coder.decode, images, steps=4)
    w.index_a.value, w.index_b.value = 2, 7
    z = coder.encode(images[[2, 7]])
    row = torch.cat([images[2:3], coder.decode(interpolate(z[0], z[1], 4)), images[7:8]])
    expected = to_png(grid(row, nrow=6), scale=w.scale)
    assert w.image.value == expected


@pytest.mark.parametrize("d", [20, 2])
def test_latent_map_traces_and_select(d):
    coder = FakeCoder(d)
    images, labels = coder.dataset()
    lm = LatentMap(coder.encode, coder.decode, images, labels)
    assert lm.image.layout.display == "none" and not lm.image.value  # no broken image
    assert [t.name for t in lm.fig.data[:-1]] == ["0", "1", "2", "3"]  # one trace per label
    for trace in lm.fig.data[:-1]:
        idx = np.asarray(trace.customdata)
        assert (labels.numpy()[idx] == int(trace.name)).all()
        assert np.allclose(trace.x, lm.xy[idx, 0]) and np.allclose(trace.y, lm.xy[idx, 1])
    if d == 2:
        assert np.allclose(lm.xy, coder.encode(images).numpy(), atol=1e-5)
    lm.select(9)
    assert lm.image.layout.display is None  # shown from the first click on
    assert lm.image.value == to_png(coder.decode(coder.encode(images[9:10]))[0], scale=lm.scale)
    assert lm.caption.value == "label 1, index 9"
    assert lm.fig.data[-1].x == (lm.xy[9, 0],)


def test_latent_map_click_decodes_the_full_code_of_that_point():
    coder = FakeCoder(20)
    images, labels = coder.dataset()
    lm = LatentMap(coder.encode, coder.decode, images, labels)
    trace = lm.fig.data[2]  # label 2: indices 2, 6, 10, ...
    lm._on_click(lm.fig.data[1], types.SimpleNamespace(point_inds=[]), None)  # not clicked
    assert lm.caption.value == "click a point"
    lm._on_click(trace, types.SimpleNamespace(point_inds=[1]), None)
    assert lm.caption.value == "label 2, index 6"
    # the full 20-d code round-trips to the image, which its 2-D projection could not do
    assert (
        np.abs(
            decode_png(lm.image.value)[:: lm.scale, :: lm.scale] / 255.0 - images[6, 0].numpy()
        ).max()
        < 0.01
    )


def _halve(x):
    return x / 2  # a line only this function has


def test_show_source_returns_the_source_text_of_functions_as_python():
    halve = "def _halve(x):\n    return x / 2  # a line only this function has\n"
    assert show_source(_halve).data == halve
    assert show_source(_halve).language == "python"
    both = show_source(_halve, decode_png).data  # in order, a blank line between
    assert both.startswith(halve + "\n\ndef decode_png(data: bytes) -> np.ndarray:\n")
