"""The comparison notebook end to end: its table, its wall time and the machine's load.

Runs `notebooks/compare.ipynb` as a papermill job with `--seeds` seeds, at the size each
notebook picks for `--data` (the digits by default, `--data fashion-mnist` for 28x28). By
default its model runs go to a fresh folder, so every model trains (the target on the digits:
at most 25 minutes for 3 seeds on a 2-core CPU); `--runs DIR` reuses the completed runs
in DIR instead. `--at-once N` first makes the model runs that the notebook will ask for, N at
a time (each trains on one torch thread, so 2 fill a 2-core machine), then the notebook finds
them all completed and only samples and tabulates. Prints the notebook's table, the wall
time, the load averages before and after, whether every row equals its runs' metrics.json
(the notebook's own check), and the anchors that the runs recorded: the per-pixel histogram
and uniform NLLs, and the Fréchet classifier distances of held-out real images and of the
histogram's samples to the test images (never literals).

    python benchmarks/compare.py [--seeds 3] [--size auto] [--data digits] [--data-dir DIR]
                                 [--at-once 1] [--runs DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gentools import checkpoint, presets
from gentools.files import read_json
from gentools.record import METRICS
from gentools.results import Likelihood
from gentools.runner import compare, jobs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", default="auto", help="tiny: each notebook's test parameters")
    ap.add_argument("--data", default="digits", help="the data set of every model")
    ap.add_argument("--data-dir", default="", help="its folder (not for digits or Debian's)")
    ap.add_argument("--at-once", type=int, default=1, help="model runs made side by side first")
    ap.add_argument("--runs", default="", help="reuse and add to the runs in this folder")
    ap.add_argument("--out", default="", help="keep the compare run here (default: temporary)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp).resolve()
        runs = str(Path(args.runs).resolve()) if args.runs else str(out / "model-runs")
        load_before = os.getloadavg()
        start = time.perf_counter()
        asked = {"seeds": args.seeds, "size": args.size, "runs_dir": runs, "data": args.data,
                 "data_dir": args.data_dir}
        if args.at_once > 1:
            _make_runs(asked, args.at_once)
        run = jobs.run("compare", asked, out=out, progress=False)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()
        table = (run / "compare.md").read_text().strip()
        tensors, meta = checkpoint.load(run / "checkpoint.safetensors")
        made = read_json(run / METRICS)["collect_seconds"]
        rows = [r for fam in compare.FAMILIES for r in _rows(fam, meta)]
        agree = all(_agrees(run_dir, fam, i, tensors) for fam, i, run_dir in rows)
        anchors = _anchors([run_dir for _, _, run_dir in rows])
        seeds = list(meta["runs"][compare.FAMILIES[0].key])
    print(f"`gentools run compare -p seeds {args.seeds} -p data {args.data}` ({args.size} size, "
          f"every model trained {'unless found in ' + args.runs if args.runs else 'afresh'}, "
          f"{args.at_once} at a time):\n")
    print(table)
    load = lambda xs: "/".join(f"{x:.2f}" for x in xs)  # noqa: E731
    target = ", target <= 25 min at 3 seeds" if args.data == "digits" else ""
    print(f"\nwall time {wall / 60:.1f} min (finding or running the {len(rows)} model runs: "
          f"{made / 60:.1f} min){target}; load average (1/5/15 min) "
          f"{load(load_before)} before, {load(load_after)} after; torch threads per "
          f"process: {os.environ.get('GENTOOLS_THREADS', 'the gentools default (1)')}.")
    print(f"\nevery row equals the metrics.json of its runs: {agree}")
    print(f"\nAnchors, as the runs recorded them: {anchors}.")
    print(f"\nper seed ({', '.join(seeds)}): test NLL / Fréchet classifier distance / training s\n")
    print("| model | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|" + " --- |" * (len(seeds) + 1))
    for fam in compare.FAMILIES:
        cells = [
            " / ".join(_num(tensors[f"{fam.key}.{key}"][i].item(), decimals)
                       for key, decimals in (("nll", 2), ("fcd", 2), ("train_seconds", 1)))
            for i in range(len(seeds))
        ]
        print(f"| {fam.name} | " + " | ".join(cells) + " |")


def _make_runs(asked: dict, at_once: int) -> None:
    """Every model run the compare notebook will ask for, `at_once` at a time, in its runs
    folder under the digest it will look for (completed ones are reused)."""
    n = presets.resolve("compare", {"data": asked["data"], "n_samples": 0})["n_samples"]
    wanted = [(fam.notebook, compare.run_parameters(fam, asked["size"], seed, "auto", n,
                                                    asked["data"], asked["data_dir"]))
              for seed in range(asked["seeds"]) for fam in compare.FAMILIES
              if not fam.part]  # flow matching comes from the diffusion run
    def timed(nb: str, params: dict) -> tuple[Path, float]:
        start = time.perf_counter()
        run = jobs.run(nb, params, out=asked["runs_dir"], progress=False, reuse=True)
        return run, time.perf_counter() - start

    with ThreadPoolExecutor(at_once) as pool:
        done = [pool.submit(timed, nb, params) for nb, params in wanted]
        for (nb, params), future in zip(wanted, done, strict=True):
            run, wall = future.result()
            print(f"- {nb} seed {params['seed']}: {wall / 60:.1f} min of wall time, evaluation "
                  f"included ({run.name})", flush=True)


def _num(x: float, decimals: int) -> str:
    return "–" if math.isnan(x) else f"{x:.{decimals}f}"


def _rows(fam, meta):
    """(family, index in the saved per-seed tensors, run folder) for each seed of a family."""
    for i, run_dir in enumerate(meta["runs"].get(fam.key, {}).values()):
        yield fam, i, Path(run_dir)


ANCHORS = (  # (metrics.json key, what it is, unit, decimals)
    ("baseline_histogram_nll", "per-pixel histogram", " nats", 2),
    ("baseline_uniform_nll", "uniform", " nats", 1),
    ("fcd_heldout_reference", "reference: real validation vs test images (both unseen by the"
     " classifier), Fréchet classifier distance, as many as each notebook's samples", "", 2),
    ("fcd_histogram_baseline", "the per-pixel histogram's samples, Fréchet classifier"
     " distance, as many as each notebook's samples", "", 2),
)


def _anchors(run_dirs) -> str:
    """The anchors as the runs' metrics.json hold them: each key's value, or its range (with
    the number of runs) where runs disagree."""
    records = [read_json(d / METRICS) for d in run_dirs]
    parts = []
    for key, name, unit, decimals in ANCHORS:
        values = sorted({round(r[key], decimals) for r in records if key in r})
        n = sum(key in r for r in records)
        runs = f"{n} run{'s' if n != 1 else ''}"
        if not values:
            parts.append(f"{name}: not recorded")
        elif len(values) == 1:
            parts.append(f"{name} {values[0]:.{decimals}f}{unit} ({runs}, `{key}`)")
        else:
            parts.append(f"{name} {values[0]:.{decimals}f} to {values[-1]:.{decimals}f}{unit} "
                         f"({runs}, which disagree, `{key}`)")
    return "; ".join(parts)


def _agrees(run_dir: Path, fam, i: int, tensors: dict) -> bool:
    """The saved per-seed NLL and training time equal the run's own metrics.json."""
    recorded = fam.read(run_dir)
    same = tensors[f"{fam.key}.train_seconds"][i].item() == recorded.train_seconds
    if isinstance(recorded, Likelihood):
        same &= tensors[f"{fam.key}.nll"][i].item() == recorded.nll
    return same


if __name__ == "__main__":
    main()
