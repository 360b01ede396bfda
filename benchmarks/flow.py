"""The flow's default job end to end: training time and the discrete NLL bounds on the test split.

Runs `notebooks/flow.ipynb` as a papermill job (kernel start, data, training, the K=1 and
importance-weighted bounds, widgets, recording) with its default parameters, once per
dequantization, and prints a markdown table. Targets (issue 5): training <= 120 s and a K=1
bound <= 95 nats per image (aim 90).

    python benchmarks/flow.py [--dequantization variational uniform] [--variant glow]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from gentools.runner import jobs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dequantization", nargs="+", default=["variational", "uniform"])
    ap.add_argument("--variant", default="glow", choices=["glow", "realnvp"])
    ap.add_argument("--steps", type=int, default=0, help="0: the notebook default")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for deq in args.dequantization:
            params = {"dequantization": deq, "variant": args.variant}
            if args.steps:
                params["steps"] = args.steps
            start = time.perf_counter()
            run = jobs.run("flow", params, out=out, progress=False)
            wall = time.perf_counter() - start
            rows.append((deq, wall, json.loads((run / "metrics.json").read_text())))
    print(f"`gentools run flow -p variant {args.variant} -p dequantization ...`, default size:\n")
    print("| dequantization | steps | train seconds | job wall time | test bound K=1 (nats) |"
          " bits/dim | importance-weighted bound (nats, K) | bits/dim | histogram baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for deq, wall, m in rows:
        print(f"| {deq} | {m['steps']:.0f} | {m['train_seconds']:.1f} | {wall:.1f} s | "
              f"{m['test_nll']:.2f} | {m['test_bpd']:.3f} | "
              f"{m['test_nll_iw']:.2f} (K={m['iw_k']:.0f}) | {m['test_bpd_iw']:.3f} | "
              f"{m['baseline_histogram_nll']:.2f} |")


if __name__ == "__main__":
    main()
