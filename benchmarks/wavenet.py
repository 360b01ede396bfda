"""WaveNet: the fast (numpy) sampler against the reference (torch) one, and the default job.

1. Generation speed at the default size (receptive field 1025), in the same run: both
   samplers keep per-layer queues; they generate `R + K` samples and we time the last K, in
   the steady state. The two alternate `--repeats` times and the median rate of each is
   kept, for one clip (the interactive widget) and for 48 clips at once (the notebook's pitch
   check). Reported in samples/s per clip, with the ratio, and whether the two drew the same
   codes from the same generator seed.
2. `gentools run wavenet` with its default parameters (papermill, into a temporary folder;
   4 kHz, the pitch sinusoids as local conditioning, temperature 0.2): wall time and the
   metrics: test bits/sample beside uniform, histogram and noise floor, the share of
   generated notes within a semitone of their conditioning pitch with the median error, and
   the envelope (RMS of the last quarter over the first) of generated against real notes.

    python benchmarks/wavenet.py [--steps-after-rf 200] [--repeats 5] [--clips 1 48] [--no-job]

Timings on a shared CPU are disturbed by other processes: compare numbers from one quiet run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from gentools import jobs, repro
from gentools.models.wavenet import WaveNet


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
        start = time.perf_counter()
        run = jobs.run("wavenet", {}, out=out, progress=False)
        wall = time.perf_counter() - start
        m = json.loads((run / "metrics.json").read_text())
    print("\n`gentools run wavenet`, default parameters:\n")
    print("| wall time | train seconds | test bits/sample | uniform | histogram | noise floor |"
          " notes within a semitone | median abs cents |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {wall:.1f} s | {m['train_seconds']:.1f} | {m['test_bps']:.3f} | 8 |"
          f" {m['histogram_bps']:.3f} | {m['noise_floor_bps']:.3f} |"
          f" {m['pitch_within_semitone']:.1%} | {m['pitch_median_abs_cents']:.1f} |")
    names = sorted(k[len("envelope_"):] for k in m if k.startswith("envelope_")
                   and not k.endswith("_real"))
    print("\nEnvelope, RMS of the last quarter over the first (median), generated against real:\n")
    print("| " + " | ".join(names) + " |")
    print("|" + " --- |" * len(names))
    print("| " + " | ".join(f"{m[f'envelope_{n}']:.2f} against {m[f'envelope_{n}_real']:.2f}"
                            for n in names) + " |")


if __name__ == "__main__":
    main()
