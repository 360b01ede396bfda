"""The VAE's default job end to end: wall time of `gentools run vae` and its test NLL.

Runs the notebook with its default parameters as a papermill job (kernel start, data,
training, the k=1000 IWAE evaluation, widgets, recording) `--repeats` times into a
temporary folder, and prints the median wall time with the metrics.

    python benchmarks/vae.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from gentools.runner import jobs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    walls, metrics = [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            start = time.perf_counter()
            run = jobs.run("vae", {}, out=out, progress=False)
            walls.append(time.perf_counter() - start)
            metrics.append(json.loads((run / "metrics.json").read_text()))
    m = metrics[0]
    same = all(
        {k: v for k, v in x.items() if "seconds" not in k}
        == {k: v for k, v in m.items() if "seconds" not in k}
        for x in metrics
    )
    print(f"`gentools run vae`, default parameters, {args.repeats} runs:\n")
    print("| wall time (median) | train seconds | test NLL (IWAE, k=1000) | bits/dim |"
          " test -ELBO | histogram baseline | identical metrics across runs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {statistics.median(walls):.1f} s | {m['train_seconds']:.1f} | "
          f"{m['test_nll']:.2f} nats | {m['test_bpd']:.3f} | {m['test_nelbo']:.2f} | "
          f"{m['baseline_histogram_nll']:.2f} | {same} |")


if __name__ == "__main__":
    main()
