"""The audio widget, driven without a browser: controls in, clip, WAV, progress and figure out."""

import io
import wave

import numpy as np
import pytest

from gentools.widgets.audio import AudioGenerator, note_name, spectrogram, wav_bytes


def fake_generate(calls):
    def generate(instrument, pitch, temperature, n_samples, progress):
        calls.append((instrument, pitch, temperature, n_samples))
        for step in range(1, n_samples + 1):
            progress(step, n_samples)
        t = np.arange(n_samples) / 8000
        return 0.5 * np.sin(2 * np.pi * 440 * t)

    return generate


def test_wav_bytes_round_trip_through_the_wave_module():
    x = np.array([0.0, 0.5, -0.5, 1.0, -2.0])
    with wave.open(io.BytesIO(wav_bytes(x, 8000)), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 8000)
        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32767]  # clipped at -1


def test_spectrogram_peaks_at_the_tone():
    t = np.arange(4000) / 8000
    times, freqs, db = spectrogram(np.sin(2 * np.pi * 1000 * t), 8000)
    assert db.shape == (len(freqs), len(times)) and freqs[-1] == 4000
    assert freqs[db.mean(1).argmax()] == pytest.approx(1000, abs=8000 / 256)


def test_note_names():
    assert [note_name(m) for m in (60, 69, 61, 48)] == ["C4", "A4", "C#4", "C3"]


def test_generate_uses_the_controls_and_fills_player_progress_and_figure():
    calls = []
    w = AudioGenerator(fake_generate(calls), ["flute", "string", "bell"], [48, 60, 72], 8000)
    assert w.pitch.label == "C4 (60)" and w.waveform is None and w.player.value == b""
    w.instrument.value, w.pitch.value = 2, 0
    w.temperature.value, w.seconds.value = 0.8, 0.1
    w.button.click()
    assert calls == [(2, 0, 0.8, 800)]
    assert w.out.outputs == ()  # no error was captured
    assert w.progress.max == 800 and w.progress.value == 800
    assert w.player.value[:4] == b"RIFF" and len(w.player.value) == 44 + 2 * 800
    assert w.waveform.shape == (800,) and not w.button.disabled
    assert [tr.type for tr in w.figure.data] == ["scatter", "heatmap"]
    assert "bell" in w.figure.layout.title.text and "C3" in w.figure.layout.title.text


def test_progress_moves_about_100_times():
    w = AudioGenerator(fake_generate([]), ["a"], [60], 8000)
    values = []
    w.progress.observe(lambda change: values.append(change["new"]), "value")
    w.seconds.value = 1.0
    w.generate_clip()
    assert 90 <= len(values) <= 110 and values[-1] == 8000
    assert values == sorted(values)


def test_an_error_in_generate_lands_in_the_output_and_re_enables_the_button():
    def broken(*args):
        raise RuntimeError("model exploded")

    w = AudioGenerator(broken, ["a"], [60], 8000)
    with pytest.raises(RuntimeError):
        w.generate_clip()
    assert not w.button.disabled and w.waveform is None


def test_a_real_note_of_the_same_instrument_and_pitch_plays_beside_the_generated_one():
    asked = []

    def real(instrument, pitch):
        asked.append((instrument, pitch))
        return None if pitch == 2 else np.full(400, 0.25)

    w = AudioGenerator(fake_generate([]), ["flute", "bell"], [48, 60, 72], 8000, real=real)
    assert w.real_player in w.widget.children[0].children[1].children
    w.instrument.value, w.pitch.value = 1, 0
    w.generate_clip()
    assert asked == [(1, 0)] and w.real_waveform.shape == (400,)
    assert w.real_player.value[:4] == b"RIFF" and len(w.real_player.value) == 44 + 2 * 400
    assert w.real_label.value == "real bell, C3 (48)"
    w.pitch.value = 2  # no real note of that pitch: the player empties and says so
    w.generate_clip()
    assert asked[-1] == (1, 2) and w.real_waveform is None and w.real_player.value == b""
    assert w.real_label.value.startswith("no real bell")
    alone = AudioGenerator(fake_generate([]), ["a"], [60], 8000)
    assert alone.real_player not in alone.widget.children[0].children[1].children
