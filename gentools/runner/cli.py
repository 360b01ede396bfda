"""Command line: ``gentools run|sweep|list|show`` over the notebooks in ``notebooks/``.

Exit codes: 0 success, 1 the notebook (for a sweep: any run) failed, or a file could not
be written; 2 bad parameters or data, a bad sweep spec, a missing file, or a folder that
cannot be resumed or that another process runs (before any kernel starts); 128 + N when
signal N interrupted the run (SIGTERM: 143). Every failure ends in a few lines on stderr:
what went wrong, where the details are, what to do next. No torch is imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gentools.files import read_json
from gentools.parameters import (
    ParameterError,
    available_notebooks,
    load_notebook,
    notebook_parameters,
    notebooks_dir,
)
from gentools.record import METRICS
from gentools.runner import folders, jobs
from gentools.runner.params import parse_value


def build_parser() -> argparse.ArgumentParser:
    """The ``gentools`` argument parser."""
    parser = argparse.ArgumentParser(prog="gentools",
                                     description="Run and inspect gentools notebooks.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook into a new run folder")
    run.add_argument("notebook", nargs="?", help='notebook name ("vae", "vae.ipynb") or path')
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an unfinished run in its folder, from its last checkpoint "
                     "and with the parameters in its manifest")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="set a parameter (repeatable); see `gentools list`")
    run.add_argument("--out", type=Path, help="parent of run folders (./runs)")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (python3)")
    sweep = commands.add_parser("sweep", help="run a parameter sweep on Dask (see README)")
    sweep.add_argument("spec", type=Path, help="sweep spec (YAML)")
    sweep.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: one per "
                       "GPU, else one per CPU core)")
    sweep.add_argument("--out", type=Path, default=Path("runs"), help="parent of run folders")
    sweep.add_argument("--max-runs", type=int, default=None, metavar="N",
                       help="refuse a spec of more runs than this (default 5000)")
    for command in (run, sweep):
        command.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    commands.add_parser("list", help="list notebooks and their parameters")
    show = commands.add_parser("show", help="summarise a run folder")
    show.add_argument("run_folder", type=Path)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.notebook or args.param or args.out:
            raise ParameterError("--resume takes the notebook and its parameters from the run's "
                                 "manifest: give only the run folder")
        run_dir = jobs.resume(args.resume, progress=not args.no_progress, kernel_name=args.kernel)
    elif args.notebook is None:
        raise ParameterError("give a notebook to run (see `gentools list`) or --resume RUN_DIR")
    else:
        notebook = load_notebook(args.notebook)  # once: jobs.run takes it as it is
        spec, values = notebook.params, {}
        for name, text in args.param:  # typed as the parameter is: "-p data 123" stays text
            if name in values:
                raise ParameterError(f"parameter {name!r} given twice")
            values[name] = parse_value(text, spec[name].type if name in spec else None)
        run_dir = jobs.run(notebook, values, out=args.out, progress=not args.no_progress,
                           kernel_name=args.kernel)
    manifest = read_json(run_dir / folders.MANIFEST)
    metrics = run_dir / METRICS
    checkpoint = next(iter(sorted(run_dir.rglob("*.safetensors"))), None)
    print(f"executed notebook: {run_dir / manifest['executed_notebook']}")
    print(f"metrics: {metrics}" if metrics.is_file() else "metrics: none written")
    print(f"checkpoint: {checkpoint}" if checkpoint else "checkpoint: none written")
    print(f"manifest: {run_dir / folders.MANIFEST}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gentools.runner import sweep, sweep_spec

    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"--workers must be >= 1 (got {args.workers})")
    if not args.spec.is_file():
        raise FileNotFoundError(f"sweep spec {args.spec} does not exist")
    spec = sweep_spec.load_spec(args.spec, max_runs=args.max_runs or sweep_spec.MAX_RUNS)
    folder = sweep.run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers,
                             progress=not args.no_progress)
    rows = sweep.read_results(folder)
    ran = sum(int(r["attempts"]) > 0 for r in rows)
    failed = [r for r in rows if r["status"] != "completed"]
    print(f"{len(rows)} runs: {ran} ran now, {len(rows) - ran} had completed before, "
          f"{len(failed)} failed")
    for row in failed:
        print(f"  failed: {row['run_dir']} ({row['error']})")
    print(f"table: {folder / sweep.RESULTS}")
    print(f"figure: {folder / sweep.SUMMARY}")
    return 1 if failed else 0


def _cmd_list(args: argparse.Namespace) -> int:
    notebooks = available_notebooks()
    if not notebooks:
        print(f"no notebooks in {notebooks_dir()}", file=sys.stderr)
    status = 0
    for stem, path in notebooks.items():
        print(stem)
        try:
            print("\n".join(f"  {p.describe()}" for p in notebook_parameters(path).values()))
        except ParameterError as exc:
            print(f"  error: {exc}")
            status = 1
    return status


def _cmd_show(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_folder
    manifest = folders.read_manifest(run_dir)
    status = manifest.get("status")
    if status == "running" and not folders.is_locked(run_dir):
        status = (f"lost (the process that ran it is gone; resume it with: gentools run "
                  f"--resume {run_dir})")
    print(f"run: {run_dir}\nnotebook: {manifest.get('notebook')}\nstatus: {status}")
    attempts = manifest.get("attempts") or []
    if len(attempts) > 1:
        print("attempts: " + ", ".join(str(a.get("status")) for a in attempts))
    if isinstance(error := manifest.get("error"), dict):
        print(f"error: {error.get('ename')}: {error.get('evalue')}")
    wall = manifest.get("wall_time_s")
    print(f"wall time: {wall:.1f} s" if isinstance(wall, (int, float)) else "wall time: -")
    print("parameters:")
    for name, value in manifest.get("parameters", {}).items():
        print(f"  {name} = {value!r}")
    metrics = read_json(run_dir / METRICS, None)
    metrics = metrics if isinstance(metrics, dict) else None
    print("metrics:" if metrics is not None else "metrics: none written")
    width = max(map(len, metrics or {}), default=0)
    for name, value in (metrics or {}).items():
        print(f"  {name:<{width}}  {value:.6g}" if isinstance(value, float) else
              f"  {name:<{width}}  {value}")
    return 0


COMMANDS = {"run": _cmd_run, "sweep": _cmd_sweep, "list": _cmd_list, "show": _cmd_show}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gentools`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ParameterError, FileNotFoundError, folders.NotResumable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except jobs.RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 128 + exc.signal if exc.signal else 1
    except BrokenPipeError:  # `gentools show DIR | head`
        return 1
    except OSError as exc:  # a folder that cannot be made or written, a full disk
        where = exc.filename or "a file"
        full = jobs.OS_STATUS.get(exc.errno) == "out of disk"
        print(f"error: cannot write {where}: {exc.strerror or exc}\n"
              + ("next: free space on that disk, or choose another --out DIR" if full else
                 "next: choose a folder you can write with --out DIR"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
