"""Likelihood widgets: read the log-likelihood of an image while you edit it; temperature samples.

Both work through callables, so nothing here imports a model:
    log_likelihood(x) -> nats   x: (1, C, H, W) integer levels (CPU); returns log p(x) in nats
                                (a float or a one-element tensor; a lower bound is fine, say so
                                with `relation="≥"`)
    sample_fn(temperature, seed) -> images (N, C, H, W) in [0, 1]

- `LikelihoodReadout`: pick a test image, click pixels to paint them with the brush level, and
  read log p(x) in nats and in bits/dim, -log2 p(x) / D, with the change from the unedited image.
- `SampleExplorer`: a temperature slider over a grid of samples (same seed, so only T changes).

Controls are built apart from rendering and wired with `observe`/`on_click`; callback errors go
to the widget's `out` (an ipywidgets.Output). `.widget` is the box that displaying shows.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import display

from gentools.widgets.image import ImageGrid, auto_scale, to_png


def _grey(level: int, levels: int) -> str:
    """A pixel level as a CSS grey, #000000 (0) to #ffffff (levels - 1)."""
    v = round(255 * level / (levels - 1))
    return f"#{v:02x}{v:02x}{v:02x}"


class LikelihoodReadout:
    """An editable image and its log-likelihood.

    images: (N, C, H, W) integer levels (uint8 or int). levels: number of levels L.
    `.index` picks the image, `.brush` the level a pixel click paints (all channels),
    `.pixels` the (H*W) buttons in row-major order, `.reset_button` undoes the edits.
    State: `.current` the image index, `.x` (C, H, W) the edited image, `.nats` its log p(x),
    `.original_nats` that of the unedited image.
    """

    def __init__(self, log_likelihood, images, levels: int, labels=None, relation: str = "="):
        self.log_likelihood, self.levels, self.relation = log_likelihood, levels, relation
        self.images = torch.as_tensor(np.asarray(images)).long()  # (N, C, H, W)
        if self.images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W) levels, got {tuple(self.images.shape)}")
        self.labels = None if labels is None else np.asarray(labels)
        self.dims = math.prod(self.images.shape[1:])  # D
        self._build_controls()
        self.select(0)

    def _build_controls(self) -> None:
        _, _, h, w = self.images.shape
        self.index = widgets.BoundedIntText(
            value=0, min=0, max=len(self.images) - 1, description="image"
        )
        self.brush = widgets.IntSlider(
            value=self.levels - 1, min=0, max=self.levels - 1, description="brush level"
        )
        self.reset_button = widgets.Button(description="Reset", icon="undo")
        self.out = widgets.Output()
        self.pixels = []
        side = max(10, min(26, 448 // w))  # px a pixel button: 26 for 8x8 digits, 16 for 28x28
        for i in range(h):
            for j in range(w):
                b = widgets.Button(
                    tooltip=f"row {i}, column {j}",
                    layout=widgets.Layout(width=f"{side}px", height=f"{side}px", padding="0"),
                )
                b.on_click(self.out.capture()(lambda _b, i=i, j=j: self.paint(i, j)))
                self.pixels.append(b)
        board = widgets.GridBox(
            self.pixels,
            layout=widgets.Layout(grid_template_columns=f"repeat({w}, {side + 2}px)",
                                  grid_gap="1px"),
        )
        self.image = widgets.Image(format="png")
        self.readout = widgets.HTML()
        self.index.observe(self.out.capture()(lambda c: self.select(c["new"])), names="value")
        self.reset_button.on_click(self.out.capture()(lambda _b: self.select(self.current)))
        controls = widgets.VBox([self.index, self.brush, self.reset_button, self.image])
        self.widget = widgets.VBox([widgets.HBox([board, controls]), self.readout, self.out])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def select(self, index: int) -> None:
        """Start from test image `index` (discarding edits)."""
        self.current = index
        self.x = self.images[index].clone()  # (C, H, W)
        self.original_nats = self._evaluate()
        self.render()

    def paint(self, i: int, j: int) -> None:
        """Set pixel (i, j) of every channel to the brush level and re-evaluate."""
        self.x[:, i, j] = self.brush.value
        self.render()

    def _evaluate(self) -> float:
        with torch.no_grad():
            return float(self.log_likelihood(self.x[None].clone()))

    def render(self) -> None:
        self.nats = self._evaluate()
        grey = self.x.float().mean(0)  # (H, W): the buttons show the channel mean
        for b, level in zip(self.pixels, grey.round().long().flatten().tolist(), strict=True):
            b.style.button_color = _grey(level, self.levels)
        unit = self.x.float() / (self.levels - 1)  # (C, H, W) in [0, 1]
        self.image.value = to_png(unit, scale=auto_scale(*unit.shape[1:], target=96))
        bpd = -self.nats / (self.dims * math.log(2))  # bits/dim = -log2 p(x) / D
        label = "" if self.labels is None else f" (label {self.labels[self.current]})"
        self.readout.value = (
            f"image {self.current}{label}: log p(x) {self.relation} <b>{self.nats:.2f}</b> nats"
            f", {bpd:.3f} bits/dim; change from the unedited image "
            f"{self.nats - self.original_nats:+.2f} nats"
        )


class SampleExplorer:
    """A temperature slider over a grid of samples; `sample_fn(temperature, seed)` draws them.

    `.temperature` (FloatSlider), `.seed` (IntText), `.new_button` (seed + 1), `.grid`.
    """

    def __init__(self, sample_fn, temperature: float = 0.7, max_temperature: float = 1.5,
                 seed: int = 0, nrow: int | None = None):
        self.sample_fn = sample_fn
        self.temperature = widgets.FloatSlider(
            value=temperature, min=0.0, max=max_temperature, step=0.05, description="temperature"
        )
        self.seed = widgets.IntText(value=seed, description="seed")
        self.new_button = widgets.Button(description="New samples", icon="refresh")
        self.grid = ImageGrid(nrow=nrow)
        self.out = widgets.Output()
        render = self.out.capture()(self.render)
        self.temperature.observe(render, names="value")
        self.seed.observe(render, names="value")
        self.new_button.on_click(self.out.capture()(self._next_seed))
        controls = widgets.HBox([self.temperature, self.seed, self.new_button])
        self.widget = widgets.VBox([controls, self.grid, self.out])
        self.render()

    def _ipython_display_(self) -> None:
        display(self.widget)

    def _next_seed(self, _button=None) -> None:
        self.seed.value += 1  # observe redraws

    def render(self, _change=None) -> None:
        with torch.no_grad():
            images = self.sample_fn(self.temperature.value, self.seed.value)
        self.grid.set_images(images)
