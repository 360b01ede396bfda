"""Sweep overhead: a 6-run sweep on the local Dask cluster against the same 6 runs done
one after another with `gentools run`.

The runs are the VAE at its tiny test size (steps 20, IWAE k=8), seeds 0-5. Each
variant writes into its own empty folder, so nothing is skipped, and every command is
a fresh process, as a user would type it. Variants, in this order:

- `gentools run vae -p seed S ...` six times, one after another;
- `gentools sweep spec.yaml --workers 1`: the same runs, one at a time, through Dask
  (the cost of the sweep machinery itself: cluster start, scheduling, results);
- `gentools sweep spec.yaml --workers 2`: the local cluster's default on 2 cores.

    python benchmarks/sweep_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BASE = {"size": "tiny", "steps": 20, "eval_every": 10, "iwae_k": 8}
SEEDS = list(range(6))


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def sequential(out: Path) -> float:
    total = 0.0
    for seed in SEEDS:
        cmd = [sys.executable, "-m", "gentools", "run", "vae", "--out", str(out), "--no-progress"]
        for name, value in {**BASE, "seed": seed}.items():
            cmd += ["-p", name, str(value)]
        total += timed(cmd)
    return total


def swept(out: Path, spec: Path, workers: int) -> float:
    cmd = [sys.executable, "-m", "gentools", "sweep", str(spec), "--out", str(out),
           "--workers", str(workers), "--no-progress"]  # fmt: skip
    return timed(cmd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    times: dict[str, list[float]] = {"run x6": [], "sweep, 1 worker": [], "sweep, 2 workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "tiny.yaml"
        spec.write_text(yaml.safe_dump({"notebooks": ["vae"], "base": BASE, "seeds": SEEDS}))
        for r in range(args.repeats):
            times["run x6"].append(sequential(root / f"seq{r}"))
            times["sweep, 1 worker"].append(swept(root / f"w1-{r}", spec, 1))
            times["sweep, 2 workers"].append(swept(root / f"w2-{r}", spec, 2))
    base = statistics.median(times["run x6"])
    print(f"6 tiny VAE runs, {os.cpu_count()} cores, median of {args.repeats}:\n")
    print("| variant | wall time | vs `gentools run` x6 |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        t = statistics.median(values)
        print(f"| {name} | {t:.1f} s | {100 * (t / base - 1):+.1f}% |")


if __name__ == "__main__":
    main()
