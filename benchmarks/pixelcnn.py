"""The gated PixelCNN against a causal-conv ARM: training throughput, and our default job.

1. Throughput. The baseline is our own re-implementation, from its description, of the
   autoregressive model in J. M. Tomczak's "Deep Generative Modeling" (Springer 2022,
   chapter 2): the 8x8 digit flattened to a 64-step sequence, four stacked causal 1-D
   convolutions (the first strictly causal) of kernel 7 and 256 channels with LeakyReLU,
   and a softmax over the 17 levels at each step, trained with Adamax at lr 1e-3. Both
   models train for the same steps at the same batch size and thread count in this
   process, in alternating blocks of `--block` steps so that a change in machine load hits
   both alike; only the optimisation steps are timed. Prints images/s for each and the ratio.
2. The default job (`--job`, on by default): `gentools run pixelcnn` at its default
   parameters, its wall time and test NLL (exact, nats per image, and bits/dim).

    python benchmarks/pixelcnn.py [--steps 300] [--threads 1] [--no-job]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from gentools import repro
from gentools.data import load_images
from gentools.models.pixelcnn import PixelCNN
from gentools.nn import CausalConv1d
from gentools.runner import jobs
from gentools.train import batch_indices


class CausalConvARM(nn.Module):
    """p(x) = prod_d p(x_d | x_<d) over the flattened image, from stacked causal convolutions."""

    def __init__(self, dims: int, levels: int, channels: int = 256, kernel: int = 7):
        super().__init__()
        self.levels = levels
        self.net = nn.Sequential(
            CausalConv1d(1, channels, kernel, include_current=False),  # sees x_<d only
            nn.LeakyReLU(),
            CausalConv1d(channels, channels, kernel),
            nn.LeakyReLU(),
            CausalConv1d(channels, channels, kernel),
            nn.LeakyReLU(),
            CausalConv1d(channels, levels, kernel),
        )

    def loss(self, batch) -> torch.Tensor:
        x = batch[0].flatten(1).long()  # (B, D)
        logits = self.net(x[:, None].float() / (self.levels - 1))  # (B, levels, D)
        return F.cross_entropy(logits, x, reduction="none").sum(1).mean()  # nats per image


def throughput(args) -> None:
    repro.set_threads(args.threads)
    repro.seed_everything(0)
    images = load_images("digits")
    ours = PixelCNN.from_size(args.size, shape=images.shape, levels=images.levels)
    arm = CausalConvARM(64, images.levels, args.arm_channels, args.arm_kernel)
    runs = {
        "gated PixelCNN": (ours, torch.optim.AdamW(ours.parameters(), lr=1e-3), ours.loss),
        "causal-conv ARM": (arm, torch.optim.Adamax(arm.parameters(), lr=1e-3), arm.loss),
    }
    seconds = dict.fromkeys(runs, 0.0)
    losses = {}
    for start in range(0, args.steps, args.block):
        for name, (model, opt, loss_fn) in runs.items():
            model.train()
            t0 = time.perf_counter()
            for step in range(start, min(args.steps, start + args.block)):
                idx = batch_indices(len(images.train), args.batch_size, step, 0)
                out = loss_fn(tuple(t[idx] for t in images.train.tensors))
                loss = out["loss"] if isinstance(out, dict) else out
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            seconds[name] += time.perf_counter() - t0
            losses[name] = loss.item()
    rate = {name: args.steps * args.batch_size / s for name, s in seconds.items()}
    print(f"training throughput: {args.steps} steps of {args.batch_size} images, "
          f"{args.threads} torch thread(s), {repro.cpu_name()}\n")
    print("| model | parameters | images/s | train loss at the end (nats) |")
    print("| --- | --- | --- | --- |")
    for name, (model, _, _) in runs.items():
        n = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {n:,} | {rate[name]:.0f} | {losses[name]:.1f} |")
    ratio = rate["gated PixelCNN"] / rate["causal-conv ARM"]
    print(f"\nratio (PixelCNN / ARM): {ratio:.2f}x")


def default_job(args) -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = jobs.run("pixelcnn", {"threads": args.threads}, out=out, progress=False)
        wall = time.perf_counter() - start
        m = json.loads((run / "metrics.json").read_text())
    print("\n`gentools run pixelcnn`, default parameters:\n")
    print("| wall time | train seconds | test NLL (exact) | bits/dim | val NLL |"
          " histogram baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {wall:.1f} s | {m['train_seconds']:.1f} | {m['test_nll']:.2f} nats | "
          f"{m['test_bpd']:.3f} | {m['val_nll']:.2f} | {m['baseline_histogram_nll']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300, help="training steps for each model")
    ap.add_argument("--block", type=int, default=10, help="steps per alternating block")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both")
    ap.add_argument("--size", default="default", help="PixelCNN size")
    ap.add_argument("--arm-channels", type=int, default=256)
    ap.add_argument("--arm-kernel", type=int, default=7)
    ap.add_argument("--no-job", dest="job", action="store_false", help="skip the notebook job")
    args = ap.parse_args()
    throughput(args)
    if args.job:
        default_job(args)


if __name__ == "__main__":
    main()
