"""The diffusion notebook's designs on 28x28 Fashion-MNIST: the U-Net's resolutions.

Each design trains one model (DDPM or flow matching, the `medium` U-Net with v output and a
weight average of decay 0.99) for its steps at its batch (lr 0.002, 100 warm-up steps, one
torch thread), then judges it as `notebooks/diffusion.ipynb` does, with the same seeds: the
Fréchet classifier distance of 1000 samples (20 DDIM steps, or 10 Heun steps for flow
matching), and of 1000 guided samples at w = 2 and w = 4 (100 of each class), with the share
of those in the class asked for. Prints one markdown row per design, as it finishes; the
notebook's design table holds the record.

    python benchmarks/fashion_diffusion.py [--data-dir DIR] [--only N ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from gentools import repro
from gentools.data import load_images
from gentools.judge import sample_judge
from gentools.models.diffusion import Diffusion
from gentools.train import TrainConfig, fit

# (objective, U-Net channel multipliers, steps, batch): the rows of the notebook's table
DESIGNS = [
    ("ddpm", (1, 2), 2500, 64),
    ("ddpm", (1, 2, 2), 2500, 64),
    ("flow", (1, 2), 2500, 64),
    ("flow", (1, 2, 2), 2500, 64),
    ("flow", (1, 2, 2), 1500, 64),
    ("flow", (1, 2, 2), 2500, 32),
]


def measure(images, judge, objective: str, mults: tuple[int, ...], steps: int,
            batch: int) -> str:
    torch.manual_seed(0)
    model = Diffusion.from_size("medium", objective=objective, mults=mults, shape=images.shape,
                                levels=images.levels, num_classes=len(images.classes))
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=0.002, warmup=100, eval_every=steps,
                      eval_batches=4, progress=False)
    clock = time.process_time()
    fit(model, images, cfg)
    cpu = time.process_time() - clock
    model.eval()
    n_steps = 20 if objective == "ddpm" else 10  # 20 network evaluations either way
    draw = lambda **kw: model.sample(1000, generator=torch.Generator().manual_seed(0),
                                     steps=n_steps, **kw)
    asked = torch.arange(1000) % 10
    guided = {w: draw(labels=asked, guidance=w) for w in (2.0, 4.0)}
    sides = ", ".join(str(images.shape[1] // 2**i) for i in range(len(mults)))
    hits = [judge.accuracy(guided[w], asked) for w in (2.0, 4.0)]
    return (f"| {objective} | {sides} | {steps} x {batch} | {model.num_parameters():,} | "
            f"{cpu:.0f} | {judge.fcd(draw()):.1f} | {judge.fcd(guided[2.0]):.1f} | "
            f"{hits[0]:.3f} | {hits[1]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST's folder (default: "
                        "Debian's dataset-fashion-mnist)")
    parser.add_argument("--only", type=int, nargs="*", help="row numbers (0-based) to run")
    args = parser.parse_args()
    repro.set_threads(1)
    images = load_images("fashion-mnist", args.data_dir)
    judge = sample_judge(images, 1000, 0)
    print(f"reference {judge.reference:.2f}, histogram baseline {judge.baseline:.1f}\n")
    print("| objective | resolutions | steps x batch | trained parameters | training CPU s | FCD | "
          "guided FCD, w=2 | guided acc, w=2 | guided acc, w=4 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, design in enumerate(DESIGNS):
        if args.only is None or i in args.only:
            print(measure(images, judge, *design), flush=True)


if __name__ == "__main__":
    main()
