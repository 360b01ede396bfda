"""Notebook widgets: image encoding and grids, latent-space explorers and interpolations, and
`show_source` for the package's own code beside the maths (no model imports)."""

import inspect

from IPython.display import Code

from gentools.widgets.image import (
    ImageGrid,
    auto_scale,
    grid,
    grid_png,
    grid_scale,
    picture,
    to_png,
)
from gentools.widgets.interpolation import Interpolation, interpolate
from gentools.widgets.latent import LatentExplorer, LatentMap, principal_directions

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
    "show_source",
    "to_png",
]


def show_source(*objects: object) -> Code:
    """The source of functions, methods or classes, highlighted as Python, for a notebook."""
    return Code("\n\n".join(inspect.getsource(o) for o in objects), language="python")


from gentools.widgets.image import ImageCompletion as ImageCompletion  # noqa: E402
from gentools.widgets.likelihood import LikelihoodReadout, SampleExplorer  # noqa: E402, F401
from gentools.widgets.text import FillMask, TextGenerator  # noqa: E402, F401
