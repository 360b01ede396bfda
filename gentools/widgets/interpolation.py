"""Rows of decodes between two latent codes, for the VAE, GAN, flow and diffusion notebooks.

On the callables of `gentools.widgets.latent` (encode(x) -> z, decode(z) -> images, or
decode(z, label) for a conditional decoder), called under torch.no_grad(); nothing here imports
a model.

- `interpolate(z_a, z_b, n, mode)`: linear interpolation, or spherical (slerp, Shoemake 1985,
  "Animating rotation with quaternion curves", https://doi.org/10.1145/325165.325242), which
  White (2016, "Sampling generative networks", https://arxiv.org/abs/1609.04468) recommends
  for Gaussian latents because lerp midpoints have an atypically small norm.
- `Interpolation`: a row of decodes between two test images.
- `RandomInterpolation`: a row of decodes between two prior draws chosen by seed, with a
  truncation slider and an optional class selector (for the GAN, which has no encoder).

Each widget builds its controls, wires them with `observe`, and renders in a separate method;
`.widget` is its box and displaying the object displays that box. Errors raised in callbacks
appear in the widget's `out` (an ipywidgets.Output).
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import display

from gentools.widgets.image import grid, to_png
from gentools.widgets.latent import images_tensor, tile_scale


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


class Interpolation:
    """A row of decodes from encode(images[a]) to encode(images[b]), with the originals at the ends.

    Controls: `index_a`, `index_b` (BoundedIntText), `mode` ("linear"/"spherical"), `steps`.
    """

    def __init__(self, encode, decode, images, labels=None, steps: int = 8):
        self.encode, self.decode = encode, decode
        self.images = images_tensor(images)  # (N, C, H, W)
        self.labels = None if labels is None else np.asarray(labels)
        self.scale = tile_scale(self.images)
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
        self.image.value = to_png(grid(x, nrow=len(x)), scale=tile_scale(x))
        t = f"truncation {self.truncation.value:.1f}" if self.truncation.value else "no truncation"
        label = "" if self.classes is None else f", class {self.classes[self.label.value]}"
        self.caption.value = (
            f"seed {self.seed_a.value} → seed {self.seed_b.value}, {self.mode.value}, "
            f"{self.steps.value} steps, {t}{label}"
        )
