"""The comparison notebook end to end: its table, its wall time and the machine's load.

Runs `notebooks/compare.ipynb` as a papermill job with `--seeds` seeds at the default size.
By default its model runs go to a fresh folder, so every model trains (the issue's target:
at most 25 minutes for 3 seeds on a 2-core CPU); `--runs DIR` reuses the completed runs
in DIR instead. Prints the notebook's table, the wall time, the load averages before and
after, whether every row equals its runs' metrics.json (the notebook's own check), and
the anchors that the runs recorded: the per-pixel histogram and uniform NLLs and the real
training digits' Fréchet classifier distance to the test digits (never literals).

    python benchmarks/compare.py [--seeds 3] [--size default] [--runs DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from gentools import checkpoint, compare, jobs
from gentools.files import read_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", default="default", help="tiny: each notebook's test parameters")
    ap.add_argument("--runs", default="", help="reuse and add to the runs in this folder")
    ap.add_argument("--out", default="", help="keep the compare run here (default: temporary)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp).resolve()
        runs = str(Path(args.runs).resolve()) if args.runs else str(out / "model-runs")
        load_before = os.getloadavg()
        start = time.perf_counter()
        run = jobs.run("compare", {"seeds": args.seeds, "size": args.size, "runs_dir": runs},
                       out=out, progress=False)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()
        table = (run / "compare.md").read_text().strip()
        tensors, meta = checkpoint.load(run / "checkpoint.safetensors")
        made = read_json(run / jobs.METRICS)["collect_seconds"]
        rows = [r for fam in compare.FAMILIES for r in _rows(fam, meta)]
        agree = all(_agrees(run_dir, fam, i, tensors) for fam, i, run_dir in rows)
        anchors = _anchors([run_dir for _, _, run_dir in rows])
        seeds = list(meta["runs"][compare.FAMILIES[0].key])
    print(f"`gentools run compare -p seeds {args.seeds}` ({args.size} size, every model trained "
          f"{'unless found in ' + args.runs if args.runs else 'afresh'}):\n")
    print(table)
    load = lambda xs: "/".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"\nwall time {wall / 60:.1f} min (finding or running the {len(rows)} model runs: "
          f"{made / 60:.1f} min), target <= 25 min at 3 seeds; load average (1/5/15 min) "
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


def _num(x: float, decimals: int) -> str:
    return "–" if math.isnan(x) else f"{x:.{decimals}f}"


def _rows(fam, meta):
    """(family, index in the saved per-seed tensors, run folder) for each seed of a family."""
    for i, run_dir in enumerate(meta["runs"].get(fam.key, {}).values()):
        yield fam, i, Path(run_dir)


ANCHORS = (  # (metrics.json key, what it is, unit, decimals)
    ("baseline_histogram_nll", "per-pixel 17-way histogram", " nats", 2),
    ("baseline_uniform_nll", "uniform", " nats", 1),
    ("fcd_heldout_reference", "reference: real validation vs test digits (both unseen by the"
     " classifier), Fréchet classifier distance", "", 2),
)


def _anchors(run_dirs) -> str:
    """The anchors as the runs' metrics.json hold them: each key's value, or its range (with
    the number of runs) where runs disagree."""
    records = [read_json(d / jobs.METRICS) for d in run_dirs]
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
    recorded = read_json(run_dir / jobs.METRICS)
    same = tensors[f"{fam.key}.train_seconds"][i].item() == recorded[fam.prefix + "train_seconds"]
    if fam.nll_key:
        same &= tensors[f"{fam.key}.nll"][i].item() == recorded[fam.nll_key]
    return same


if __name__ == "__main__":
    main()
