"""The likelihood families on 28x28 Fashion-MNIST (256 levels): designs, speed and the jobs.

1. `--designs`: each candidate design of the VAE, PixelCNN and flow trains for the same
   budget, steps or CPU time (process time, so a busy machine slows every design alike),
   then scores bits/dim on the first 1000 test images (exact
   for the PixelCNN, a one-sample -ELBO for the VAE, the K=1 dequantization bound for the
   flow). Prints one table per family.
2. `--throughput` (on by default): the PixelCNN's training images/s at the `medium` size
   against a straightforward gated PixelCNN of about the same number of parameters (full 3x3
   masked kernels for the vertical stack and 1x3 for the horizontal one, a 256-way softmax,
   as in van den Oord et al. 2016), both at batch 32, AdamW and one torch thread, in
   alternating blocks of steps; only the steps are timed. Also the user and system CPU
   seconds of each, the figure that showed the allocator's cost of 256-way outputs.
3. `--jobs` (on by default): `gentools run NAME -p data fashion-mnist` for the PixelCNN, VAE
   and flow, two at a time (`--at-once`; each job trains on one torch thread, so each has a
   core of a 2-core machine), each with its wall time (evaluation included) and test
   bits/dim on the full test set, beside the per-pixel histogram.

    python benchmarks/fashion.py [--designs] [--no-throughput] [--no-jobs] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from gentools import repro
from gentools.data import load_images
from gentools.models.flow import Flow
from gentools.models.pixelcnn import PixelCNN
from gentools.models.vae import VAE
from gentools.runner import jobs
from gentools.train import TrainConfig, batch_indices, fit

# family -> (model class, training budget, [(label, overrides)]). A budget is ("steps", n) or
# ("cpu", seconds of process time); overrides are config fields plus size, batch and lr.
DESIGNS = {
    "VAE": (VAE, ("steps", 1500), [
        ("default size, discretized Gaussian", dict(size="default", decoder="gaussian")),
        ("default size, logistic mixture K=3", dict(size="default", decoder="logistic")),
        ("medium size, logistic mixture K=3", dict(size="medium", decoder="logistic")),
    ]),
    "PixelCNN": (PixelCNN, ("cpu", 400), [
        ("medium (logistic K=5, kernel 3), batch 32, lr 2e-3", dict(size="medium")),
        ("medium, kernel 5 (14 rows in reach), batch 32, lr 2e-3", dict(size="medium", kernel=5)),
        ("medium, batch 32, lr 5e-3", dict(size="medium", lr=5e-3)),
        ("medium, batch 16, lr 2e-3", dict(size="medium", batch=16)),
        ("medium, batch 16, lr 5e-3", dict(size="medium", batch=16, lr=5e-3)),
        ("medium, batch 16, lr 5e-3, intensity input", dict(size="medium", batch=16, lr=5e-3,
                                                            embedding=False)),
    ]),
    "Flow": (Flow, ("cpu", 200), [
        ("default size (4 full-resolution couplings, 4 steps a scale)", dict(size="default")),
        ("2 full-resolution couplings, 6 steps a scale, smaller dequantizer",
         dict(size="default", full_res_steps=2, steps=6, deq_steps=2, deq_hidden=16)),
        ("2 full-resolution, 4 a scale, uniform dequantization",
         dict(size="default", full_res_steps=2, steps=4, deq_steps=2, deq_hidden=16,
              dequantization="uniform")),
    ]),
}


def train_for(model, images, batch_size: int, budget: tuple[str, float], lr: float) -> int:
    """("steps", n): n steps of `train.fit` (its cosine schedule); ("cpu", s): AdamW with
    clipping at 1 and a constant lr for s seconds of process time. Returns the steps."""
    kind, amount = budget
    if kind == "steps":
        cfg = TrainConfig(steps=int(amount), batch_size=batch_size, lr=lr, eval_every=10**9,
                          eval_batches=1, progress=False)
        return fit(model, images, cfg).step
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start, step = time.process_time(), 0
    model.train()
    while (step < amount) if kind == "steps" else (time.process_time() - start < amount):
        idx = batch_indices(len(images.train), batch_size, step, 0)
        loss = model.loss(tuple(t[idx] for t in images.train.tensors))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
    return step


def designs(images) -> None:
    test = images.test.tensors[0][:1000]
    for family, (cls, budget, candidates) in DESIGNS.items():
        print(f"\n{family}: {budget[1]} {'steps' if budget[0] == 'steps' else 'CPU-s'} of "
              "training each\n")
        print("| design | parameters | steps | images per CPU-s | test bits/dim (1000 images) | "
              "IWAE, k=16 (VAE) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, overrides in candidates:
            repro.seed_everything(0)
            kw = dict(overrides)
            size, batch, lr = kw.pop("size"), kw.pop("batch", 32 if cls is PixelCNN else 64), \
                kw.pop("lr", 2e-3)
            model = cls.from_size(size, shape=images.shape, levels=256, **kw)
            clock = time.process_time()
            steps = train_for(model, images, batch, budget, lr)
            rate = steps * batch / (time.process_time() - clock)
            model.eval()
            with torch.no_grad():
                nats = torch.cat([model.loss((test[i:i + 100], None))["loss"][None]
                                  for i in range(0, len(test), 100)]).mean().item()
                iwae = torch.cat([model.nll((test[i:i + 100],), k=16) for i in range(
                    0, len(test), 100)]).mean().item() if cls is VAE else math.nan
            bpd = lambda n: f"{n / (784 * math.log(2)):.3f}" if math.isfinite(n) else "–"
            print(f"| {label} | {model.num_parameters():,} | {steps} | {rate:.0f} | {bpd(nats)} | "
                  f"{bpd(iwae)} |", flush=True)


class MaskedGatedPixelCNN(nn.Module):
    """The straightforward gated PixelCNN: full k x k kernels times a mask (vertical stack),
    1 x k kernels times a mask (horizontal stack), and a 256-way softmax per pixel."""

    def __init__(self, channels: int, layers: int, head: int, levels: int = 256):
        super().__init__()
        self.levels, p = levels, channels
        self.inp = nn.Conv2d(1, p, 1)
        self.v = nn.ModuleList(nn.Conv2d(p, 2 * p, 3, padding=1) for _ in range(layers))
        self.h = nn.ModuleList(nn.Conv2d(p, 2 * p, (1, 3), padding=(0, 1)) for _ in range(layers))
        self.v_to_h = nn.ModuleList(nn.Conv2d(2 * p, 2 * p, 1) for _ in range(layers))
        self.h_out = nn.ModuleList(nn.Conv2d(p, p, 1) for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(p, head, 1), nn.ReLU(),
                                  nn.Conv2d(head, levels, 1))
        for i in range(layers):  # vertical: rows above (and the centre row after layer 0)
            vm = torch.zeros(3, 3)
            vm[0] = 1
            vm[1] = float(i > 0)
            hm = torch.tensor([[1.0, float(i > 0), 0.0]])  # horizontal: left (and centre)
            self.register_buffer(f"vmask{i}", vm)
            self.register_buffer(f"hmask{i}", hm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = self.inp(x.to(self.inp.weight.dtype) / (self.levels - 1) * 2 - 1)
        for i in range(len(self.v)):  # layer 0's masks exclude the pixel's own row / itself
            vw, hw = self.v[i].weight * getattr(self, f"vmask{i}"), self.h[i].weight * getattr(
                self, f"hmask{i}")
            v_pre = F.conv2d(v, vw, self.v[i].bias, padding=1)  # (B, 2p, H, W)
            h_pre = F.conv2d(h, hw, self.h[i].bias, padding=(0, 1)) + self.v_to_h[i](v_pre)
            f, g = h_pre.chunk(2, 1)
            h = self.h_out[i](torch.tanh(f) * torch.sigmoid(g)) + (h if i else 0)
            f, g = v_pre.chunk(2, 1)
            v = torch.tanh(f) * torch.sigmoid(g)
        return self.head(h)  # (B, levels, H, W)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x = batch[0][:, 0].long()  # (B, H, W)
        nll = F.cross_entropy(self(batch[0]), x, reduction="none").flatten(1).sum(1).mean()
        return {"loss": nll}


def matched_baseline(target: int) -> MaskedGatedPixelCNN:
    """The baseline with 7 layers whose parameter count is closest to `target`."""
    sizes = [(abs(sum(p.numel() for p in MaskedGatedPixelCNN(c, 7, 64).parameters()) - target), c)
             for c in range(8, 65)]
    return MaskedGatedPixelCNN(min(sizes)[1], 7, 64)


def throughput(images, steps: int, block: int) -> None:
    repro.seed_everything(0)
    ours = PixelCNN.from_size("medium", shape=images.shape, levels=256)
    n_ours = ours.num_parameters()
    base = matched_baseline(n_ours)
    runs = {"gentools PixelCNN (medium)": ours, "masked-kernel gated PixelCNN": base}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in runs.items()}
    wall, user, system = (dict.fromkeys(runs, 0.0) for _ in range(3))
    for start in range(0, steps, block):
        for name, model in runs.items():
            model.train()
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for step in range(start, min(steps, start + block)):
                idx = batch_indices(len(images.train), 32, step, 0)
                loss = model.loss(tuple(t[idx] for t in images.train.tensors))["loss"]
                opts[name].zero_grad(set_to_none=True)
                loss.backward()
                opts[name].step()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            wall[name] += time.perf_counter() - t0
            user[name] += r1.ru_utime - r0.ru_utime
            system[name] += r1.ru_stime - r0.ru_stime
    print(f"\nPixelCNN training throughput at 28x28, 256 levels: {steps} steps of 32 images, "
          f"1 torch thread, {repro.cpu_name()}\n")
    print("| model | parameters | images/s | user CPU s | system CPU s |")
    print("| --- | --- | --- | --- | --- |")
    for name, model in runs.items():
        print(f"| {name} | {sum(p.numel() for p in model.parameters()):,} | "
              f"{steps * 32 / wall[name]:.1f} | {user[name]:.1f} | {system[name]:.1f} |")
    names = list(runs)
    print(f"\nratio: {wall[names[1]] / wall[names[0]]:.2f}x")


def run_jobs(data_dir: str, at_once: int) -> None:
    """The three jobs, `at_once` at a time (each on one torch thread, so one core each)."""
    kinds = {"pixelcnn": ("test_bpd", "exact"), "vae": ("test_bpd", "IWAE bound"),
             "flow": ("test_bpd_iw", "importance-weighted bound")}
    params = {"data": "fashion-mnist", **({"data_dir": data_dir} if data_dir else {})}

    def one(name: str, out: str) -> tuple[float, dict]:
        start = time.perf_counter()
        run = jobs.run(name, params, out=out, progress=False)
        return time.perf_counter() - start, json.loads((run / "metrics.json").read_text())

    with tempfile.TemporaryDirectory() as out, ThreadPoolExecutor(at_once) as pool:
        done = {name: pool.submit(one, name, out) for name in kinds}
        print(f"\n`gentools run NAME -p data fashion-mnist`, full test set, {at_once} job(s) at "
              "a time on one torch thread each:\n")
        print("| notebook | wall time | train seconds | steps | test bits/dim | kind | "
              "histogram |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, (key, kind) in kinds.items():
            wall, m = done[name].result()
            extra = f"; -ELBO {m['test_nelbo_bpd']:.3f}" if name == "vae" else (
                f"; K=1 {m['test_bpd']:.3f}" if name == "flow" else "")
            print(f"| {name} | {wall / 60:.1f} min | {m['train_seconds']:.0f} | {m['steps']:.0f} "
                  f"| {m[key]:.3f} | {kind}{extra} | "
                  f"{m['baseline_histogram_nll'] / (784 * math.log(2)):.3f} |",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", action="store_true", help="the design tables (about 40 min)")
    ap.add_argument("--no-throughput", dest="throughput", action="store_false")
    ap.add_argument("--steps", type=int, default=60, help="throughput steps for each model")
    ap.add_argument("--block", type=int, default=5, help="steps per alternating block")
    ap.add_argument("--no-jobs", dest="jobs", action="store_false")
    ap.add_argument("--at-once", type=int, default=2, help="jobs run side by side")
    ap.add_argument("--data-dir", default="", help="Fashion-MNIST folder (default: Debian's)")
    args = ap.parse_args()
    repro.set_threads(1)
    images = load_images("fashion-mnist", args.data_dir or None)
    if args.designs:
        designs(images)
    if args.throughput:
        throughput(images, args.steps, args.block)
    if args.jobs:
        run_jobs(args.data_dir, args.at_once)


if __name__ == "__main__":
    main()
