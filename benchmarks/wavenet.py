"""WaveNet: the fast (numpy) sampler against the reference (torch) one, and the default job.

1. Generation speed at the default size (receptive field 1025), in the same run: both
   samplers keep per-layer queues; they generate `R + K` samples and we time the last K, in
   the steady state. The two alternate `--repeats` times and the median rate of each is
   kept, for one clip (the interactive widget) and for 48 clips at once (the notebook's pitch
   check). Reported in samples/s per clip, with the ratio, and whether the two drew the same
   codes from the same generator seed.
2. `gentools run wavenet` with its default parameters (papermill, into a temporary folder;
   4 kHz, the pitch clock as local conditioning), and the control without the clock
   (`-p clock false`): wall time and the metrics: test bits/sample beside uniform, histogram
   and noise floor, the share of generated notes within a semitone of their conditioning
   pitch with the median error, at the default temperature (0.2) and at 1.0, and the
   envelope (RMS of the last quarter over the first) of generated against real notes.
3. A second pitch tracker, where librosa is installed (an optional benchmark dependency):
   the notes each run saved (`notes.safetensors`) judged by pYIN (Mauch & Dixon 2014) beside
   the hand-written YIN of `pitch_check`, with the notes where the two disagree.

    python benchmarks/wavenet.py [--steps-after-rf 200] [--repeats 5] [--clips 1 48] [--no-job]

Timings on a shared CPU are disturbed by other processes: compare numbers from one quiet run.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch

from gentools import checkpoint, repro
from gentools.data.audio import midi_to_hz, mu_law_decode, pitch_check
from gentools.files import read_json
from gentools.models.wavenet import WaveNet
from gentools.record import METRICS
from gentools.runner import jobs


def generation_rate(model: WaveNet, sampler: str, n: int, k: int) -> tuple[float, torch.Tensor]:
    """Steps/s over the last k of R + k generated samples of n clips, and the codes."""
    rf, stamps = model.receptive_field, {}

    def progress(step: int, total: int) -> None:
        if step in (rf, rf + k):
            stamps[step] = time.perf_counter()

    codes = model.sample(n, torch.Generator().manual_seed(0), length=rf + k, instrument=0,
                         pitch=12, sampler=sampler, progress=progress)
    return k / (stamps[rf + k] - stamps[rf]), codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps-after-rf", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clips", type=int, nargs="+", default=[1, 48], help="clips per call")
    ap.add_argument("--no-job", action="store_true", help="skip the default notebook run")
    args = ap.parse_args()
    threads = repro.set_threads()
    torch.manual_seed(0)
    model = WaveNet.from_size("default").eval()
    print(f"WaveNet default size, receptive field {model.receptive_field}, {threads} thread(s),"
          f" {args.steps_after_rf} samples timed after the receptive field,"
          f" median of {args.repeats}, alternated:\n")
    print("| clips | fast (numpy) | reference (torch) | speed-up | same codes |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.clips:
        rates, codes = {"fast": [], "reference": []}, {}
        for _ in range(args.repeats):
            for sampler in rates:
                rate, codes[sampler] = generation_rate(model, sampler, n, args.steps_after_rf)
                rates[sampler].append(rate)
        fast, ref = (statistics.median(rates[s]) for s in ("fast", "reference"))
        print(f"| {n} | {fast:.0f} samples/s | {ref:.0f} samples/s | {fast / ref:.1f}x |"
              f" {torch.equal(codes['fast'], codes['reference'])} |")
    if args.no_job:
        return
    with tempfile.TemporaryDirectory() as out:
        runs = {}
        for name, params in (("the default (with the clock)", {}),
                             ("the control without the clock", {"clock": False})):
            start = time.perf_counter()
            run = jobs.run("wavenet", params, out=out, progress=False)
            runs[name] = (time.perf_counter() - start, read_json(run / METRICS),
                          checkpoint.load(run / "notes.safetensors"))
    t = next(iter(runs.values()))[1]["pitch_temperature"]
    print("\n`gentools run wavenet` at default parameters, and with `-p clock false`; notes within"
          f" a semitone (median abs error, cents) by YIN (`pitch_check`) at the default"
          f" temperature {t:g} and at 1.0:\n")
    print("| run | wall time | train seconds | test bits/sample | uniform | histogram |"
          f" noise floor | within, T={t:g} | within, T=1.0 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (wall, m, _) in runs.items():
        print(f"| {name} | {wall:.1f} s | {m['train_seconds']:.1f} | {m['test_bps']:.3f} | 8 |"
              f" {m['histogram_bps']:.3f} | {m['noise_floor_bps']:.3f} |"
              f" {m['pitch_within_semitone']:.1%} ({m['pitch_median_abs_cents']:.1f}) |"
              f" {m['pitch_within_semitone_t1']:.1%} ({m['pitch_median_abs_cents_t1']:.1f}) |")
    m = runs["the default (with the clock)"][1]
    names = sorted(k[len("envelope_"):] for k in m if k.startswith("envelope_")
                   and not k.endswith("_real"))
    print("\nEnvelope of the default run, RMS of the last quarter over the first (median),"
          " generated against real:\n")
    print("| " + " | ".join(names) + " |")
    print("|" + " --- |" * len(names))
    print("| " + " | ".join(f"{m[f'envelope_{n}']:.2f} against {m[f'envelope_{n}_real']:.2f}"
                            for n in names) + " |")
    second_tracker({name: notes for name, (_, _, notes) in runs.items()})


def pyin_within(waves: np.ndarray, sample_rate: int, midi: np.ndarray) -> np.ndarray:
    """pYIN (librosa): is each clip's median f0 over its voiced frames within a semitone of
    its MIDI note? A clip with no voiced frame is a miss. (N,) bools."""
    import librosa

    frame = 1 << math.ceil(math.log2(0.128 * sample_rate))  # >= 128 ms: 8 periods at 60 Hz
    f0, voiced, _ = librosa.pyin(waves, fmin=60.0, fmax=1000.0, sr=sample_rate,
                                 frame_length=frame, hop_length=frame // 4)
    with warnings.catch_warnings():  # a clip with no voiced frame: nan, a miss
        warnings.simplefilter("ignore", RuntimeWarning)
        f_note = np.nanmedian(np.where(voiced, f0, np.nan), axis=1)
    cents = 1200 * np.log2(f_note / midi_to_hz(midi))
    return np.abs(np.nan_to_num(cents, nan=np.inf)) <= 100


def second_tracker(notes: dict) -> None:
    """The same generated notes judged by YIN (`pitch_check`) and by pYIN, where librosa is
    installed (pip install librosa: an optional benchmark dependency)."""
    if importlib.util.find_spec("librosa") is None:
        print("\nlibrosa is not installed: no second pitch tracker (pip install librosa).")
        return
    print("\nThe same notes by YIN (`pitch_check`) and by pYIN (librosa), within a semitone, and"
          " the notes where the two disagree:\n")
    print("| run | temperature | YIN | pYIN | notes where they disagree |")
    print("| --- | --- | --- | --- | --- |")
    for name, (tensors, meta) in notes.items():
        midi, rate = np.array(meta["midi"]), meta["sample_rate"]
        for key, codes in tensors.items():
            waves = mu_law_decode(codes).numpy()
            yin = np.abs(np.nan_to_num(pitch_check(waves, rate, midi)["cents"], nan=np.inf)) <= 100
            pyin = pyin_within(waves, rate, midi)
            print(f"| {name} | {key[1:]} | {yin.mean():.1%} | {pyin.mean():.1%} |"
                  f" {int((yin != pyin).sum())} of {len(yin)} |")

if __name__ == "__main__":
    main()
