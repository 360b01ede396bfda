"""Latent-space exploration widgets shared by the VAE, GAN and flow notebooks.

Everything works through two callables, so nothing here imports a model:
    encode(x) -> z        x: (N, C, H, W) float tensor in [0, 1]; z: (N, d) (e.g. posterior means)
    decode(z) -> images   z: (N, d); images: (N, C, H, W) float in [0, 1]
    decode(z, label)      the same for a conditional decoder (`classes=` given): label an int
Both are called under torch.no_grad(). They receive CPU tensors (the LatentExplorer's codes live
on the device of its z0 / directions): move them to the model's device inside the callable.

- `principal_directions(z, k)`: PCA of codes, the axes the sliders and the map use.
- `interpolate(z_a, z_b, n, mode)`: linear interpolation, or spherical (slerp, Shoemake 1985,
  "Animating rotation with quaternion curves", https://doi.org/10.1145/325165.325242), which
  White (2016, "Sampling generative networks", https://arxiv.org/abs/1609.04468) recommends
  for Gaussian latents because lerp midpoints have an atypically small norm.
- `LatentExplorer`: one slider per latent dimension or per principal direction (and a class
  selector for a conditional decoder), around a fixed centre or around a code drawn from the
  prior, with a button that draws a new one.
- `Interpolation`: a row of decodes between two test images.
- `RandomInterpolation`: a row of decodes between two prior draws chosen by seed, with a
  truncation slider and an optional class selector (for the GAN, which has no encoder).
- `LatentMap`: a 2-D scatter of the encoded test set; click a point to decode its full code.

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

from gentools.widgets.image import auto_scale, grid, to_png

TILE_PX = 64  # decoded tiles are upscaled to about this many pixels


def _images_tensor(images) -> torch.Tensor:
    """(N, C, H, W) float32 tensor from a tensor or an array (uint8 is scaled to [0, 1])."""
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _tile_scale(images: torch.Tensor) -> int:
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


def interpolate(z_a, z_b, n: int, mode: str = "linear") -> torch.Tensor:
    """n codes (n, d) from z_a to z_b (both (d,)), endpoints exact.

    mode "linear": z_t = (1−t) z_a + t z_b. mode "spherical" (slerp):
    z_t = [sin((1−t)Ω) z_a + sin(tΩ) z_b] / sin Ω, with cos Ω = ẑ_a·ẑ_b; it falls back to
    linear when Ω ≈ 0 (or ≈ π), where sin Ω vanishes.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    z_a, z_b = torch.as_tensor(z_a), torch.as_tensor(z_b)
    dtype = torch.promote_types(torch.promote_types(z_a.dtype, z_b.dtype), torch.float32)
    z_a, z_b = z_a.to(dtype), z_b.to(device=z_a.device, dtype=dtype)
    t = torch.linspace(0.0, 1.0, n, dtype=z_a.dtype, device=z_a.device)[:, None]  # (n, 1)
    t[0], t[-1] = 0.0, 1.0
    if mode == "linear":
        return (1 - t) * z_a + t * z_b  # (n, d)
    if mode != "spherical":
        raise ValueError(f"mode must be 'linear' or 'spherical', got {mode!r}")
    norms = z_a.norm() * z_b.norm()
    cos = (z_a @ z_b / norms).clamp(-1.0, 1.0) if norms > 0 else z_a.new_tensor(1.0)
    omega = torch.arccos(cos)  # Ω
    sin_omega = torch.sin(omega)
    if sin_omega < 1e-6:
        return (1 - t) * z_a + t * z_b
    w_a = torch.sin((1 - t) * omega) / sin_omega  # (n, 1)
    w_b = torch.sin(t * omega) / sin_omega  # (n, 1)
    return w_a * z_a + w_b * z_b  # (n, d)


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
        self.image.value = to_png(x[0], scale=_tile_scale(x) * 2)

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


class Interpolation:
    """A row of decodes from encode(images[a]) to encode(images[b]), with the originals at the ends.

    Controls: `index_a`, `index_b` (BoundedIntText), `mode` ("linear"/"spherical"), `steps`.
    """

    def __init__(self, encode, decode, images, labels=None, steps: int = 8):
        self.encode, self.decode = encode, decode
        self.images = _images_tensor(images)  # (N, C, H, W)
        self.labels = None if labels is None else np.asarray(labels)
        self.scale = _tile_scale(self.images)
        self._build_controls(steps)
        self.render()

    def _build_controls(self, steps: int) -> None:
        last = len(self.images) - 1
        self.index_a = widgets.BoundedIntText(value=0, min=0, max=last, description="from")
        self.index_b = widgets.BoundedIntText(value=min(1, last), min=0, max=last, description="to")
        self.mode = widgets.ToggleButtons(options=["linear", "spherical"], value="linear")
        self.steps = widgets.IntSlider(value=steps, min=2, max=max(32, steps), description="steps")
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.out = widgets.Output()
        on_change = self.out.capture()(self.render)
        for c in (self.index_a, self.index_b, self.mode, self.steps):
            c.observe(on_change, names="value")
        pickers = widgets.HBox([self.index_a, self.index_b, self.mode])
        self.widget = widgets.VBox([pickers, self.steps, self.image, self.caption, self.out])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def _name(self, i: int) -> str:
        return f"index {i}" if self.labels is None else f"index {i} (label {self.labels[i]})"

    def render(self, _change=None) -> None:
        """Encode both ends, interpolate, decode, show originals | decodes | original."""
        a, b, n = self.index_a.value, self.index_b.value, self.steps.value
        ends = self.images[[a, b]]  # (2, C, H, W)
        with torch.no_grad():
            z = self.encode(ends)  # (2, d)
            x = self.decode(interpolate(z[0], z[1], n, self.mode.value)).detach().cpu()
        row = torch.cat([ends[:1].cpu(), x.float(), ends[1:].cpu()])  # (n + 2, C, H, W)
        self.image.value = to_png(grid(row, nrow=len(row)), scale=self.scale)
        self.caption.value = (
            f"{self._name(a)} → {self._name(b)}, {self.mode.value}, {n} steps "
            "(first and last tiles: the originals)"
        )


class RandomInterpolation:
    """A row of decodes between two codes drawn from the prior, for models without an encoder
    (the GAN): each end is chosen by its seed, with a truncation slider and, for a conditional
    decoder, a class selector.

    draw(seed, truncation) -> z (d,): the prior draw for `seed`; truncation is None (plain
        N(0, I)) or the threshold of the slider (the model's truncation trick).
    decode: decode(z) (N, d) -> images, or decode(z, label) when `classes` is given.
    Controls: `seed_a`, `seed_b` (IntText), `mode` ("linear"/"spherical", default spherical),
    `truncation` (FloatSlider; 0 means off), `steps`, and `label` (Dropdown) with `classes`.
    """

    def __init__(self, draw, decode, classes=None, steps: int = 8, max_truncation: float = 3.0):
        self.draw, self.decode = draw, decode
        self.classes = None if classes is None else [str(c) for c in classes]
        self._build_controls(steps, max_truncation)
        self.render()

    def _build_controls(self, steps: int, max_truncation: float) -> None:
        self.seed_a = widgets.IntText(value=0, description="seed from")
        self.seed_b = widgets.IntText(value=1, description="seed to")
        self.mode = widgets.ToggleButtons(options=["linear", "spherical"], value="spherical")
        self.truncation = widgets.FloatSlider(
            value=0.0,
            min=0.0,
            max=max_truncation,
            step=0.1,
            description="truncation",
            readout_format=".1f",
        )
        self.steps = widgets.IntSlider(value=steps, min=2, max=max(32, steps), description="steps")
        controls = [self.seed_a, self.seed_b, self.mode, self.truncation, self.steps]
        if self.classes is not None:
            options = [(name, i) for i, name in enumerate(self.classes)]
            self.label = widgets.Dropdown(options=options, value=0, description="class")
            controls.append(self.label)
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.out = widgets.Output()
        on_change = self.out.capture()(self.render)
        for c in controls:
            c.observe(on_change, names="value")
        rows = [widgets.HBox(controls[:3]), widgets.HBox(controls[3:])]
        self.widget = widgets.VBox([*rows, self.image, self.caption, self.out])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def codes(self) -> torch.Tensor:
        """The (steps, d) codes of the current row."""
        t = self.truncation.value or None  # 0: no truncation
        z_a, z_b = self.draw(self.seed_a.value, t), self.draw(self.seed_b.value, t)
        return interpolate(z_a, z_b, self.steps.value, self.mode.value)

    def render(self, _change=None) -> None:
        """Draw both ends, interpolate, decode and show the row."""
        with torch.no_grad():
            z = self.codes()
            if self.classes is None:
                x = self.decode(z).detach().cpu().float()  # (n, C, H, W)
            else:
                x = self.decode(z, self.label.value).detach().cpu().float()
        self.image.value = to_png(grid(x, nrow=len(x)), scale=_tile_scale(x))
        t = f"truncation {self.truncation.value:.1f}" if self.truncation.value else "no truncation"
        label = "" if self.classes is None else f", class {self.classes[self.label.value]}"
        self.caption.value = (
            f"seed {self.seed_a.value} → seed {self.seed_b.value}, {self.mode.value}, "
            f"{self.steps.value} steps, {t}{label}"
        )


class LatentMap:
    """The encoded test set in 2-D (first two principal directions when d > 2), one trace per
    label; clicking a point decodes that point's full d-dim code and shows it beside the map.
    Until the first click the image is hidden (an empty image would show as a broken one).

    `select(index)` is what a click calls. `.fig` (FigureWidget), `.image`, `.caption`, `.z`.
    """

    def __init__(self, encode, decode, images, labels, batch_size: int = 256):
        self.decode = decode
        self.images = _images_tensor(images)  # (N, C, H, W)
        self.labels = np.asarray(labels)
        self.scale = _tile_scale(self.images) * 2
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
