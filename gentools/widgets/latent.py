"""Latent-space exploration widgets shared by the VAE, GAN and flow notebooks.

Everything works through two callables, so nothing here imports a model:
    encode(x) -> z        x: (N, C, H, W) float tensor in [0, 1]; z: (N, d) (e.g. posterior means)
    decode(z) -> images   z: (N, d); images: (N, C, H, W) float in [0, 1]
    decode(z, label)      the same for a conditional decoder (`classes=` given): label an int
Both are called under torch.no_grad(). They receive CPU tensors (the LatentExplorer's codes live
on the device of its z0 / directions): move them to the model's device inside the callable.

- `principal_directions(z, k)`: PCA of codes, the axes the sliders and the map use.
- `LatentExplorer`: one slider per latent dimension or per principal direction (and a class
  selector for a conditional decoder), around a fixed centre or around a code drawn from the
  prior, with a button that draws a new one.
- `LatentMap`: a 2-D scatter of the encoded test set; click a point to decode its full code.

Rows of decodes between two codes (`interpolate`, `Interpolation`, `RandomInterpolation`) are
in `gentools.widgets.interpolation`, on the same two callables.

Each widget builds its controls, wires them with `observe`, and renders in a separate method;
`.widget` is its box and displaying the object displays that box. Errors raised in callbacks
appear in the widget's `out` (an ipywidgets.Output).
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display

from gentools.widgets.image import auto_scale, to_png

TILE_PX = 64  # decoded tiles are upscaled to about this many pixels


def images_tensor(images) -> torch.Tensor:
    """(N, C, H, W) float32 tensor from a tensor or an array (uint8 is scaled to [0, 1])."""
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def tile_scale(images: torch.Tensor) -> int:
    """The integer upscaling of decoded tiles (N, C, H, W): each about TILE_PX pixels."""
    return auto_scale(images.shape[-2], images.shape[-1], target=TILE_PX)


def principal_directions(z, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of codes z (N, d): the top-k unit directions (k, d) and the std of z along each (k,).

    Each direction's sign is fixed so that its largest-magnitude component is positive.
    """
    z = torch.as_tensor(z).float()  # (N, d)
    zc = z - z.mean(0, keepdim=True)  # (N, d)
    _, s, vh = torch.linalg.svd(zc, full_matrices=False)  # zc = U diag(s) Vh; vh: (r, d)
    std = s / math.sqrt(max(z.shape[0] - 1, 1))  # σ_k = s_k / √(N−1)
    sign = torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))  # (r, 1)
    vh = vh * torch.where(sign == 0, torch.ones_like(sign), sign)
    return vh[:k], std[:k]


class LatentExplorer:
    """Sliders that move a code z = z0 + Σ_k v_k σ_k u_k; the decoded image updates live.

    decode: the decoder callable. dim: latent size d. z0: the centre (d,), default zeros.
    draw: optional draw(seed) -> (d,), a code from the prior: the centre z0 is then draw(seed),
        and a `.code_seed` box and a "New code" button (`.new_code`, seed + 1) draw another
        (for a GAN, whose z = 0 is not a typical code). Give z0 or draw, not both.
    directions: (k, d) unit directions u_k (e.g. from principal_directions); default the
        coordinate axes, allowed only when dim <= max_sliders. std: (k,) σ_k, so slider values
        v_k are in standard deviations; default ones (a N(0, I) prior).
    max_sliders: the most sliders shown. scale: slider range [-scale, scale].
    classes: optional class names for a conditional decoder: a `.label` dropdown appears and
        decode is called as decode(z, label) with the selected class index.
    `.sliders`, `.image`, `.z` (current code, (d,)), `.reset()`.
    """

    def __init__(
        self,
        decode,
        dim: int,
        z0=None,
        directions=None,
        std=None,
        max_sliders: int = 8,
        scale: float = 3.0,
        classes=None,
        draw=None,
        seed: int = 0,
    ):
        if z0 is not None and draw is not None:
            raise ValueError("give z0 (a fixed centre) or draw (centres from the prior), not both")
        self.decode, self.draw = decode, draw
        if draw is not None:
            z0 = torch.as_tensor(draw(seed)).float()  # (d,)
        self.classes = None if classes is None else [str(c) for c in classes]
        if directions is None:
            if dim > max_sliders:
                raise ValueError(
                    f"dim={dim} > max_sliders={max_sliders}: pass directions=, e.g. "
                    "dirs, std = principal_directions(z, max_sliders)"
                )
            directions, names = torch.eye(dim), [f"z[{i}]" for i in range(dim)]
        else:
            directions = torch.as_tensor(directions).float()[:max_sliders]
            names = [f"dir {i}" for i in range(directions.shape[0])]
        if directions.shape[1] != dim:
            raise ValueError(f"directions must be (k, {dim}), got {tuple(directions.shape)}")
        device = directions.device if z0 is None else torch.as_tensor(z0).device
        self.z0 = torch.zeros(dim, device=device) if z0 is None else torch.as_tensor(z0).float()
        self.directions = directions.to(device)  # (k, d)
        k = directions.shape[0]
        self.std = (torch.ones(k) if std is None else torch.as_tensor(std).float()[:k]).to(device)
        self._building = True
        self._build_controls(names, scale, seed)
        self._building = False
        self.render()

    def _build_controls(self, names: list[str], scale: float, seed: int) -> None:
        self.sliders = [
            widgets.FloatSlider(
                value=0.0,
                min=-scale,
                max=scale,
                step=0.05,
                description=name,
                readout_format=".2f",
                continuous_update=True,
            )
            for name in names
        ]
        self.reset_button = widgets.Button(description="Reset", icon="undo")
        self.image = widgets.Image(format="png")
        self.out = widgets.Output()
        on_change = self.out.capture()(self._on_change)
        for s in self.sliders:
            s.observe(on_change, names="value")
        self.reset_button.on_click(self.out.capture()(self.reset))
        extra = []
        if self.classes is not None:
            options = [(name, i) for i, name in enumerate(self.classes)]
            self.label = widgets.Dropdown(options=options, value=0, description="class")
            self.label.observe(on_change, names="value")
            extra = [self.label]
        buttons = [self.reset_button]
        if self.draw is not None:
            self.code_seed = widgets.IntText(value=seed, description="code seed")
            self.code_seed.observe(self.out.capture()(self._new_centre), names="value")
            self.new_code = widgets.Button(description="New code", icon="random")
            self.new_code.on_click(self.out.capture()(self._next_code))
            extra, buttons = [*extra, self.code_seed], [self.new_code, self.reset_button]
        controls = widgets.VBox([*extra, *self.sliders, widgets.HBox(buttons)])
        self.widget = widgets.HBox([controls, widgets.VBox([self.image, self.out])])

    def _ipython_display_(self) -> None:
        display(self.widget)

    @property
    def z(self) -> torch.Tensor:
        """The current code (d,): z0 + Σ_k v_k σ_k u_k."""
        v = torch.tensor([s.value for s in self.sliders], device=self.z0.device)  # (k,)
        return self.z0 + (v * self.std) @ self.directions  # (d,)

    def _on_change(self, _change=None) -> None:
        if not self._building:
            self.render()

    def render(self) -> None:
        """Decode the current code and show it."""
        with torch.no_grad():
            if self.classes is None:
                x = self.decode(self.z[None])  # (1, C, H, W)
            else:
                x = self.decode(self.z[None], self.label.value)  # (1, C, H, W)
        self.image.value = to_png(x[0], scale=tile_scale(x) * 2)

    def _next_code(self, _button=None) -> None:
        self.code_seed.value += 1  # observe draws the new centre

    def _new_centre(self, _change=None) -> None:
        """Centre on draw(code seed), the sliders back to 0."""
        z0 = torch.as_tensor(self.draw(self.code_seed.value)).float()
        self.z0 = z0.to(self.z0.device)  # (d,)
        self.reset()

    def reset(self, _button=None) -> None:
        """All sliders back to 0 (z = z0), with a single redraw."""
        self._building = True
        try:
            for s in self.sliders:
                s.value = 0.0
        finally:
            self._building = False
        self.render()


class LatentMap:
    """The encoded test set in 2-D (first two principal directions when d > 2), one trace per
    label; clicking a point decodes that point's full d-dim code and shows it beside the map.
    Until the first click the image is hidden (an empty image would show as a broken one).

    `select(index)` is what a click calls. `.fig` (FigureWidget), `.image`, `.caption`, `.z`.
    """

    def __init__(self, encode, decode, images, labels, batch_size: int = 256):
        self.decode = decode
        self.images = images_tensor(images)  # (N, C, H, W)
        self.labels = np.asarray(labels)
        self.scale = tile_scale(self.images) * 2
        with torch.no_grad():
            self.z = torch.cat(
                [
                    encode(self.images[i : i + batch_size]).detach()
                    for i in range(0, len(self.images), batch_size)
                ]
            )  # (N, d)
        self.xy, axis_names = self._project(self.z.cpu().float())
        self._build_controls(axis_names)

    @staticmethod
    def _project(z: torch.Tensor) -> tuple[np.ndarray, tuple[str, str]]:
        """(N, d) codes -> (N, 2) coordinates and axis titles."""
        if z.shape[1] > 2:
            dirs, _ = principal_directions(z, 2)  # (2, d)
            return ((z - z.mean(0)) @ dirs.T).numpy(), ("PC 1", "PC 2")  # (N, 2)
        if z.shape[1] == 2:
            return z.numpy(), ("z[0]", "z[1]")
        return torch.cat([z, torch.zeros_like(z)], 1).numpy(), ("z[0]", "")

    def _build_controls(self, axis_names: tuple[str, str]) -> None:
        self._trace_indices = []
        traces = []
        for lab in np.unique(self.labels):
            idx = np.flatnonzero(self.labels == lab)
            self._trace_indices.append(idx)
            traces.append(
                go.Scatter(
                    x=self.xy[idx, 0],
                    y=self.xy[idx, 1],
                    mode="markers",
                    name=str(lab),
                    customdata=idx,
                    marker=dict(size=6, opacity=0.8),
                    hovertemplate=f"label {lab}<br>index %{{customdata}}<extra></extra>",
                )
            )
        traces.append(
            go.Scatter(
                x=[],
                y=[],
                mode="markers",
                name="selected",
                showlegend=False,
                hoverinfo="skip",
                marker=dict(symbol="x", size=14, color="black"),
            )
        )
        self.fig = go.FigureWidget(
            data=traces,
            layout=dict(
                width=520,
                height=440,
                margin=dict(l=50, r=20, t=30, b=40),
                template="plotly_white",
                xaxis_title=axis_names[0],
                yaxis_title=axis_names[1],
                legend_title_text="label",
            ),
        )
        self.image = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        self.caption = widgets.HTML("click a point")
        self.out = widgets.Output()
        on_click = self.out.capture()(self._on_click)
        for trace in self.fig.data[:-1]:
            trace.on_click(on_click)
        self.widget = widgets.HBox([self.fig, widgets.VBox([self.image, self.caption, self.out])])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def _on_click(self, trace, points, _selector=None) -> None:
        if points.point_inds:  # plotly calls every trace; only the clicked one has points
            self.select(int(trace.customdata[points.point_inds[0]]))

    def select(self, index: int) -> None:
        """Decode the full code of test image `index`, show it, and mark it on the map."""
        with torch.no_grad():
            x = self.decode(self.z[index : index + 1])  # (1, C, H, W)
        self.image.value = to_png(x[0], scale=self.scale)
        self.image.layout.display = None  # shown from the first click on
        self.caption.value = f"label {self.labels[index]}, index {index}"
        with self.fig.batch_update():
            self.fig.data[-1].x, self.fig.data[-1].y = [self.xy[index, 0]], [self.xy[index, 1]]
