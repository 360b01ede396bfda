"""The GAN's default job against the VAE's, side by side in the same sample-quality metric.

Runs `gentools run gan` and `gentools run vae` with their default parameters as papermill jobs
into a temporary folder, and prints a markdown table: wall time, training time, the Frechet
classifier distance of 1000 samples to the test digits, the class coverage, and the reference of
real digits the classifier never saw (the validation digits against the test digits, same
metric), every figure read from the runs' metrics.json. Both metrics see every image set on the
digits' 17 levels (`gentools.metrics.on_levels`), so the GAN's continuous outputs are rounded
like-for-like with the VAE's draws and the real digits. It checks the GAN issue's targets: a
default run <= 120 s, every digit class >= 5% of the GAN's samples, and a GAN distance below the
VAE's. One seed: the comparison benchmark gives the mean and spread over 3 seeds.

    python benchmarks/gan.py [-p loss nonsaturating]

Timings depend on the machine's load: compare runs only on the same, quiet machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from gentools.runner import jobs
from gentools.runner.params import parse_value


def run(name: str, params: dict, out: str) -> tuple[float, dict]:
    start = time.perf_counter()
    folder = jobs.run(name, params, out=out, progress=False)
    return time.perf_counter() - start, json.loads((folder / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a GAN notebook parameter",
    )
    args = ap.parse_args()
    gan_params = {k: parse_value(v) for k, v in args.p}
    with tempfile.TemporaryDirectory() as out:
        rows = {f"GAN {gan_params or '(defaults)'}": run("gan", gan_params, out)}
        rows["VAE (defaults), samples x ~ p(x|z)"] = run("vae", {}, out)
    (gan_wall, gan), (vae_wall, vae) = rows.values()
    print("| model | wall time | train seconds | FCD, 1000 samples vs test | coverage min | max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (wall, m) in rows.items():
        print(
            f"| {name} | {wall:.1f} s | {m['train_seconds']:.1f} | {m['fcd']:.2f} | "
            f"{m['coverage_min']:.3f} | {m['coverage_max']:.3f} |"
        )
    print(f"| VAE decoder means (same z) | | | {vae['fcd_decoder_mean']:.2f} | | |")
    print(f"| reference: 350 real val digits vs test | | | {gan['fcd_heldout_reference']:.2f} |"
          " | |")
    print(f"\nclassifier test accuracy {gan['classifier_test_accuracy']:.3f}")
    print(
        f"targets: GAN run <= 120 s: {gan_wall <= 120} ({gan_wall:.1f} s); "
        f"every class >= 5%: {gan['coverage_min'] >= 0.05}; "
        f"GAN FCD < VAE FCD: {gan['fcd'] < vae['fcd']} ({gan['fcd']:.2f} < {vae['fcd']:.2f}); "
        f"VAE run <= 120 s: {vae_wall <= 120} ({vae_wall:.1f} s)"
    )


if __name__ == "__main__":
    main()
