"""Audio datasets for gentools: synthesised instrument notes, a WAV-folder loader, mu-law.

Every loader returns an :class:`AudioData` whose splits are ``TensorDataset``\\ s of
``(codes, instrument, pitch)``: ``codes`` int64 ``(N, T)`` mu-law levels 0..255,
``instrument`` and ``pitch`` int64 ``(N,)`` indices into ``AudioData.instruments`` and
``AudioData.pitches`` (MIDI note numbers). Nothing is downloaded:

* ``synth`` (the default): notes synthesised from a seed. Three timbres, each additive
  partials under an ADSR envelope: "flute" (few harmonics, vibrato, breath noise), "string"
  (many harmonics, sawtooth-like, vibrato), "bell" (inharmonic partials, fast decay; the
  strike pitch is partial 1). Random phases, amplitudes, vibrato and envelope times per note.
  Every clip gets white Gaussian noise of fixed std ``NOISE_STD`` (plus breath noise for the
  flute), so ``noise_floor_bits`` - the entropy of the quantised noise given the clean
  signal, H(code | clean) - is a lower bound no model can beat.
* a folder of WAV files (``load_audio(path)``): PCM 8/16/24/32-bit, mono or stereo (averaged),
  any rate resampled to ``sample_rate``, cropped or zero-padded to ``duration``. The
  instrument is the file's sub-folder name (the folder's own name for files at the top), the
  pitch the MIDI note nearest to `estimate_f0` (so octave errors of the estimator become
  label errors: name files by pitch and relabel if that matters). Reading and resampling are
  `gentools.data.wav`'s.

Mu-law (ITU-T G.711 companding, mu = 255): F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu), then
F in [-1, 1] is quantised uniformly to 256 levels. ``decode(encode(x))`` lands within half
a quantisation step (in F) of x and ``encode(decode(q)) == q`` exactly (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from gentools.data.images import DataError
from gentools.data.wav import read_wav, resample

MU = 255  # mu-law parameter: 256 levels
INSTRUMENTS = ("flute", "string", "bell")
PITCHES = tuple(range(48, 73))  # MIDI C3 .. C5 (131 Hz .. 523 Hz)
NOISE_STD = 0.003  # white noise on every clip, about -50 dBFS (the data's noise floor; fixed)
BREATH_STD = 0.02  # extra flute breath noise, times the envelope
SPLIT = (0.8, 0.1, 0.1)  # train / val / test fractions


@dataclass
class AudioData:
    """Audio clips split into train / val / test TensorDatasets of (codes, instrument, pitch)."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    sample_rate: int
    instruments: list[str]
    pitches: list[int]  # MIDI note of each pitch index
    noise_floor_bits: float | None = None  # H(code | clean signal) on test, bits per sample

    @property
    def length(self) -> int:
        return int(self.train.tensors[0].shape[1])


# --- mu-law ------------------------------------------------------------------------
def mu_law_encode(x, mu: int = MU) -> torch.Tensor:
    """Waveform in [-1, 1] (clipped) -> int64 codes 0..mu."""
    x = torch.as_tensor(x, dtype=torch.float64).clamp(-1, 1)
    f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)  # F(x) in [-1, 1]
    return torch.floor((f + 1) / 2 * mu + 0.5).long()  # q = round((F + 1) mu / 2)


def mu_law_decode(q, mu: int = MU) -> torch.Tensor:
    """int codes 0..mu -> float32 waveform in [-1, 1], the centre of each level."""
    f = 2 * torch.as_tensor(q, dtype=torch.float64) / mu - 1  # F = 2q / mu - 1
    x = torch.sign(f) * torch.expm1(f.abs() * math.log1p(mu)) / mu  # sign(F) ((1+mu)^|F| - 1)/mu
    return x.float()


def midi_to_hz(note) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69) / 12)  # f = 440 2^((m-69)/12)


def hz_to_midi(f) -> np.ndarray:
    return 69 + 12 * np.log2(np.asarray(f, dtype=np.float64) / 440.0)


# --- synthesis -------------------------------------------------------------------------
def adsr(n: int, sr: int, a: float, d: float, s: float, r: float) -> np.ndarray:
    """Attack a s to 1, decay d s to level s, hold, release r s to 0 at the end: (n,)."""
    t = np.arange(n) / sr
    release_start = n / sr - r
    env = np.interp(t, [0, a, a + d, max(a + d, release_start), n / sr], [0, 1, s, s, 0])
    return env


def synth_note(instrument: str, midi: int, n: int, sr: int, rng: np.random.Generator):
    """One note: (clean signal (n,), noise std per sample (n,)), peak of the clean part < 0.8."""
    f0, t = float(midi_to_hz(midi)), np.arange(n) / sr
    vib = 0.0
    if instrument in ("flute", "string"):  # vibrato: f(t) = f0 (1 + depth sin(2 pi rate t))
        depth, rate = rng.uniform(0.002, 0.006), rng.uniform(4, 7)
        vib = depth / (2 * math.pi * rate) * (1 - np.cos(2 * math.pi * rate * t))  # int of sin
    if instrument == "flute":
        ratios = np.arange(1, 5)
        amps = np.array([1.0, 0.35, 0.12, 0.05]) * rng.uniform(0.8, 1.2, 4)
        env, decays = adsr(n, sr, rng.uniform(0.02, 0.05), 0.05, 0.8, 0.05), np.zeros(4)
    elif instrument == "string":
        ratios = np.arange(1, 13)
        amps = (1.0 / ratios) * rng.uniform(0.7, 1.3, 12)  # sawtooth-like 1/k spectrum
        env, decays = adsr(n, sr, rng.uniform(0.01, 0.03), 0.05, 0.7, 0.04), np.zeros(12)
    elif instrument == "bell":
        ratios = np.array([1.0, 2.0, 2.76, 3.0, 4.07, 5.4])  # inharmonic partials
        amps = np.array([1.0, 0.6, 0.4, 0.3, 0.2, 0.15]) * rng.uniform(0.8, 1.2, 6)
        env, decays = adsr(n, sr, 0.002, 0.0, 1.0, 0.01), 6.0 + 4.0 * ratios
    else:
        raise ValueError(f"unknown instrument {instrument!r}: use {', '.join(INSTRUMENTS)}")
    keep = ratios * f0 < 0.45 * sr  # no partial above 0.9 Nyquist
    phases = rng.uniform(0, 2 * math.pi, len(ratios))
    # x(t) = env(t) sum_k a_k e^(-decay_k t) sin(2 pi r_k f0 (t + vib(t)) + phi_k)
    arg = 2 * math.pi * f0 * (t + vib)[None, :] * ratios[keep, None] + phases[keep, None]
    partials = amps[keep, None] * np.exp(-decays[keep, None] * t[None, :]) * np.sin(arg)
    clean = env * partials.sum(0)
    clean *= rng.uniform(0.4, 0.75) / max(np.abs(clean).max(), 1e-9)
    noise_std = np.full(n, NOISE_STD)
    if instrument == "flute":  # std of a sum of independent Gaussians
        noise_std = np.sqrt(NOISE_STD**2 + (BREATH_STD * env) ** 2)
    return clean, noise_std


def _code_entropy_bits(clean: np.ndarray, std: np.ndarray) -> float:
    """Mean over samples of H(mu-law code | clean) in bits, noise N(0, std^2), open end bins.

    Each sample sums the bins within 8 std of its clean value (the mass left out is below
    1e-15); samples are grouped by that window's width, a power of two, to vectorise.
    """
    # bin q holds F in [2q/mu - 1 - 1/mu, 2q/mu - 1 + 1/mu): the edges are F^-1 of those points
    f_edges = torch.tensor((2 * np.arange(1, MU + 1) - 1) / MU - 1, dtype=torch.float64)
    edges = torch.sign(f_edges) * torch.expm1(f_edges.abs() * math.log1p(MU)) / MU  # (mu,)
    edges = torch.cat([torch.tensor([-math.inf]), edges, torch.tensor([math.inf])])  # (mu+2,)
    clean, std = torch.as_tensor(clean).flatten(), torch.as_tensor(std).flatten()
    q0 = mu_law_encode(clean)  # (n,) the clean value's bin
    reach = torch.maximum(q0 - mu_law_encode(clean - 8 * std), mu_law_encode(clean + 8 * std) - q0)
    width = 2 ** torch.ceil(torch.log2(reach.clamp_min(1).double())).long()  # (n,) window
    total = 0.0
    for w in width.unique().tolist():
        m = width == w
        j = (q0[m, None] + torch.arange(-w, w + 2)[None, :]).clamp(0, MU + 1)  # (m, 2w+2)
        z = (edges[j] - clean[m, None]) / std[m, None]
        p = (0.5 * torch.erf(z / math.sqrt(2))).diff(dim=1)  # P(code = q | clean) = dPhi
        total += float(torch.special.entr(p.clamp_min(0)).sum())  # sum -p ln p
    return total / (len(clean) * math.log(2))


def synth_notes(n_clips: int, seed: int = 0, sample_rate: int = 8000, duration: float = 0.25):
    """n_clips notes: (clean (N, T) float64, noisy (N, T), noise std (N, T), instrument, pitch)."""
    rng = np.random.default_rng(seed)
    n = int(round(sample_rate * duration))
    inst = np.arange(n_clips) % len(INSTRUMENTS)  # balanced instruments and pitches
    pitch = rng.permutation(np.arange(n_clips) % len(PITCHES))
    clean, std = np.zeros((n_clips, n)), np.zeros((n_clips, n))
    for i in range(n_clips):
        clean[i], std[i] = synth_note(INSTRUMENTS[inst[i]], PITCHES[pitch[i]], n, sample_rate, rng)
    noisy = clean + std * rng.standard_normal((n_clips, n))
    return clean, noisy, std, inst, pitch


def _split(n: int, seed: int) -> list[np.ndarray]:
    """Indices of train / val / test: a seeded permutation cut by SPLIT, each split non-empty."""
    perm = np.random.default_rng(seed + 1).permutation(n)
    n_val = max(1, int(round(SPLIT[1] * n)))
    n_test = max(1, int(round(SPLIT[2] * n)))
    if n - n_val - n_test < 1:
        raise DataError(f"need at least 3 clips to split train / val / test, got {n}")
    return [perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]]


def _datasets(codes, inst, pitch, parts) -> list[TensorDataset]:
    codes, inst, pitch = (torch.as_tensor(np.asarray(a)).long() for a in (codes, inst, pitch))
    return [TensorDataset(codes[i], inst[i], pitch[i]) for i in map(torch.as_tensor, parts)]


def load_audio(
    data: str = "synth",
    seed: int = 0,
    n_clips: int = 3000,
    sample_rate: int = 8000,
    duration: float = 0.25,
) -> AudioData:
    """The synthesised notes (``data="synth"``) or a folder of WAV files (``data=path``)."""
    if data != "synth":
        return load_wav_folder(data, sample_rate, duration, seed)
    clean, noisy, std, inst, pitch = synth_notes(n_clips, seed, sample_rate, duration)
    parts = _split(n_clips, seed)
    floor = _code_entropy_bits(clean[parts[2]].ravel(), std[parts[2]].ravel())
    train, val, test = _datasets(mu_law_encode(noisy), inst, pitch, parts)
    return AudioData("synth", train, val, test, sample_rate, list(INSTRUMENTS), list(PITCHES),
                     floor)


# --- WAV folders, labelled by sub-folder and pitch -----------------------------------------
def estimate_f0(x, sample_rate: int, fmin: float = 60.0, fmax: float = 1000.0,
                threshold: float = 0.15) -> float:
    """Fundamental frequency (Hz) of a note by YIN (de Cheveigne & Kawahara 2002).

    d'(tau) = d(tau) / ((1/tau) sum_{j<=tau} d(j)), d(tau) = sum_t (x_t - x_{t+tau})^2; the
    first tau where d' dips below `threshold` (its local minimum), else the global minimum,
    refined by parabolic interpolation of d. Returns nan for silence.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    max_lag = min(int(sample_rate / fmin), len(x) // 2)
    min_lag = max(2, int(sample_rate / fmax))
    if max_lag <= min_lag or not np.any(x):
        return float("nan")
    w = len(x) - max_lag
    d = np.array([np.sum((x[:w] - x[tau : tau + w]) ** 2) for tau in range(max_lag + 1)])
    cum = np.cumsum(d[1:]) / np.arange(1, max_lag + 1)  # (1/tau) sum_{j=1..tau} d(j)
    dn = np.ones(max_lag + 1)
    dn[1:] = d[1:] / np.maximum(cum, 1e-12)
    below = np.nonzero(dn[min_lag:] < threshold)[0]
    if len(below):
        tau = min_lag + below[0]
        while tau + 1 <= max_lag and dn[tau + 1] < dn[tau]:
            tau += 1
    else:
        tau = min_lag + int(np.argmin(dn[min_lag:]))
    if 0 < tau < max_lag:  # parabola through d at (tau-1, tau, tau+1); d' would bias it
        a, b, c = d[tau - 1], d[tau], d[tau + 1]
        tau = tau + 0.5 * (a - c) / max(a - 2 * b + c, 1e-12)
    return sample_rate / tau


def load_wav_folder(folder: str | Path, sample_rate: int = 8000, duration: float = 0.25,
                    seed: int = 0) -> AudioData:
    """Every *.wav under `folder` (recursively): see the module docstring."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}: give 'synth' or a folder of WAV files")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise DataError(f"no .wav files under {root}")
    n = int(round(sample_rate * duration))
    clips, names, notes = np.zeros((len(files), n)), [], []
    for i, path in enumerate(files):
        x, rate = read_wav(path)
        x = resample(x, rate, sample_rate)[:n]
        clips[i, : len(x)] = x
        names.append(path.parent.name if path.parent != root else root.name)
        f0 = estimate_f0(x, sample_rate)
        notes.append(0 if math.isnan(f0) else int(np.round(hz_to_midi(f0))))
    instruments, pitches = sorted(set(names)), sorted(set(notes))
    inst = [instruments.index(s) for s in names]
    pitch = [pitches.index(m) for m in notes]
    train, val, test = _datasets(mu_law_encode(clips), inst, pitch, _split(len(files), seed))
    return AudioData(root.name, train, val, test, sample_rate, instruments, pitches)


# --- references and checks for generated notes ---------------------------------------------
def histogram_bits(train_codes: torch.Tensor, test_codes: torch.Tensor, alpha: float = 1.0):
    """Test bits per sample of one 256-way histogram of codes fitted on train (add-alpha)."""
    counts = torch.bincount(train_codes.flatten(), minlength=MU + 1).double() + alpha
    log_p = (counts / counts.sum()).log2()  # log2 p(q)
    return float(-log_p[test_codes.flatten()].mean())


def pitch_errors_cents(waves, sample_rate: int, midi) -> np.ndarray:
    """Cents from each clip's estimated f0 to its MIDI note: 1200 log2(f / f_note); nan if silent.

    Within one semitone means |error| <= 100 cents.
    """
    waves = np.asarray(waves, dtype=np.float64)
    f0 = np.array([estimate_f0(x, sample_rate) for x in waves])
    return 1200 * np.log2(f0 / midi_to_hz(midi))


def pitch_check(waves, sample_rate: int, midi) -> dict:
    """Do notes sound at the MIDI pitches they were asked for? YIN on each clip.

    Returns ``within`` (share of clips with |error| <= 100 cents, a silent clip counts as a
    miss), ``median_abs_cents`` (over the clips with a pitch) and ``cents`` (per clip).
    """
    cents = pitch_errors_cents(waves, sample_rate, midi)
    within = float(np.mean(np.abs(np.nan_to_num(cents, nan=np.inf)) <= 100))
    voiced = np.abs(cents[~np.isnan(cents)])
    median = float(np.median(voiced)) if len(voiced) else float("nan")
    return {"within": within, "median_abs_cents": median, "cents": cents}


def envelope_ratio(waves) -> np.ndarray:
    """RMS of each clip's last quarter over the RMS of its first quarter: (N,).

    About 1 for a note held to the end, near 0 for one that dies away early.
    """
    waves = np.atleast_2d(np.asarray(waves, dtype=np.float64))
    q = max(1, waves.shape[1] // 4)
    rms = lambda x: np.sqrt((x**2).mean(1))  # noqa: E731
    return rms(waves[:, -q:]) / np.maximum(rms(waves[:, :q]), 1e-12)
