"""Training throughput of every model at its default size, in the one training loop.

Each model trains `--steps` steps with `train.fit` at its notebook's default batch size and
one torch thread, with a callback that times every step; the first `--skip` steps (warm-up)
and the final evaluation are left out. The models take turns, `--repeats` rounds, so a change
in the machine's load hits all of them alike. Prints, per model, the median over the rounds
of each round's median step time, and examples per second at that step time.

    python benchmarks/throughput.py [--steps 40] [--skip 5] [--repeats 3] [--only vae,gpt]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gentools import repro
from gentools.data import load_images, text
from gentools.data.audio import load_audio
from gentools.models.bert import BERT
from gentools.models.flow import Flow
from gentools.models.gan import GAN
from gentools.models.gpt import GPT
from gentools.models.pixelcnn import PixelCNN
from gentools.models.vae import VAE
from gentools.models.wavenet import WaveNet
from gentools.train import Callback, TrainConfig, fit


class StepClock(Callback):
    """Durations of the steps after the first `skip`."""

    def __init__(self, skip: int):
        self.skip, self.times, self.last = skip, [], None

    def on_step(self, state):
        now = time.perf_counter()
        if self.last is not None and state.step > self.skip:
            self.times.append(now - self.last)
        self.last = now


def images():
    data = load_images("digits")
    kw = dict(shape=data.shape, levels=data.levels)
    return {
        "VAE": (data, lambda: VAE.from_size("default", **kw), 64, "images"),
        "GAN (WGAN-GP, 2 critic steps)": (data, lambda: GAN.from_size("default", **kw), 64,
                                          "images"),
        "PixelCNN": (data, lambda: PixelCNN.from_size("default", **kw), 64, "images"),
        "Flow (Glow, variational)": (data, lambda: Flow.from_size("default", **kw), 64, "images"),
    }


def sequences():
    audio = load_audio("synth", seed=0, n_clips=120, sample_rate=8000, duration=0.25)
    wavenet = lambda: WaveNet.from_size(  # noqa: E731
        "default", n_instruments=len(audio.instruments), n_pitches=len(audio.pitches))
    chars = text.load_text("pydoc", "char", block_size=GPT.sizes["default"]["block_size"],
                           stride=8)
    bpe = text.load_text("pydoc", "bpe", BERT.sizes["default"]["block_size"], 1024, shift=False,
                         stride=16)
    return {
        "WaveNet": (audio, wavenet, 8, "clips"),
        "GPT (char)": (chars, lambda: GPT.from_size("default", vocab_size=chars.vocab_size), 12,
                       "blocks"),
        "BERT (BPE 1024)": (bpe, lambda: BERT.from_size("default", vocab_size=bpe.vocab_size), 16,
                            "blocks"),
    }


def step_seconds(data, build, batch_size: int, steps: int, skip: int) -> float:
    torch.manual_seed(0)
    model = build()
    clock = StepClock(skip)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, eval_every=10**9, eval_batches=1,
                      progress=False)
    fit(model, data, cfg, callbacks=[clock])
    return statistics.median(clock.times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated model names (prefixes)")
    args = ap.parse_args()
    threads = repro.set_threads()
    models = {**images(), **sequences()}
    if args.only:
        wanted = [w.lower() for w in args.only.split(",")]
        models = {k: v for k, v in models.items() if any(k.lower().startswith(w) for w in wanted)}
    rounds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, (data, build, batch, _unit) in models.items():
            rounds[name].append(step_seconds(data, build, batch, args.steps, args.skip))
    print(f"Default sizes, {threads} torch thread(s), {args.steps} steps per round "
          f"(first {args.skip} not timed), median over {args.repeats} interleaved rounds:\n")
    print("| model | parameters | batch | ms/step (median) | examples/s | spread of the rounds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (_data, build, batch, unit) in models.items():
        ms = statistics.median(rounds[name]) * 1000
        spread = (max(rounds[name]) - min(rounds[name])) / statistics.median(rounds[name])
        params = build().num_parameters()  # trained parameters
        print(f"| {name} | {params:,} | {batch} {unit} | {ms:.1f} | {batch / ms * 1000:,.0f} "
              f"{unit}/s | {spread:.0%} |")


if __name__ == "__main__":
    main()
