"""Images for widgets, in pure numpy: a minimal PNG encoder, a batch-to-grid tiler, ImageGrid.

No PIL or matplotlib: `to_png` writes 8-bit greyscale or RGB PNGs (PNG spec, ISO/IEC 15948,
https://www.w3.org/TR/png/) with zlib and struct, every scanline with filter type 0 (None).
Small images such as 8x8 digits are upscaled by an integer nearest-neighbour `scale` so they
are visible in a notebook.

Inputs may be numpy arrays or torch tensors (converted through `.detach().cpu()`, so this
module never imports torch). Floats are read as [0, 1] and clipped; uint8 is taken as is.
"""

from __future__ import annotations

import math
import struct
import zlib

import ipywidgets as widgets
import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TILE_PX = 56  # a grid's tiles are upscaled to about this many pixels on their longer side
GRID_MAX_PX = 1024  # ... while the whole grid stays within this many


def _as_numpy(x) -> np.ndarray:
    """A numpy view of an array or a torch tensor (on any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 unchanged; bool and floats in [0, 1] scaled to 0..255 and rounded."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
        return np.round(np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise TypeError(f"expected a float array in [0, 1] or uint8, got dtype {a.dtype}")


def _to_hwc(a: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, C) or (C, H, W) with C in {1, 3} -> (H, W, C)."""
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3:
        channels_last = a.shape[2] in (1, 3)
        channels_first = a.shape[0] in (1, 3)
        if channels_first and not channels_last:
            return a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        if channels_last:
            return a
    raise ValueError(f"expected an (H,W), (H,W,C) or (C,H,W) image, C in {{1,3}}; got {a.shape}")


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type+data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def to_png(img, scale: int = 1) -> bytes:
    """Encode one image as PNG bytes (8-bit grey for one channel, 8-bit RGB for three).

    img: (H, W), (H, W, C) or (C, H, W) with C in {1, 3}; float in [0, 1] or uint8; numpy or
    torch. scale: integer nearest-neighbour upscaling factor (each pixel becomes scale x scale).
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    a = _to_hwc(_to_uint8(_as_numpy(img)))  # (H, W, C)
    if scale > 1:
        a = a.repeat(int(scale), axis=0).repeat(int(scale), axis=1)  # (sH, sW, C)
    h, w, c = a.shape
    color_type = 0 if c == 1 else 2  # 0: greyscale, 2: truecolour RGB
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)  # depth 8, deflate, no interlace
    rows = np.ascontiguousarray(a).reshape(h, w * c)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter byte 0 per row
    idat = zlib.compress(raw.tobytes(), 6)
    return _PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def grid(images, nrow: int | None = None, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """Tile a batch (N, C, H, W), float in [0, 1], into one float image.

    nrow: images per row (default ceil(sqrt(N)), a near-square grid; at most N). pad: pixels of
    `pad_value` between and around the tiles. Returns (H', W') for C == 1, (H', W', 3) for C == 3.
    """
    x = _as_numpy(images)
    if x.ndim == 3:  # (N, H, W): single channel
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) with C in {{1, 3}}, got {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    n, c, h, w = x.shape
    ncol = max(1, min(nrow or math.ceil(math.sqrt(n)), n))
    nrows = max(1, math.ceil(n / ncol))
    out = np.full((c, pad + nrows * (h + pad), pad + ncol * (w + pad)), pad_value, np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        out[:, top : top + h, left : left + w] = x[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)  # (H', W') or (H', W', 3)


def auto_scale(height: int, width: int, target: int = 256, max_scale: int = 8) -> int:
    """The integer upscaling that brings the longer side nearest `target` pixels (1..max_scale)."""
    return int(max(1, min(max_scale, round(target / max(height, width, 1)))))


def grid_scale(tile: tuple[int, int], size: tuple[int, int]) -> int:
    """The integer upscaling of a grid of `size` (H', W') pixels whose tiles are `tile` (H, W):
    each tile near TILE_PX pixels (an 8x8 digit becomes 56x56, a 28x28 image too), the grid
    within GRID_MAX_PX."""
    return max(1, min(auto_scale(*tile, target=TILE_PX), GRID_MAX_PX // max(*size, 1)))


def grid_png(images, nrow: int | None = None, pad: int = 1, scale: int | None = None) -> bytes:
    """PNG bytes of `images` (N, C, H, W) tiled as a grid; scale=None: `grid_scale`."""
    g = grid(images, nrow=nrow, pad=pad)
    return to_png(g, scale=scale or grid_scale(_as_numpy(images).shape[-2:], g.shape[:2]))


def picture(images, nrow: int | None = None, pad: int = 1, scale: int | None = None):
    """A static picture of a batch for a notebook cell: saved as image/png in the notebook.

    Unlike the `ImageGrid` widget, it stays visible in an executed notebook from a batch run.
    """
    from IPython.display import Image

    return Image(data=grid_png(images, nrow=nrow, pad=pad, scale=scale), format="png")


class ImageGrid(widgets.Image):
    """An `ipywidgets.Image` showing a batch (N, C, H, W) as a grid; `set_images` refreshes it.

    scale=None picks the integer upscaling of `grid_scale`: each tile about TILE_PX pixels.
    """

    def __init__(self, images=None, nrow: int | None = None, pad: int = 1, scale=None, **kwargs):
        super().__init__(format="png", **kwargs)
        self.nrow, self.pad, self.scale = nrow, pad, scale
        if images is not None:
            self.set_images(images)

    def set_images(self, images) -> None:
        """Tile `images` (N, C, H, W) and show them."""
        self.value = grid_png(images, nrow=self.nrow, pad=self.pad, scale=self.scale)


class ImageCompletion:
    """Keep the top rows of a chosen image and let a model draw the rest, several times.

    complete(x, rows_kept, n, temperature) -> n completions (n, C, H, W) in [0, 1]:
        x is `images[i : i + 1]` exactly as handed in (so a torch tensor stays one); the
        callable keeps the first `rows_kept` rows of x and samples the others.
    images: (N, C, H, W) floats in [0, 1], numpy or torch. labels: optional (N,), for the caption.
    n: completions per image. temperature: the slider's start value.

    Shown in one row: the original | the kept rows (the rest grey) | the n completions.
    Controls: `index`, `rows`, `temperature`, and `resample` (draw again). Each change calls
    `complete` once; its result is kept in `.completions` (numpy) and errors go to `.out`.
    """

    def __init__(self, complete, images, labels=None, n: int = 4, temperature: float = 1.0):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.complete, self.images, self.n = complete, images, n
        self.labels = None if labels is None else np.asarray(labels)
        self.shape = tuple(_as_numpy(images[:1]).shape[1:])  # (C, H, W)
        self.completions = None
        self._build_controls(temperature)
        self.render()

    def _build_controls(self, temperature: float) -> None:
        last, height = len(self.images) - 1, self.shape[1]
        self.index = widgets.BoundedIntText(value=0, min=0, max=last, description="image")
        self.rows = widgets.IntSlider(
            value=height // 2, min=0, max=height - 1, description="rows kept",
            continuous_update=False,
        )
        self.temperature = widgets.FloatSlider(
            value=temperature, min=0.0, max=2.0, step=0.05, description="temperature",
            continuous_update=False,
        )
        self.resample = widgets.Button(description="Resample", icon="refresh")
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.out = widgets.Output()
        on_change = self.out.capture()(self.render)
        for c in (self.index, self.rows, self.temperature):
            c.observe(on_change, names="value")
        self.resample.on_click(on_change)
        controls = widgets.HBox([self.index, self.rows, self.temperature, self.resample])
        self.widget = widgets.VBox([controls, self.image, self.caption, self.out])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def render(self, _change=None) -> None:
        """Complete the chosen image and show original | kept rows | completions."""
        i, kept, t = self.index.value, self.rows.value, self.temperature.value
        x = self.images[i : i + 1]
        original = _as_numpy(x).astype(np.float32)  # (1, C, H, W)
        partial = original.copy()
        partial[:, :, kept:] = 0.5  # the rows the model has to draw, in grey
        self.completions = _as_numpy(self.complete(x, kept, self.n, t)).astype(np.float32)
        if self.completions.shape != (self.n, *self.shape):
            raise ValueError(
                f"complete returned {self.completions.shape}, expected {(self.n, *self.shape)}"
            )
        row = np.concatenate([original, partial, self.completions])  # (n + 2, C, H, W)
        g = grid(row, nrow=len(row))
        self.image.value = to_png(g, scale=auto_scale(*self.shape[1:], target=64))
        name = f"image {i}" if self.labels is None else f"image {i} (label {self.labels[i]})"
        self.caption.value = (
            f"{name}: the original, the {kept} row(s) kept, then {self.n} completions "
            f"at temperature {t:.2f}"
        )
