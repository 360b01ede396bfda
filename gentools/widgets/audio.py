"""The audio generation widget: pick an instrument, a pitch, a temperature and a length, press
Generate, watch a progress bar, then hear the clip beside its waveform and spectrogram.

Nothing here imports a model. The widget is handed one callable:
    generate(instrument, pitch, temperature, n_samples, progress) -> waveform
instrument and pitch are indices into the lists the widget shows, waveform is a 1-D float
array in [-1, 1], and progress(step, total) may be called after each generated sample (the
widget moves its IntProgress at most about 100 times per clip, since every widget update is
a message to the browser).

Given `real(instrument, pitch) -> waveform or None` as well (for example a test clip of that
instrument and pitch), a second player beside the first plays that real note after each
Generate, so the two can be heard side by side.

The player is an `ipywidgets.Audio` holding 16-bit PCM WAV bytes written with the stdlib
`wave` module (`wav_bytes`); the pictures are static plotly figures shown in an Output.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from IPython.display import clear_output, display
from plotly.subplots import make_subplots

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
    """MIDI note number -> name with octave: 60 -> "C4", 69 -> "A4"."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def wav_bytes(x, sample_rate: int) -> bytes:
    """Mono waveform in [-1, 1] (clipped) -> the bytes of a 16-bit PCM WAV file."""
    pcm = np.round(np.clip(np.asarray(x, dtype=np.float64), -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    return buf.getvalue()


def spectrogram(x, sample_rate: int, window: int = 256, hop: int = 64):
    """Magnitude STFT in dB with a Hann window: (times (F,), freqs (K,), dB (K, F))."""
    x = np.asarray(x, dtype=np.float64)
    x = np.pad(x, (0, max(0, window - len(x))))
    starts = np.arange(0, len(x) - window + 1, hop)
    frames = x[starts[:, None] + np.arange(window)[None, :]] * np.hanning(window)  # (F, window)
    mag = np.abs(np.fft.rfft(frames, axis=1)).T  # (K, F)
    db = 20 * np.log10(mag + 1e-6)  # dB re full scale of one bin
    return (starts + window / 2) / sample_rate, np.fft.rfftfreq(window, 1 / sample_rate), db


def waveform_figure(x, sample_rate: int, title: str = "") -> go.Figure:
    """Waveform (left) and spectrogram (right) of one clip."""
    x = np.asarray(x, dtype=np.float64)
    times, freqs, db = spectrogram(x, sample_rate)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("waveform", "spectrogram"))
    fig.add_trace(go.Scatter(x=np.arange(len(x)) / sample_rate, y=x, mode="lines",
                             line=dict(width=1), name="x(t)"), row=1, col=1)
    fig.add_trace(go.Heatmap(x=times, y=freqs, z=db, colorscale="Viridis", zmin=db.max() - 80,
                             colorbar=dict(title="dB")), row=1, col=2)
    fig.update_xaxes(title_text="seconds")
    fig.update_yaxes(title_text="amplitude", range=[-1, 1], row=1, col=1)
    fig.update_yaxes(title_text="Hz", row=1, col=2)
    fig.update_layout(height=300, width=900, title=title, showlegend=False,
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig


class AudioGenerator:
    """Controls (instrument, pitch, temperature, length, Generate), a progress bar, the player
    and the pictures. `generate_clip()` does what the button does; `.waveform` holds the
    last clip and `.figure` its figure."""

    def __init__(
        self,
        generate: Callable,
        instruments: Sequence[str],
        pitches: Sequence[int],
        sample_rate: int,
        temperature: float = 1.0,
        seconds: float = 0.25,
        max_seconds: float = 2.0,
        real: Callable | None = None,
    ):
        self.generate, self.sample_rate, self.real = generate, sample_rate, real
        self.instrument = widgets.Dropdown(
            options=[(name, i) for i, name in enumerate(instruments)], value=0,
            description="instrument")
        self.pitch = widgets.Dropdown(
            options=[(f"{note_name(m)} ({m})", i) for i, m in enumerate(pitches)],
            value=len(pitches) // 2, description="pitch")
        self.temperature = widgets.FloatSlider(
            value=temperature, min=0.05, max=2.0, step=0.05, description="temperature")
        self.seconds = widgets.FloatSlider(
            value=seconds, min=0.05, max=max_seconds, step=0.05, description="seconds")
        self.button = widgets.Button(description="Generate", button_style="primary",
                                     icon="play")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="sampling")
        self.player = widgets.Audio(format="wav", autoplay=False, loop=False)
        self.real_player = widgets.Audio(format="wav", autoplay=False, loop=False)
        self.real_label = widgets.Label("real note: press Generate")
        self.real_waveform: np.ndarray | None = None
        self.plot, self.out = widgets.Output(), widgets.Output()
        self.waveform: np.ndarray | None = None
        self.figure: go.Figure | None = None
        self.button.on_click(lambda _: self._on_click())
        controls = widgets.VBox([self.instrument, self.pitch, self.temperature, self.seconds,
                                 widgets.HBox([self.button, self.progress])])
        players = widgets.VBox([widgets.Label("generated"), self.player])
        if real is not None:
            players.children += (self.real_label, self.real_player)
        self.widget = widgets.VBox([widgets.HBox([controls, players]), self.plot, self.out])

    @property
    def n_samples(self) -> int:
        return max(1, int(round(self.seconds.value * self.sample_rate)))

    def _on_click(self) -> None:
        with self.out:  # errors land in the widget's Output, where JupyterLab shows them
            self.out.clear_output()
            self.generate_clip()

    def _report(self, step: int, total: int) -> None:
        """progress(step, total) for the generator: moves the bar about 100 times per clip."""
        if step == total or step - self.progress.value >= max(1, total // 100):
            self.progress.value = step

    def generate_clip(self) -> np.ndarray:
        """Generate with the current controls, then update the player and the pictures."""
        n = self.n_samples
        self.button.disabled = True
        self.progress.max, self.progress.value = n, 0
        try:
            x = self.generate(self.instrument.value, self.pitch.value, self.temperature.value,
                              n, self._report)
        finally:
            self.button.disabled = False
        self.waveform = np.asarray(x, dtype=np.float64).reshape(-1)
        self.progress.value = n
        self.player.value = wav_bytes(self.waveform, self.sample_rate)
        self._show_real()
        self.figure = waveform_figure(
            self.waveform, self.sample_rate,
            f"{self.instrument.label}, {self.pitch.label}, T = {self.temperature.value:g}")
        with self.plot:
            clear_output(wait=True)
            display(self.figure)
        return self.waveform

    def _show_real(self) -> None:
        """The real note of the current instrument and pitch in the second player, if any."""
        if self.real is None:
            return
        x = self.real(self.instrument.value, self.pitch.value)
        self.real_waveform = None if x is None else np.asarray(x, dtype=np.float64).reshape(-1)
        if self.real_waveform is None:
            self.real_player.value = b""
            self.real_label.value = f"no real {self.instrument.label}, {self.pitch.label}"
        else:
            self.real_player.value = wav_bytes(self.real_waveform, self.sample_rate)
            self.real_label.value = f"real {self.instrument.label}, {self.pitch.label}"

    def _ipython_display_(self) -> None:
        display(self.widget)
