"""Notebook widgets: image encoding and grids, and latent-space explorers (no model imports)."""

from gentools.widgets.image import (
    ImageGrid,
    auto_scale,
    grid,
    grid_png,
    grid_scale,
    picture,
    to_png,
)
from gentools.widgets.latent import (
    Interpolation,
    LatentExplorer,
    LatentMap,
    interpolate,
    principal_directions,
)

__all__ = [
    "ImageGrid",
    "Interpolation",
    "LatentExplorer",
    "LatentMap",
    "auto_scale",
    "grid",
    "grid_png",
    "grid_scale",
    "interpolate",
    "picture",
    "principal_directions",
    "to_png",
]
from gentools.widgets.image import ImageCompletion as ImageCompletion  # noqa: E402
from gentools.widgets.likelihood import LikelihoodReadout, SampleExplorer  # noqa: E402, F401
from gentools.widgets.text import FillMask, TextGenerator  # noqa: E402, F401
