"""Pictures of the comparison (`gentools.runner.compare`): sample grids side by side, and quality
against training time as a static plotly figure and as a widget that switches the measure.

They draw a `compare.summarise` summary, {model: {column: (mean, std), ...}}, and never
import a model.
"""

from __future__ import annotations

import html
import math
from base64 import b64encode

from gentools.widgets.image import grid_png


def samples_side_by_side(grids: dict, nrow: int = 8) -> str:
    """HTML: one captioned PNG grid per model, side by side (saved as text/html in a notebook);
    each tile is upscaled to about `image.TILE_PX` pixels, an 8x8 digit as a 28x28 image."""
    cells = []
    for name, images in grids.items():
        png = b64encode(grid_png(images, nrow=nrow)).decode("ascii")
        cells.append(
            f'<figure style="margin:4px;text-align:center"><img src="data:image/png;base64,{png}"'
            f' alt="{html.escape(name)} samples"/><figcaption>{html.escape(name)}</figcaption>'
            "</figure>"
        )
    return '<div style="display:flex;flex-wrap:wrap">' + "".join(cells) + "</div>"


# the quality measures a chart can put against training time: label -> (compare.COLUMNS key,
# axis title)
QUALITY = {
    "Fréchet distance": ("fcd", "Fréchet classifier distance (lower is better)"),
    "bits/dim": ("bpd", "test NLL, bits/dim (lower is better; VAE and flow: bounds)"),
    "coverage": ("coverage_min", "smallest class share (higher is better, 0.1 at best)"),
}


def _quality_points(summary: dict[str, dict], measure: str) -> list[dict]:
    """One point per model for `measure` (a QUALITY label); NaN (no such number) hides it."""
    if measure not in QUALITY:
        raise ValueError(f"unknown quality measure {measure!r}; known: {', '.join(QUALITY)}")
    key = QUALITY[measure][0]
    points = []
    for s in summary.values():
        (t, t_sd), (q, q_sd) = s["train_seconds"], s[key]
        shown = not math.isnan(q)
        points.append(dict(
            x=[t], y=[q if shown else None], visible=shown,
            error_x={"type": "data", "array": [t_sd]},
            error_y={"type": "data", "array": [q_sd if shown else 0.0]},
        ))
    return points


def quality_vs_time(summary: dict[str, dict], measure: str = "Fréchet distance"):
    """A plotly figure: a quality measure (a QUALITY label) against training time, one point
    per model with error bars of one standard deviation over the seeds. A model without that
    number (the GAN's NLL) is left out."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, point in zip(summary, _quality_points(summary, measure), strict=True):
        fig.add_trace(go.Scatter(name=name, mode="markers+text", text=[name],
                                 textposition="top center", marker={"size": 12}, **point))
    fig.update_layout(
        title="Quality against training time (mean ± std over the seeds)",
        xaxis_title="training time (s)", yaxis_title=QUALITY[measure][1],
        template="plotly_white", height=420, showlegend=False,
    )
    return fig


class QualityChart:
    """`quality_vs_time` as a widget: buttons pick the measure of quality and redraw.

    `.measure` (ToggleButtons), `.fig` (FigureWidget), `.widget` (what the notebook shows).
    """

    def __init__(self, summary: dict[str, dict], measure: str = "bits/dim"):
        import ipywidgets as widgets
        import plotly.graph_objects as go

        self.summary = summary
        self.measure = widgets.ToggleButtons(options=list(QUALITY), value=measure,
                                             description="quality")
        self.fig = go.FigureWidget(quality_vs_time(summary, measure))
        self.measure.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = widgets.VBox([self.measure, self.fig])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def show(self, measure: str) -> None:
        """Put `measure` (a QUALITY label) on the y axis."""
        points = _quality_points(self.summary, measure)
        with self.fig.batch_update():
            for trace, point in zip(self.fig.data, points, strict=True):
                trace.update(point)
            self.fig.layout.yaxis.title.text = QUALITY[measure][1]
