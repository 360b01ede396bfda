"""Text widgets: streaming generation (GPT) and fill-mask (BERT). No model imports.

- `TextGenerator(generate, encode, decode)`: a prompt box, sliders for temperature, top-k,
  top-p and max tokens, Generate and Stop buttons. Generation runs in a background thread and
  the text appears token by token.
      generate(ids: list[int], stream, max_new_tokens, temperature, top_k, top_p) -> anything
  must call stream(new_tokens) after each token (a (1,) tensor, or an int) and stop as soon as
  stream returns True: `GPT.generate` does. encode: str -> list[int]; decode: list[int] -> str.
- `FillMask(fill, piece)`: a text box with [MASK] and a k slider; a plotly bar chart of the
  top-k tokens and their probabilities for each [MASK] (up to MAX_MASKS).
      fill(text, k) -> (probs (M, k), ids (M, k)), one row per [MASK] (`BERT.fill_mask`'s last
      two outputs); piece(id) -> the token's text.

Controls are wired with `observe`/`on_click`; rendering lives in its own method, and callback
errors go to the widget's `out` (an ipywidgets.Output).
"""

from __future__ import annotations

import html
import threading
import time
import traceback

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import display
from plotly.subplots import make_subplots

MAX_MASKS = 4  # bar charts shown at most (one per [MASK])
REDRAW_SECONDS = 0.05  # least time between two updates of the streamed text


def stream_text(decode, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text of new_ids after the prompt, held back while it ends inside a UTF-8 character
    (a byte-level token can end mid-character: decode then gives U+FFFD)."""
    full, head = decode(prompt_ids + new_ids), decode(prompt_ids)
    text = full[len(head) :] if full.startswith(head) else full
    return text.rstrip("\ufffd")


class TextGenerator:
    """Prompt, sampling sliders, Generate/Stop; `.text` holds the text generated so far.

    `.run(blocking=True)` generates without a click (tests, scripts); `.thread` is the running
    generation's thread (None before the first)."""

    def __init__(self, generate, encode, decode, prompt: str = "", max_tokens: int = 200):
        self.generate, self.encode, self.decode = generate, encode, decode
        self.prompt = widgets.Textarea(value=prompt, description="prompt",
                                       layout=widgets.Layout(width="95%", height="60px"))
        self.temperature = widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05,
                                               description="temperature")
        self.top_k = widgets.IntSlider(value=0, min=0, max=200, description="top-k (0 off)")
        self.top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05,
                                         description="top-p")
        self.max_tokens = widgets.IntSlider(value=max_tokens, min=1, max=2000,
                                            description="max tokens")
        self.generate_button = widgets.Button(description="Generate", icon="play",
                                              button_style="success")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.status = widgets.HTML("")
        self.output = widgets.HTML("")
        self.out = widgets.Output()
        self.generate_button.on_click(self.out.capture()(lambda _: self.run(blocking=False)))
        self.stop_button.on_click(self.out.capture()(lambda _: self.stop()))
        sliders = widgets.VBox([self.temperature, self.top_k, self.top_p, self.max_tokens])
        buttons = widgets.HBox([self.generate_button, self.stop_button, self.status])
        self.widget = widgets.VBox([self.prompt, sliders, buttons, self.output, self.out])
        self.text, self.thread, self.tokens = "", None, 0
        self._stop = threading.Event()

    def _ipython_display_(self) -> None:
        display(self.widget)

    def stop(self) -> None:
        self._stop.set()

    def run(self, blocking: bool = True) -> None:
        """Start a generation from the current prompt and sliders (in a background thread)."""
        if self.thread is not None and self.thread.is_alive():
            return
        self._stop.clear()
        self.text, self.tokens = "", 0
        settings = dict(max_new_tokens=self.max_tokens.value, temperature=self.temperature.value,
                        top_k=self.top_k.value or None, top_p=self.top_p.value)
        self.thread = threading.Thread(target=self._generate, args=(settings,), daemon=True)
        self.generate_button.disabled, self.stop_button.disabled = True, False
        self.thread.start()
        if blocking:
            self.thread.join()

    def _generate(self, settings: dict) -> None:
        prompt_ids, new_ids = self.encode(self.prompt.value), []
        last = [0.0]
        start = time.perf_counter()

        def stream(tokens) -> bool:
            new_ids.append(int(tokens[0]) if hasattr(tokens, "__getitem__") else int(tokens))
            self.tokens = len(new_ids)
            self.text = stream_text(self.decode, prompt_ids, new_ids)
            if time.perf_counter() - last[0] >= REDRAW_SECONDS:
                last[0] = time.perf_counter()
                self._render(start)
            return self._stop.is_set()

        try:
            self.generate(prompt_ids, stream, **settings)
        except Exception:  # a thread's error would vanish: show it in the widget
            self.out.append_stderr(traceback.format_exc())
        finally:
            self.text = self.decode(prompt_ids + new_ids)[len(self.decode(prompt_ids)) :]
            self._render(start, done=True)
            self.generate_button.disabled, self.stop_button.disabled = False, True

    def _render(self, start: float, done: bool = False) -> None:
        prompt = html.escape(self.prompt.value)
        new = html.escape(self.text)
        self.output.value = (f"<pre style='white-space: pre-wrap'>{prompt}"
                             f"<b style='color: #1f77b4'>{new}</b></pre>")
        rate = self.tokens / max(time.perf_counter() - start, 1e-9)
        state = ("stopped" if self._stop.is_set() else "done") if done else "generating"
        self.status.value = f"{state}: {self.tokens} tokens, {rate:.0f} tokens/s"


class FillMask:
    """Text with [MASK] in, a bar chart of the top-k tokens per mask out (`.fig`);
    `.predictions` holds [(token, probability), ...] for each mask. Every chart shares one
    probability axis, from 0 to a little above the largest probability shown."""

    def __init__(self, fill, piece, text: str = "The [MASK] statement", k: int = 8):
        self.fill, self.piece = fill, piece
        self.text = widgets.Text(value=text, description="text", continuous_update=False,
                                 layout=widgets.Layout(width="95%"))
        self.k = widgets.IntSlider(value=k, min=1, max=30, description="top-k",
                                   continuous_update=False)
        self.fig = go.FigureWidget(layout=dict(height=260, margin=dict(l=40, r=10, t=30, b=40),
                                               template="plotly_white"))
        self.out = widgets.Output()
        for w in (self.text, self.k):
            w.observe(self.out.capture()(lambda _: self.update()), names="value")
        self.widget = widgets.VBox([self.text, self.k, self.fig, self.out])
        self.predictions: list = []
        self.update()

    def _ipython_display_(self) -> None:
        display(self.widget)

    def update(self) -> None:
        probs, ids = self.fill(self.text.value, self.k.value)
        self.predictions = [  # per mask: [(token, probability), ...]
            [(self.piece(i), float(p)) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(list(probs)[:MAX_MASKS], list(ids)[:MAX_MASKS], strict=True)
        ]
        self.render()

    def render(self) -> None:
        n = max(1, len(self.predictions))
        titles = [f"[MASK] #{i + 1}" for i in range(n)] if self.predictions else ["no [MASK]"]
        fig = make_subplots(rows=1, cols=n, subplot_titles=titles, shared_yaxes=True)
        for i, preds in enumerate(self.predictions):
            tokens = [repr(t)[1:-1] for t, _ in preds]  # show spaces and newlines
            fig.add_trace(go.Bar(x=tokens, y=[p for _, p in preds], showlegend=False,
                                 hovertemplate="%{x}: %{y:.3f}<extra></extra>"), 1, i + 1)
        top = max((p for preds in self.predictions for _, p in preds), default=1.0)
        fig.update_yaxes(range=[0, min(1.0, 1.1 * top)])  # the same range on every chart
        fig.update_yaxes(title_text="probability", row=1, col=1)
        with self.fig.batch_update():
            self.fig.data = []
            self.fig.layout = fig.layout.update(height=260, template="plotly_white",
                                                margin=dict(l=40, r=10, t=30, b=40))
            self.fig.add_traces(list(fig.data))  # each keeps its subplot's axes
