"""The live training monitor: a callback for `gentools.train.fit` that draws curves, samples
and a working Stop button in a notebook, and leaves a static figure and the last sample grid
behind once training ends.

    mon = Monitor(sample=lambda: model.sample(16), metrics=("loss",))
    state = await fit_async(model, data, cfg, callbacks=[mon])  # in a notebook cell

The monitor never imports a model: it reads `state` (step, history, cfg.steps, stop) and calls
the `sample` callable it is handed.

At the end of training the live figure and sample grid leave the widget, and a static copy of
each is displayed below it: papermill does not save a widget's updates, so an executed
notebook keeps the static copies, and a live session shows each picture once, not twice.

It shows itself at on_start if it is not displayed yet. Cost: `on_step` only records a
timestamp; the figure and the status line are redrawn at most once per `redraw_every`
seconds, and always at `on_eval` and `on_end`. Curves are averaged into at most 2000 bins
live and 500 in the static figure.

NOTE (Stop button): a click is a widget (comm) message, which ipykernel handles while a cell
awaits, not while it computes. So the notebooks train with ``await train.fit_async(...)``,
which yields to the kernel after every step; the click then sets `state.stop`, and training
ends after that step with its checkpoint. Under a plain `train.fit` the click arrives only
when the cell ends; Kernel > Interrupt stops either (training finishes its step, writes its
checkpoint and stops).
"""

from __future__ import annotations

import math
import time
from collections import deque

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from IPython import get_ipython
from IPython.display import display
from plotly.subplots import make_subplots

from gentools.widgets.image import ImageGrid, picture

LIVE_POINTS = 2000  # most points per curve in the live FigureWidget
STATIC_POINTS = 500  # most points per curve in the static figure saved in the notebook
RATE_WINDOW = 50  # steps in the moving window for steps/s and ETA
_COLORS = {"train": "#1f77b4", "val": "#ff7f0e"}


def _show(obj) -> None:
    """display() under IPython; nothing in plain python, where display() prints a long repr."""
    if get_ipython() is not None:
        display(obj)


def _bin_mean(x: list, y: list, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Average (x, y) in at most max_points consecutive bins of near-equal size."""
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(xa) <= max_points:
        return xa, ya
    edges = np.linspace(0, len(xa), max_points + 1).astype(np.int64)  # bin b: [e_b, e_b+1)
    counts = np.diff(edges)
    return np.add.reduceat(xa, edges[:-1]) / counts, np.add.reduceat(ya, edges[:-1]) / counts


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Monitor:
    """Live curves, sample grid, status line and Stop button for `gentools.train.fit`.

    sample: optional `() -> images (N, C, H, W)` in [0, 1] (tensor or array), called at each
        evaluation (on_eval: eval mode, no_grad) to refresh the sample grid.
    metrics: history keys to plot, one subplot each, train and val curves in each.
    redraw_every: least seconds between two redraws during training.
    title: shown above the monitor.

    Display: the monitor is shown by `display(mon)` or as a cell's last value
    (`_ipython_display_`); if it has not been shown when training starts, on_start shows it.
    `mon.widget` is the VBox, `mon.fig` the FigureWidget, `mon.figure()` a static copy. The
    live figure and grid (`mon.live`, the grid only with a `sample` callable) are in the VBox
    while training runs; on_end swaps them for their static copies.
    """

    def __init__(self, sample=None, metrics=("loss",), redraw_every: float = 1.0, title: str = ""):
        self.sample, self.metrics, self.redraw_every = sample, tuple(metrics), float(redraw_every)
        self.title = title
        self._curves = {(m, s): ([], []) for m in self.metrics for s in ("train", "val")}
        self._seen = 0  # history rows already copied into _curves
        self._times: deque = deque(maxlen=RATE_WINDOW)  # (step, perf_counter) of recent steps
        self._last_draw = -math.inf
        self._state = None
        self._displayed = False
        self._last_samples = None  # the grid of the last evaluation, shown again at on_end
        self.redraws = 0  # how many times the figure was redrawn
        self._build_controls()

    # ---- controls -------------------------------------------------------------------------
    def _build_controls(self) -> None:
        n = len(self.metrics)
        fig = make_subplots(rows=1, cols=n, subplot_titles=self.metrics, horizontal_spacing=0.08)
        for i, metric in enumerate(self.metrics):
            for split, mode in (("train", "lines"), ("val", "lines+markers")):
                fig.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        mode=mode,
                        name=split,
                        legendgroup=split,
                        showlegend=(i == 0),
                        line=dict(color=_COLORS[split]),
                        hovertemplate=f"{split} {metric}" + " %{y:.4g}<br>step %{x}<extra></extra>",
                    ),
                    row=1,
                    col=i + 1,
                )
            fig.update_xaxes(title_text="step", row=1, col=i + 1)
        fig.update_layout(
            height=300,
            width=max(450, 380 * n),
            margin=dict(l=50, r=20, t=40, b=40),
            title=self.title or None,
            template="plotly_white",
        )
        self.fig = go.FigureWidget(fig)
        self.samples = ImageGrid()
        self.status = widgets.HTML("waiting for training to start")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger")
        self.out = widgets.Output()  # errors raised in widget callbacks appear here
        self.stop_button.on_click(self.out.capture()(self._on_stop))
        self.bar = widgets.HBox([self.stop_button, self.status])
        pictures = [self.fig] if self.sample is None else [self.fig, self.samples]  # no empty grid
        self.live = widgets.HBox(pictures)
        self.widget = widgets.VBox([self.bar, self.live, self.out])

    def _on_stop(self, _button=None) -> None:
        if self._state is not None:
            self._state.stop = True
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping..."

    def _ipython_display_(self) -> None:
        self._displayed = True
        display(self.widget)

    # ---- callbacks for fit ----------------------------------------------------------------
    def on_start(self, state) -> None:
        self._state = state
        self.stop_button.disabled, self.stop_button.description = False, "Stop"
        now = time.perf_counter()
        self._times.append((state.step, now))
        self.widget.children = (self.bar, self.live, self.out)
        if not self._displayed:
            self._displayed = True
            _show(self.widget)
        self._redraw(state, now)

    def on_step(self, state) -> None:
        now = time.perf_counter()
        self._times.append((state.step, now))
        if now - self._last_draw >= self.redraw_every:
            self._redraw(state, now)

    def on_eval(self, state) -> None:
        if self.sample is not None:
            self._last_samples = self.sample()
            self.samples.set_images(self._last_samples)
        self._redraw(state)

    def on_end(self, state) -> None:
        self._state = None  # training is over: the status line drops the ETA
        self._redraw(state)
        self.stop_button.disabled = True
        self.stop_button.description = "Stopped" if state.stop else "Finished"
        self.widget.children = (self.bar, self.out)  # the static copies below take their place
        _show(self.figure())
        if self._last_samples is not None:  # widgets are not saved by papermill; a PNG is
            _show(picture(self._last_samples))
        print(self.summary(state))

    # ---- rendering ------------------------------------------------------------------------
    def _pull_history(self, history) -> None:
        """Copy the rows added to state.history since the last call into the curves."""
        for row in history[self._seen :]:
            split = row.get("split", "train")
            for metric in self.metrics:
                if metric in row and (metric, split) in self._curves:
                    xs, ys = self._curves[(metric, split)]
                    xs.append(row["step"])
                    ys.append(float(row[metric]))
        self._seen = len(history)

    def _redraw(self, state, now: float | None = None) -> None:
        self._last_draw = time.perf_counter() if now is None else now
        self._pull_history(state.history)
        with self.fig.batch_update():
            for trace, key in zip(self.fig.data, self._curves, strict=True):
                trace.x, trace.y = _bin_mean(*self._curves[key], LIVE_POINTS)
        self.status.value = self.status_text(state)
        self.redraws += 1

    def steps_per_second(self) -> float:
        """Steps per second over the last RATE_WINDOW steps (nan before two steps)."""
        if len(self._times) < 2:
            return math.nan
        (s0, t0), (s1, t1) = self._times[0], self._times[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else math.nan

    def _latest(self, split: str) -> dict[str, float]:
        last = {m: self._curves[(m, split)][1][-1:] for m in self.metrics}
        return {m: ys[0] for m, ys in last.items() if ys}

    def status_text(self, state) -> str:
        """One line: step/total, steps/s, ETA (while training), latest train and val metrics."""
        total = getattr(state.cfg, "steps", None)
        rate = self.steps_per_second()
        parts = [f"step {state.step}/{total}" if total else f"step {state.step}"]
        parts.append(f"{rate:.1f} steps/s" if math.isfinite(rate) else "- steps/s")
        if total and math.isfinite(rate) and rate > 0 and self._state is not None:
            parts.append(f"ETA {_fmt_duration((total - state.step) / rate)}")
        for split in ("train", "val"):
            parts += [f"{split} {k} {v:.4g}" for k, v in self._latest(split).items()]
        return " · ".join(parts)

    def summary(self, state) -> str:
        """The one-line text printed at on_end (saved as text by papermill)."""
        elapsed = getattr(state, "elapsed", None)
        head = f"{'stopped' if state.stop else 'finished'} at step {state.step}"
        if elapsed:
            head += f" in {_fmt_duration(elapsed)} ({state.step / elapsed:.1f} steps/s)"
        metrics = [f"{s} {k} {v:.4g}" for s in ("train", "val") for k, v in self._latest(s).items()]
        return " · ".join([head, *metrics])

    def figure(self, max_points: int = STATIC_POINTS) -> go.Figure:
        """A static go.Figure of the curves, each averaged into at most max_points bins."""
        fig = go.Figure(self.fig)
        for trace, key in zip(fig.data, self._curves, strict=True):
            trace.x, trace.y = _bin_mean(*self._curves[key], max_points)
        return fig
