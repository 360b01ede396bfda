"""The live monitor's cost: train the default VAE with and without it.

Runs `gentools.train.fit` on the digits for a fixed number of steps, alternating runs
with and without a headless `Monitor` (curves for two metrics, a 32-image sample grid
refreshed at each evaluation), and prints the median times and the overhead.

    python benchmarks/monitor_overhead.py [--steps 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch

from gentools.data import load_images
from gentools.models.vae import VAE
from gentools.monitor import Monitor
from gentools.train import TrainConfig, fit


def seconds(steps: int, with_monitor: bool) -> float:
    torch.manual_seed(0)
    model = VAE.from_size("default")
    fixed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    callbacks = []
    if with_monitor:
        sample = lambda: model.sample(32, generator=fixed())  # noqa: E731
        callbacks = [Monitor(sample=sample, metrics=("nelbo", "kl"))]
    cfg = TrainConfig(steps=steps, eval_every=250, progress=False)
    data = load_images("digits")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the monitor's headless summary line
        fit(model, data, cfg, callbacks=callbacks)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for with_monitor in (False, True):
            runs[with_monitor].append(seconds(args.steps, with_monitor))
    plain, monitored = statistics.median(runs[False]), statistics.median(runs[True])
    print(f"VAE default size, {args.steps} steps, eval every 250, median of {args.repeats}:\n")
    print("| loop | median seconds | overhead |")
    print("| --- | --- | --- |")
    print(f"| fit | {plain:.2f} | |")
    print(f"| fit + Monitor | {monitored:.2f} | {100 * (monitored / plain - 1):+.1f}% |")


if __name__ == "__main__":
    main()
