"""The attention widget shared by the GPT and BERT notebooks. No model imports.

`AttentionView(attention, text)`: a text box, a layer and a head picker, and a plotly heatmap
of that head's attention weights over the tokens of the text (rows: queries, columns: keys).
The head picker also offers "mean", the average over the heads.

    attention(text) -> (tokens: list[str], weights: (layers, heads, T, T) tensor or array)

The callable runs when the text changes; the pickers only redraw.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from IPython.display import display

MEAN = "mean"


class AttentionView:
    """`.tokens`, `.weights` (L, H, T, T) numpy, `.matrix()` the (T, T) shown, `.fig`."""

    def __init__(self, attention, text: str = ""):
        self.attention = attention
        self.text = widgets.Text(value=text, description="text", continuous_update=False,
                                 layout=widgets.Layout(width="95%"))
        self.layer = widgets.Dropdown(options=[0], value=0, description="layer")
        self.head = widgets.Dropdown(options=[MEAN, 0], value=0, description="head")
        self.fig = go.FigureWidget(
            go.Heatmap(z=[[0.0]], colorscale="Viridis", zmin=0, zmax=1,
                       hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"),
            layout=dict(height=480, width=560, template="plotly_white",
                        margin=dict(l=80, r=10, t=30, b=80),
                        xaxis=dict(title="key", tickangle=-90),
                        yaxis=dict(title="query", autorange="reversed")),
        )
        self.out = widgets.Output()
        self.text.observe(self.out.capture()(lambda _: self.update()), names="value")
        for w in (self.layer, self.head):
            w.observe(self.out.capture()(lambda _: self.render()), names="value")
        pickers = widgets.HBox([self.layer, self.head])
        self.widget = widgets.VBox([self.text, pickers, self.fig, self.out])
        self.tokens: list[str] = []
        self.weights = np.zeros((1, 1, 0, 0))
        self.update()

    def _ipython_display_(self) -> None:
        display(self.widget)

    def update(self) -> None:
        """Run the attention callable on the text, then redraw."""
        tokens, weights = self.attention(self.text.value)
        weights = np.asarray(weights.cpu() if hasattr(weights, "cpu") else weights, np.float64)
        if weights.ndim != 4 or weights.shape[2:] != (len(tokens), len(tokens)):
            raise ValueError(f"attention weights must be (layers, heads, {len(tokens)}, "
                             f"{len(tokens)}), got {weights.shape}")
        self.tokens, self.weights = list(tokens), weights
        n_layers, n_heads = weights.shape[:2]
        with self.layer.hold_trait_notifications(), self.head.hold_trait_notifications():
            if len(self.layer.options) != n_layers:
                self.layer.options, self.layer.value = list(range(n_layers)), 0
            if len(self.head.options) != n_heads + 1:
                self.head.options, self.head.value = [MEAN, *range(n_heads)], 0
        self.render()

    def matrix(self) -> np.ndarray:
        """The (T, T) weights on show: one head, or the mean over the heads."""
        per_layer = self.weights[self.layer.value]  # (H, T, T)
        return per_layer.mean(0) if self.head.value == MEAN else per_layer[self.head.value]

    def render(self) -> None:
        # unique labels, so repeated tokens get their own rows: "3:e"
        labels = [f"{i}:{t!r}"[:24] for i, t in enumerate(self.tokens)]
        with self.fig.batch_update():
            self.fig.data[0].z = self.matrix()
            self.fig.data[0].x, self.fig.data[0].y = labels, labels
            self.fig.layout.title = f"layer {self.layer.value}, head {self.head.value}"
