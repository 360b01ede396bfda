"""Audio data: mu-law round trips, the synthesised notes, WAV reading, resampling, pitch."""

import math
import wave

import numpy as np
import pytest
import torch

from gentools.data import DataError
from gentools.data import audio as A
from gentools.data import wav as W


def test_mu_law_codes_round_trip_exactly():
    q = torch.arange(256)
    assert torch.equal(A.mu_law_encode(A.mu_law_decode(q)), q)  # encode(decode(q)) == q
    assert A.mu_law_decode(torch.tensor([0, 255])).tolist() == [-1.0, 1.0]


def test_mu_law_decode_encode_is_within_half_a_step():
    x = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    xh = A.mu_law_decode(A.mu_law_encode(x)).double()
    F = lambda v: torch.sign(v) * torch.log1p(255 * v.abs()) / math.log1p(255)
    assert (F(x) - F(xh)).abs().max() <= 1 / 255 + 1e-6  # half of the step 2/255 in F
    # mean value bound in x: |x - xh| <= (1/255) max 1/F'(u), 1/F'(u) = (1 + mu u) ln(1 + mu) / mu
    bound = (1 / 255) * (1 + 255 * torch.maximum(x.abs(), xh.abs())) * math.log1p(255) / 255
    assert ((x - xh).abs() <= bound + 1e-6).all()
    assert A.mu_law_encode(torch.tensor([-5.0, 5.0])).tolist() == [0, 255]  # clipped


def test_synth_is_deterministic_labelled_and_split():
    a = A.load_audio(n_clips=30, seed=3, duration=0.1)
    b = A.load_audio(n_clips=30, seed=3, duration=0.1)
    c = A.load_audio(n_clips=30, seed=4, duration=0.1)
    assert [len(a.train), len(a.val), len(a.test)] == [24, 3, 3]
    for s in ("train", "val", "test"):
        for u, v in zip(getattr(a, s).tensors, getattr(b, s).tensors, strict=True):
            assert torch.equal(u, v) and u.dtype == torch.int64
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    codes, inst, pitch = a.train.tensors
    assert codes.shape == (24, 800) and 0 <= codes.min() and codes.max() <= 255
    assert set(inst.tolist()) <= {0, 1, 2} and pitch.max() < len(a.pitches)
    assert a.instruments == ["flute", "string", "bell"] and a.sample_rate == 8000
    assert 0 < a.noise_floor_bits < 8


def test_noise_floor_matches_a_monte_carlo_estimate():
    """H(code | clean) from the Gaussian bin masses equals the empirical code entropy."""
    rng = np.random.default_rng(0)
    clean, std = np.full(1, 0.3), np.full(1, 0.02)
    codes = A.mu_law_encode(clean + std * rng.standard_normal(400_000))
    p = torch.bincount(codes, minlength=256).double() / len(codes)
    empirical = float(-(p[p > 0] * p[p > 0].log2()).sum())
    assert A._code_entropy_bits(clean, std) == pytest.approx(empirical, abs=0.01)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_widths_and_stereo(tmp_path, width):
    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(800) / 8000)
    path = tmp_path / "a.wav"
    W.write_wav(path, x, 8000, width=width)
    y, rate = W.read_wav(path)
    assert rate == 8000 and np.abs(y - x).max() < 2 / 2 ** (8 * width - 1) + 1e-12
    with wave.open(str(tmp_path / "s.wav"), "wb") as f:  # stereo: left x, right -x/2
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(8000)
        pair = np.stack([x, -x / 2], 1).ravel()
        f.writeframes(W.wav_bytes_pcm(pair, 2))
    y, _ = W.read_wav(tmp_path / "s.wav")
    assert np.abs(y - x / 4).max() < 1e-4  # the average of the two channels


def test_corrupt_and_non_wav_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "notes" / "broken.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DataError, match="broken.wav"):
        W.read_wav(bad)
    text = tmp_path / "text.wav"
    text.write_text("hello, not audio")
    with pytest.raises(DataError, match="text.wav"):
        W.read_wav(text)
    good = tmp_path / "cut.wav"
    W.write_wav(good, np.zeros(100), 8000)
    good.write_bytes(good.read_bytes()[:-7])  # truncated data chunk
    with pytest.raises(DataError, match="cut.wav"):
        W.read_wav(good)
    with pytest.raises(DataError, match="broken.wav"):
        A.load_audio(str(tmp_path / "notes"))


def test_resample_keeps_a_tone_and_removes_what_would_alias():
    t_in, t_out = np.arange(44100) / 44100, np.arange(8000) / 8000
    y = W.resample(np.sin(2 * np.pi * 440 * t_in), 44100, 8000)
    assert len(y) == 8000
    inner = slice(100, -100)  # away from the edges, where the kernel runs out of input
    assert np.abs(y[inner] - np.sin(2 * np.pi * 440 * t_out)[inner]).max() < 2e-3
    alias = W.resample(np.sin(2 * np.pi * 6000 * t_in), 44100, 8000)  # above 4 kHz Nyquist
    assert np.abs(alias[inner]).max() < 0.02
    up = W.resample(np.sin(2 * np.pi * 300 * t_out), 8000, 16000)  # upsampling
    t_up = np.arange(16000) / 16000
    assert np.abs(up[200:-200] - np.sin(2 * np.pi * 300 * t_up)[200:-200]).max() < 2e-3


def test_wav_folder_loader_resamples_labels_and_splits(tmp_path):
    for inst, notes in {"organ": (57, 60, 64), "reed": (57, 62, 69)}.items():
        (tmp_path / inst).mkdir()
        for m in notes:
            rate = 16000 if m % 2 else 11025
            t = np.arange(int(0.3 * rate)) / rate
            tone = 0.5 * np.sin(2 * np.pi * A.midi_to_hz(m) * t)
            W.write_wav(tmp_path / inst / f"n{m}.wav", tone, rate)
    data = A.load_audio(str(tmp_path), duration=0.25)
    assert data.instruments == ["organ", "reed"] and data.pitches == [57, 60, 62, 64, 69]
    assert [len(data.train), len(data.val), len(data.test)] == [4, 1, 1]
    assert data.length == 2000 and data.sample_rate == 8000
    codes = torch.cat([s.tensors[0] for s in (data.train, data.val, data.test)])
    assert codes.min() < 60 and codes.max() > 196  # loud sines, not silence
    with pytest.raises(FileNotFoundError):
        A.load_audio(str(tmp_path / "missing"))


@pytest.mark.parametrize("hz", [65.0, 130.8, 261.6, 440.0, 523.3, 880.0])
def test_estimate_f0_on_sines_and_harmonic_tones(hz):
    t = np.arange(2000) / 8000
    assert A.estimate_f0(np.sin(2 * np.pi * hz * t), 8000) == pytest.approx(hz, rel=0.001)
    rich = sum(np.sin(2 * np.pi * k * hz * t + k) / k for k in range(1, 8) if k * hz < 4000)
    assert A.estimate_f0(rich, 8000) == pytest.approx(hz, rel=0.01)  # 17 cents; a semitone is 6%
    assert math.isnan(A.estimate_f0(np.zeros(2000), 8000))


def test_synth_notes_have_their_labelled_pitch():
    _, noisy, _, inst, pitch = A.synth_notes(30, seed=1)
    notes = np.array(A.PITCHES)[pitch]
    err = [A.hz_to_midi(A.estimate_f0(x, 8000)) - m for x, m in zip(noisy, notes, strict=True)]
    assert np.abs(err).max() < 0.5, err  # every note within a quarter tone


def test_histogram_bits():
    codes = torch.tensor([0, 0, 1, 1])
    assert A.histogram_bits(codes, codes, alpha=0.0) == pytest.approx(1.0)
    assert A.histogram_bits(torch.arange(256), torch.arange(256)) == pytest.approx(8.0)


def test_pitch_errors_in_cents():
    t = np.arange(2000) / 8000
    waves = [np.sin(2 * np.pi * A.midi_to_hz(m) * t) for m in (60, 61.5, 72)]
    cents = A.pitch_errors_cents(waves, 8000, [60, 60, 60])
    assert cents == pytest.approx([0, 150, 1200], abs=3)


def test_pitch_check_passes_real_notes_and_fails_notes_of_the_wrong_pitch():
    """The check WaveNet's notes go through: real notes pass at the rate of the default (4 kHz),
    and the same notes asked for as another pitch, or sines at a wrong frequency, fail."""
    _, noisy, _, inst, pitch = A.synth_notes(24, seed=2, sample_rate=4000)
    asked = np.array(A.PITCHES)[pitch]
    assert set(inst.tolist()) == {0, 1, 2}
    right = A.pitch_check(noisy, 4000, asked)
    assert right["within"] == 1.0 and right["median_abs_cents"] < 30
    for shift in (2, -3, 12):  # a generator that plays a tone, a minor third, an octave off
        wrong = A.pitch_check(noisy, 4000, asked + shift)
        assert wrong["within"] == 0.0, (shift, wrong["cents"])
        assert wrong["median_abs_cents"] > 100 * abs(shift) - 30
    t = np.arange(1000) / 4000
    sines = [0.5 * np.sin(2 * np.pi * A.midi_to_hz(m + 1.5) * t) for m in asked]
    assert A.pitch_check(sines, 4000, asked)["within"] == 0.0  # 150 cents sharp
    half = A.pitch_check([np.zeros(1000), sines[0]], 4000, [asked[0], asked[0] + 1.5])
    assert half["within"] == 0.5 and math.isnan(half["cents"][0])  # silence is a miss


def test_envelope_ratio_tells_a_held_note_from_one_that_dies_away():
    t = np.arange(1000) / 4000
    tone = np.sin(2 * np.pi * 220 * t)
    held, dying = A.envelope_ratio([tone, tone * np.exp(-t / 0.03)])
    assert held == pytest.approx(1.0, abs=0.02) and dying < 0.01
    _, noisy, _, inst, _ = A.synth_notes(9, seed=0, sample_rate=4000)
    ratio = A.envelope_ratio(noisy)
    assert ratio[inst == 0].min() > 0.4 and ratio[inst == 2].max() < 0.4  # flute held, bell decays
