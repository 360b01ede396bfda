"""How many torch threads to train with on a small machine.

Trains the default-size VAE on the digits for a fixed number of steps with 1 and 2
intra-op threads, alone and next to a busy neighbour process (a second training run,
as a sweep or a notebook beside a job would be), interleaving the settings and taking
medians. Prints a markdown table for BENCHMARKS.md.

    python benchmarks/threads.py [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from gentools.data import load_images
from gentools.models.vae import VAE
from gentools.train import TrainConfig, fit


def images_per_second(threads: int, steps: int) -> float:
    torch.manual_seed(0)
    model = VAE.from_size("default")
    cfg = TrainConfig(steps=steps, eval_every=10**9, threads=threads, progress=False)
    data = load_images("digits")
    start = time.perf_counter()
    fit(model, data, cfg)
    return steps * cfg.batch_size / (time.perf_counter() - start)


def neighbour() -> None:
    """Train forever with one thread: the busy process next door."""
    while True:
        images_per_second(1, 200)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--neighbour", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.neighbour:
        neighbour()
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for busy in (False, True):
            proc = None
            if busy:
                proc = subprocess.Popen([sys.executable, __file__, "--neighbour"])
                time.sleep(3)  # let it start training
            try:
                for threads in (1, 2):
                    ips = images_per_second(threads, args.steps)
                    results.setdefault(("busy" if busy else "alone", threads), []).append(ips)
            finally:
                if proc:
                    proc.kill()
                    proc.wait()
    print(f"VAE default size, {args.steps} steps of 64 images, median of {args.repeats}:\n")
    print("| neighbour | 1 thread (img/s) | 2 threads (img/s) | 2 threads / 1 thread |")
    print("| --- | --- | --- | --- |")
    for where in ("alone", "busy"):
        one = statistics.median(results[(where, 1)])
        two = statistics.median(results[(where, 2)])
        print(f"| {where} | {one:.0f} | {two:.0f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
