"""Every notebook's `gpu` size, briefly, on a CUDA GPU: training throughput per notebook.

Runs each notebook that has a `gpu` size as a `gentools run` job (a subprocess, so a
hung run cannot outlast the budget) with size gpu, device cuda, `--steps` steps, one
evaluation at the end and small evaluation knobs (IWAE samples, generated tokens, ...),
then prints a Markdown table of steps/s and examples/s from each run's metrics
(train_seconds includes the CUDA warm-up, the one evaluation and, with --compile, the
compilation). The whole script stops starting runs when `--budget` seconds are spent
(default 420 s, so it ends within 8 minutes on one H100) and says which it skipped.

    python benchmarks/gpu.py [--steps 100] [--deterministic] [--compile] [--budget 420]

`--fashion DIR` measures quality instead: the VAE, GAN, PixelCNN, flow and diffusion
notebooks at `gpu` size on Fashion-MNIST (the four IDX files in DIR; the GPU machine needs its
own copy), each trained for its steps in FASHION_STEPS (the diffusion notebook's two models
each) and evaluated as its notebook does, with the figures of FASHION_METRICS in the table:
test bits/dim on the 10,000 test images (targets: PixelCNN <= 2.7, the flow below Glow's
3.14), and the Fréchet classifier distance of the samples. The steps are chosen to end
within 10 minutes of one H100 and have not been measured yet.

Without CUDA it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gentools import presets
from gentools.parameters import available_notebooks, notebook_parameters, validate
from gentools.record import METRICS

# Evaluation knobs, kept small: the benchmark measures training throughput.
QUICK = {
    "iwae_k": 8,
    "iw_k": 4,
    "n_samples": 200,
    "gen_tokens": 20,
    "eval_batches": 4,
    "pitch_notes": 4,
    "n_clips": 600,
}
# --fashion: steps of each quality run and the metric it reports (bits/dim on the test set)
FASHION_STEPS = {"vae": 20000, "gan": 10000, "pixelcnn": 8000, "flow": 8000, "diffusion": 5000}
FASHION_METRICS = {  # notebook -> (metrics.json key, what it is)
    "vae": (("test_bpd", "test bits/dim"), ("fcd", "FCD")),
    "gan": (("fcd", "FCD"),),
    "pixelcnn": (("test_bpd", "test bits/dim"),),
    "flow": (("test_bpd_iw", "test bits/dim"),),
    "diffusion": (("test_bpd", "test bits/dim"), ("fcd", "FCD"), ("guided_accuracy",
                  "guided accuracy"), ("flow_fcd", "flow matching FCD")),
}


def cuda_device() -> str | None:
    """The name of CUDA device 0, or None when torch sees no CUDA."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def gpu_notebooks() -> dict[str, dict]:
    """``{stem: parameter spec}`` of the training notebooks with a `gpu` size."""
    found = {}
    for stem, path in available_notebooks().items():
        spec = notebook_parameters(path)
        size = spec.get("size")
        has_gpu = size is not None and size.choices is not None and "gpu" in size.choices
        if has_gpu and all(k in spec for k in ("device", "steps", "batch_size", "eval_every")):
            found[stem] = spec
    return found


def parameters(stem: str, spec: dict, args: argparse.Namespace
               ) -> tuple[dict[str, object], list[str]]:
    """The run's parameters, and the asked-for flags this notebook has no parameter for."""
    values = {"size": "gpu", "device": "cuda", "steps": args.steps, "eval_every": args.steps}
    if args.fashion:  # quality: the notebook's own evaluation on the full test set
        steps = FASHION_STEPS[stem]
        values.update(data="fashion-mnist", data_dir=args.fashion, steps=steps,
                      eval_every=steps // 4)
        if "flow_steps" in spec:
            values["flow_steps"] = steps
    else:
        values.update({k: v for k, v in QUICK.items() if k in spec})
    missing = []
    for flag in ("deterministic", "compile"):
        if getattr(args, flag):
            if flag in spec:
                values[flag] = True
            else:
                missing.append(flag)
    return values, missing


def run_one(stem: str, values: dict, out: Path, timeout: float) -> tuple[Path | None, str]:
    cmd = [sys.executable, "-m", "gentools", "run", stem, "--out", str(out), "--no-progress"]
    for name, value in values.items():
        cmd += ["-p", name, str(value)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"over the remaining budget ({timeout:.0f} s)"
    runs = sorted((out / stem).glob("*/manifest.json"))
    run_dir = runs[-1].parent if runs else None
    if done.returncode != 0:
        return run_dir, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return run_dir, "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for all runs")
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
    ap.add_argument("--fashion", metavar="DIR", default="",
                    help="quality runs on the Fashion-MNIST IDX files in DIR")
    args = ap.parse_args()
    name = cuda_device()
    if name is None:
        print("benchmarks/gpu.py needs a CUDA GPU, and torch sees none here.", file=sys.stderr)
        return 2
    notebooks = gpu_notebooks()
    if args.fashion:
        notebooks = {k: v for k, v in notebooks.items() if k in FASHION_STEPS}
        args.budget = max(args.budget, 570.0)  # the three quality runs: within 10 minutes
    if args.only:
        notebooks = {k: v for k, v in notebooks.items() if k in args.only}
    start = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stem, spec in notebooks.items():
            left = args.budget - (time.monotonic() - start)
            if left < 20:
                rows.append(f"| {stem} | | | | | skipped: budget spent |")
                continue
            values, missing = parameters(stem, spec, args)
            clock = time.monotonic()
            run_dir, status = run_one(stem, values, Path(tmp), left)
            wall = time.monotonic() - clock
            metrics = {}
            if run_dir is not None and (run_dir / METRICS).is_file():
                metrics = json.loads((run_dir / METRICS).read_text())
            if status != "ok" or "train_seconds" not in metrics:
                rows.append(f"| {stem} | | | | {wall:.0f} s | {status} |")
                continue
            steps, seconds = metrics["steps"], metrics["train_seconds"]
            batch = presets.resolve(stem, validate(spec, values))["batch_size"]
            note = f" (no {' or '.join(missing)} parameter)" if missing else ""
            if args.fashion:
                note += "".join(f"; {what} {metrics[key]:.3f}"
                                for key, what in FASHION_METRICS[stem])
            rows.append(
                f"| {stem} | {steps:.0f} | {steps / seconds:.1f} | {steps * batch / seconds:.0f} "
                f"| {wall:.0f} s | ok{note} |"
            )
    flags = [f for f in ("deterministic", "compile") if getattr(args, f)] or ["none"]
    what = "Fashion-MNIST quality runs" if args.fashion else f"{args.steps} steps"
    print(
        f"{name}, size gpu, {what}, flags: {', '.join(flags)}, "
        f"total {time.monotonic() - start:.0f} s\n"
    )
    print("| notebook | steps | steps/s | examples/s | job wall time | status |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0 if all("| ok" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
