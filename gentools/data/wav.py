"""WAV files and sample rates for the audio data (`gentools.data.audio`), in numpy and the
stdlib `wave` module: PCM WAV read (8/16/24/32-bit, mono or stereo, averaged) and written, and
resampling.

Resampling (`resample`): windowed-sinc interpolation (Smith, "Digital Audio Resampling",
https://ccrma.stanford.edu/~jos/resample/) with a Hann window over 16 zero crossings and the
cutoff at the lower of the two Nyquist frequencies, so downsampling low-passes first and does
not alias. Direct evaluation, O(T_out * taps): fine for notes, slow for hours of audio.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from gentools.data.images import DataError


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file -> (mono float64 waveform in [-1, 1], sample rate). Stereo is averaged."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, frames = (
                f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes())
            raw = f.readframes(frames)
    except (wave.Error, EOFError, ValueError) as err:
        raise DataError(f"{path}: not a readable PCM WAV file ({err})") from None
    if width not in (1, 2, 3, 4) or len(raw) != frames * channels * width or frames == 0:
        raise DataError(f"{path}: corrupt or truncated WAV data ({len(raw)} bytes for "
                        f"{frames} frames of {channels} x {width} bytes)")
    if width == 1:  # 8-bit WAV is unsigned, centred at 128
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    elif width == 3:  # 24-bit little-endian: put the 3 bytes in the top of an int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        x = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16
             | b[:, 2].astype(np.int32) << 24).astype(np.float64) / 2**31
    else:
        x = np.frombuffer(raw, f"<i{width}").astype(np.float64) / 2 ** (8 * width - 1)
    return x.reshape(frames, channels).mean(1), rate


def write_wav(path: str | Path, x, sample_rate: int, width: int = 2) -> None:
    """Mono float waveform in [-1, 1] -> PCM WAV of `width` bytes per sample (1, 2, 3 or 4)."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(width)
        f.setframerate(sample_rate)
        f.writeframes(wav_bytes_pcm(x, width))


def wav_bytes_pcm(x, width: int = 2) -> bytes:
    x = np.clip(np.asarray(x, dtype=np.float64), -1, 1)
    if width == 1:
        return np.round(x * 127 + 128).astype(np.uint8).tobytes()
    q = np.round(x * (2 ** (8 * width - 1) - 1)).astype("<i4")
    if width == 3:
        return q.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return q.astype(f"<i{width}").tobytes()


def resample(x, rate_in: int, rate_out: int, zeros: int = 16) -> np.ndarray:
    """Windowed-sinc resampling of a 1-D signal from rate_in to rate_out (see module doc)."""
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out:
        return x.copy()
    c = min(1.0, rate_out / rate_in)  # cutoff as a fraction of the input Nyquist
    n_out = int(math.floor(len(x) * rate_out / rate_in))
    t = np.arange(n_out) * (rate_in / rate_out)  # output times in input samples
    half = int(math.ceil(zeros / c))  # taps on each side
    k = np.floor(t).astype(np.int64)[:, None] + np.arange(-half + 1, half + 1)[None, :]
    u = t[:, None] - k  # distance to each tap, in input samples
    # h(u) = c sinc(c u) w(u), w the Hann window over |u| < half
    h = c * np.sinc(c * u) * np.where(np.abs(u) < half, 0.5 + 0.5 * np.cos(np.pi * u / half), 0)
    xs = np.where((k >= 0) & (k < len(x)), x[np.clip(k, 0, len(x) - 1)], 0.0)
    return (h * xs).sum(1)
