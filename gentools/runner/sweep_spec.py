"""Sweep specs: what a sweep runs, checked before anything starts.

A sweep spec (YAML; README, "Sweeps") holds ``notebooks`` (a name, a list, or
``{name: its own values}``), ``base`` values, a ``grid`` (every combination) and/or explicit
``sets``, ``seeds``, ``retries``, and optionally its ``name`` and the ``metric`` to plot.
``parse_spec`` checks each entry once, as ``gentools run`` checks its parameters, and expands
the spec into runs (``Job``), each with the digest that names its run folder; `sweep` runs
them. Torch is never imported.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gentools.parameters import Notebook, ParameterError, load_notebook
from gentools.runner import jobs
from gentools.runner.folders import run_digest
from gentools.runner.params import parse_value

SPEC_KEYS = ("name", "notebooks", "base", "grid", "sets", "seeds", "retries", "metric")
MAX_RUNS = 5000  # a spec of more runs is refused (gentools sweep --max-runs)


class SpecError(ParameterError):
    """A sweep spec that cannot run; ``problems`` names each bad entry."""


@dataclass(frozen=True, eq=False)
class Job:
    """One run of a sweep."""

    notebook: Path  # the notebook file
    parameters: dict  # every parameter but out_dir, checked
    digest: str  # folders.run_digest: the run folder's name
    entry: str  # where in the spec it comes from, for messages

    @property
    def name(self) -> str:  # the notebook's stem
        return self.notebook.stem

    def run_dir(self, out: Path) -> Path:
        return out / self.name / self.digest


@dataclass
class Sweep:
    """A checked spec, expanded into its runs."""

    name: str  # the folder under <out>/sweeps
    jobs: list[Job]  # the runs, in spec order
    swept: list[str]  # parameters whose value differs between runs
    retries: int = 0  # extra tries of a failed run
    metric: str | None = None  # the metric the summary figure plots


def load_spec(path: str | os.PathLike[str], max_runs: int = MAX_RUNS) -> Sweep:
    """Read a YAML sweep spec and check it (``parse_spec``)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"sweep spec {path}: not valid YAML: {exc}") from None
    return parse_spec(data, name=Path(path).stem, where=f"sweep spec {path}", max_runs=max_runs)


def _entries(data: Mapping, problems: list[str], max_runs: int) -> tuple[dict, list, list | None,
                                                                     int]:
    """The spec's shape-checked pieces: ``{notebook: its values}``, ``[(label, values)]`` of
    the base, grid points and sets, the seeds (or None) and the retries. The runs are
    counted before the grid is expanded: more than ``max_runs`` raises SpecError at once."""

    def mapping(value: object, where: str) -> dict:
        if value is None or isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value or {})
        problems.append(f"{where}: expected a mapping of parameter names to values")
        return {}

    names = data.get("notebooks")
    names = [names] if isinstance(names, str) else names
    notebooks = {}
    if "notebooks" not in data:
        problems.append("notebooks: missing; name one or more notebooks")
    elif isinstance(names, list) and names and all(isinstance(v, str) for v in names):
        notebooks = {v: {} for v in names}
    elif isinstance(names, Mapping) and names:
        notebooks = {str(k): mapping(v, f"notebooks.{k}") for k, v in names.items()}
    else:
        problems.append("notebooks: expected a notebook name, a list of names, or a mapping")
    grid = mapping(data.get("grid"), "grid")
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    problems.extend(f"grid.{k}: expected a non-empty list of values" for k in bad)
    sets = data.get("sets") or []
    if not isinstance(sets, list):
        problems.append("sets: expected a list of parameter mappings")
        sets = []
    seeds = data.get("seeds")
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if seeds is not None and (not isinstance(seeds, list) or not seeds):
        problems.append("seeds: expected an integer or a non-empty list of integers")
        seeds = None
    points = math.prod(len(v) for v in grid.values()) if grid and not bad else 0
    count = len(notebooks) * max(1, points + len(sets)) * len(seeds or [None])
    if count > max_runs:
        raise SpecError(f"it makes {count:,} runs ({len(notebooks)} notebook(s) x ({points:,} "
                        f"grid points + {len(sets)} sets) x {len(seeds or [None])} seed(s)), "
                        f"more than the limit of {max_runs:,}; split it into smaller sweeps, "
                        "or raise the limit with --max-runs N")
    entries = [("base", mapping(data.get("base"), "base"))]
    for combo in itertools.product(*grid.values()) if points else []:
        point = dict(zip(grid, combo, strict=True))
        label = ", ".join(f"{k}: {v!r}" for k, v in point.items())
        entries.append((f"grid point {{{label}}}", point))
    entries += [(f"sets[{i}]", mapping(v, f"sets[{i}]")) for i, v in enumerate(sets)]
    problems.extend(f"seeds[{i}]: expected an integer (got {s!r})" for i, s in
                    enumerate(seeds or []) if isinstance(s, bool) or not isinstance(s, int))
    if seeds and len(set(map(repr, seeds))) != len(seeds):
        problems.append(f"seeds: {seeds} repeats a seed")
    if seeds is not None:
        problems.extend(f"{label}: sets 'seed', which the spec's seeds already vary"
                        for label, values in entries if "seed" in values)
    retries = data.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(f"retries: expected an integer >= 0 (got {retries!r})")
    return notebooks, entries, seeds, retries


def _checked(notebook: Notebook, where: str, values: Mapping, problems: list[str]) -> dict:
    """One entry's values for one notebook, converted to the parameters' types ({} and the
    problems noted when it does not fit). YAML reads ``1e-3`` as text: such text is read
    as ``gentools run -p`` reads it."""
    spec = notebook.params
    typed = {k: parse_value(v, spec[k].type) if isinstance(v, str) and k in spec
             and spec[k].type is not str else v for k, v in values.items()}
    device = typed.get("device")
    if isinstance(device, str) and device.startswith("cuda:") and device != "cuda:0":
        problems.append(f"{where} ({notebook.stem}): device {device!r}: each sweep worker owns "
                        "one GPU, which its runs see as cuda (cuda:0)")
    try:
        full = jobs.check_run(notebook, typed)
    except ParameterError as exc:
        problems.extend(f"{where} ({notebook.stem}): {p}" for p in exc.problems)
        return {}
    return {k: full[k] for k in typed}


def parse_spec(data: object, name: str = "sweep", where: str = "sweep spec",
               max_runs: int = MAX_RUNS) -> Sweep:
    """Check a spec (the YAML's data) and expand it into runs, or raise SpecError naming
    every bad entry, or the number of runs when it passes ``max_runs``. The runs are, for
    each notebook, each grid point then each set (or the base alone when there are
    neither), each over every seed."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    problems: list[str] = []
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        problems.append(f"unknown key(s) {unknown}; a spec may hold {', '.join(SPEC_KEYS)}")
    sweep_name, metric = data.get("name", name), data.get("metric")
    if not isinstance(sweep_name, str) or not sweep_name or "/" in sweep_name:
        problems.append(f"name: expected a folder name (got {sweep_name!r})")
    if metric is not None and not isinstance(metric, str):
        problems.append(f"metric: expected a metric name (got {metric!r})")
    try:
        notebooks, entries, seeds, retries = _entries(data, problems, max_runs)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    found: list[Job] = []
    for stem, own in notebooks.items() if not problems else []:
        try:
            notebook = load_notebook(stem)  # once per notebook, for all its runs
            defaults = jobs.check_run(notebook, {})
        except (FileNotFoundError, ParameterError) as exc:
            problems.append(f"notebooks.{stem}: {exc}")
            continue
        base = _checked(notebook, "base", entries[0][1], problems)
        base |= _checked(notebook, f"notebooks.{stem}", own, problems)
        points = [(label, _checked(notebook, label, v, problems)) for label, v in entries[1:]]
        for i, seed in enumerate(seeds or []):
            _checked(notebook, f"seeds[{i}]", {"seed": seed}, problems)
        for (label, point), seed in itertools.product(points or [("base", {})], seeds or [None]):
            values = {**defaults, **base, **point, **({} if seed is None else {"seed": seed})}
            label = label if seed is None else f"{label}, seed {seed}"
            found.append(Job(notebook.path, values, run_digest(notebook, values), label))
    seen: dict[tuple[str, str], Job] = {}
    for job in found if not problems else []:
        first = seen.setdefault((job.name, job.digest), job)
        if first is not job:  # the same folder: the same parameters (or a digest collision)
            problems.append(f"{job.entry} ({job.name}) repeats the run of {first.entry}")
    if problems:
        raise SpecError([f"{where}: {p}" for p in problems], header=f"{where} is invalid")
    by_notebook: dict[str, list[dict]] = {}
    for job in found:
        by_notebook.setdefault(job.name, []).append(job.parameters)
    swept = [k for runs in by_notebook.values() for k in runs[0]
             if len({repr(p[k]) for p in runs}) > 1]  # in cell order
    return Sweep(str(sweep_name), found, list(dict.fromkeys(swept)), retries, metric)
