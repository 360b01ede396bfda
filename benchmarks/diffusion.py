"""Diffusion: the design table behind the defaults, and our default job.

1. Designs (`--designs`): each row trains one design with the notebook's training settings
   (batch 128, lr 0.002 with 100 warm-up steps and cosine decay, one torch thread) and
   measures, on the digits test split:
   - train seconds (wall clock of the optimisation steps; note the machine's load) and the
     process CPU milliseconds per step, which a loaded machine inflates much less;
   - the Frechet classifier distance of 1000 unconditional samples (DDIM, 50 steps, on the
     17 levels) against the 447 test digits;
   - the share of 1000 guided samples (w = 2, 50 steps) classified as the class asked for;
   - for DDPM, the variational bound in nats per image (stratified estimate, 32 KL terms per
     image, with its standard error), with the reverse variance beta~_t and with beta_t.
2. The default job (`--job`, on by default): `gentools run diffusion` at its default
   parameters, its wall time and metrics.

    python benchmarks/diffusion.py [--designs] [--no-job] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch

from gentools import repro
from gentools.data import load_images
from gentools.judge import digits_classifier, frechet_classifier_distance
from gentools.models.diffusion import Diffusion
from gentools.runner import jobs
from gentools.train import TrainConfig, fit

DESIGNS = [  # (size, overrides, steps)
    ("default", dict(), 1500),
    ("default", dict(output="direct"), 1500),
    ("default", dict(schedule="linear"), 1500),
    ("default", dict(network="unet", width=16, depth=1), 1500),
    ("default", dict(network="unet", width=24, depth=1), 1500),
    ("default", dict(network="unet", width=32, depth=1), 1500),
    ("default", dict(objective="flow"), 1500),
]


def measure(size: str, overrides: dict, steps: int, images, threads: int) -> dict:
    repro.set_threads(threads)
    repro.seed_everything(0)
    model = Diffusion.from_size(size, **overrides)
    cfg = TrainConfig(
        steps=steps, batch_size=128, lr=0.002, warmup=100, eval_every=10**9, progress=False
    )
    cpu = time.process_time()
    state = fit(model, images, cfg)
    cpu_ms = (time.process_time() - cpu) / steps * 1000  # CPU time per step: load-independent
    model.eval()
    classifier, test01 = digits_classifier(), images.test.tensors[0].float() / 16
    fixed = lambda: torch.Generator().manual_seed(0)
    draws = model.sample(1000, generator=fixed(), steps=50)
    asked = torch.arange(1000) % 10
    guided = model.sample(1000, generator=fixed(), steps=50, labels=asked, guidance=2.0)
    row = {
        "params": model.num_parameters(),
        "cpu_ms": cpu_ms,
        "train_s": state.elapsed,
        "fcd": frechet_classifier_distance(draws, test01, classifier),
        "guided_acc": (classifier(guided).argmax(1) == asked).float().mean().item(),
    }
    if model.config.objective == "ddpm":
        for variance in ("posterior", "beta"):
            model.config.variance = variance
            torch.manual_seed(0)
            nll = model.nll(images.test.tensors, draws=32)
            row[f"nll_{variance}"] = nll.mean().item()
            row[f"se_{variance}"] = nll.std().item() / math.sqrt(len(nll))
    return {**row, "config": model.config}


def designs(args) -> None:
    images = load_images("digits")
    print(f"designs on {repro.cpu_name()}, {args.threads} torch thread(s)\n")
    print(
        "| objective | network | output | T | schedule | steps | parameters | train s |"
        " CPU ms/step | FCD | guided acc (w=2) | NLL bound, beta~ | NLL bound, beta |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size, overrides, steps in DESIGNS:
        r = measure(size, overrides, steps, images, args.threads)
        c = r["config"]
        net = f"{c.network} {c.width}x{c.depth}"
        nll = {
            v: f"{r[f'nll_{v}']:.1f} ± {r[f'se_{v}']:.1f}" if f"nll_{v}" in r else "-"
            for v in ("posterior", "beta")
        }
        print(
            f"| {c.objective} | {net} | {c.output} | {c.timesteps} | {c.schedule} | {steps} |"
            f" {r['params']:,} | {r['train_s']:.0f} | {r['cpu_ms']:.0f} | {r['fcd']:.1f} |"
            f" {r['guided_acc']:.3f} |"
            f" {nll['posterior']} | {nll['beta']} |",
            flush=True,
        )


def default_job(args) -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = jobs.run("diffusion", {"threads": args.threads}, out=out, progress=False)
        wall = time.perf_counter() - start
        m = json.loads((run / "metrics.json").read_text())
    print("\n`gentools run diffusion`, default parameters:\n")
    print(
        "| wall time | train s (DDPM + flow) | NLL bound | bits/dim | FCD | FCD guided |"
        " guided acc | flow FCD | flow guided acc | FCD reference (val vs test digits) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {wall:.1f} s | {m['train_seconds']:.1f} + {m.get('flow_train_seconds', 0):.1f} |"
        f" {m['test_nll']:.2f} ± {m['test_nll_se']:.2f} nats | {m['test_bpd']:.3f} |"
        f" {m['fcd']:.2f} | {m['fcd_guided']:.2f} | {m['guided_accuracy']:.3f} |"
        f" {m.get('flow_fcd', math.nan):.2f} | {m.get('flow_guided_accuracy', math.nan):.3f} |"
        f" {m['fcd_heldout_reference']:.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--designs", action="store_true", help="train and measure every design")
    ap.add_argument("--no-job", dest="job", action="store_false", help="skip the notebook job")
    args = ap.parse_args()
    if args.designs:
        designs(args)
    if args.job:
        default_job(args)


if __name__ == "__main__":
    main()
