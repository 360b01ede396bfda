"""Parameter sweeps: many papermill runs of the gentools notebooks, spread over Dask.

A sweep spec (YAML; README, "Sweeps") holds ``notebooks`` (a name, a list, or
``{name: its own values}``), ``base`` values, a ``grid`` (every combination) and/or explicit
``sets``, ``seeds``, ``retries``, and optionally its ``name`` and the ``metric`` to plot.
``parse_spec`` checks each entry once, before anything starts, and expands the spec into
runs; ``run_sweep`` runs them on Dask into ``<out>/<notebook>/<digest>`` (so a second
invocation skips completed runs and resumes unfinished ones), retrying failures, and
writes ``<out>/sweeps/<name>/results.csv`` and ``summary.html``. Torch is never imported.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gentools import jobs
from gentools.files import atomic_write, read_json
from gentools.params import ParameterError, find_notebook, notebook_parameters, parse_value

SPEC_KEYS = ("name", "notebooks", "base", "grid", "sets", "seeds", "retries", "metric")
GPU = "GPU"  # the Dask worker resource a GPU run asks for
SWEEPS = "sweeps"  # <out>/sweeps/<name>/ holds a sweep's table and figure
RESULTS, SUMMARY = "results.csv", "summary.html"
MAX_RUNS = 5000  # a spec of more runs is refused (gentools sweep --max-runs)


class SpecError(ParameterError):
    """A sweep spec that cannot run; ``problems`` names each bad entry."""


@dataclass(frozen=True, eq=False)
class Job:
    """One run of a sweep."""

    notebook: Path  # the notebook file
    parameters: dict  # every parameter but out_dir, checked
    digest: str  # jobs.run_digest: the run folder's name
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


# --- the spec --------------------------------------------------------------------------


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


def _checked(notebook: Path, where: str, values: Mapping, problems: list[str]) -> dict:
    """One entry's values for one notebook, converted to the parameters' types ({} and the
    problems noted when it does not fit). YAML reads ``1e-3`` as text: such text is read
    as ``gentools run -p`` reads it."""
    spec = notebook_parameters(notebook)
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
            notebook = find_notebook(stem)
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
            found.append(Job(notebook, values, jobs.run_digest(notebook, values), label))
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


# --- Dask: the cluster, the workers' GPUs, one run ---------------------------------------


def worker_specs(gpus: Sequence[str], workers: int | None = None) -> dict[str, dict]:
    """Dask worker specs: one worker process per GPU, which it alone sees
    (``CUDA_VISIBLE_DEVICES``) and offers as the resource ``GPU=1``; ``workers`` beyond the
    GPU count are CPU-only. Every worker runs one task at a time."""
    from distributed import Nanny

    specs = {}
    for i in range(len(gpus) if workers is None else workers):
        gpu = gpus[i] if i < len(gpus) else None
        options = {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": gpu or ""},
                   "resources": {GPU: 1} if gpu is not None else {}}
        specs[f"gpu-{gpu}" if gpu is not None else f"cpu-{i}"] = {"cls": Nanny, "options": options}
    return specs


def local_cluster(workers: int | None = None, gpus: Sequence[str] | None = None):
    """A local Dask cluster of worker processes, one task each: ``workers`` processes
    (default: the CPU count) without GPUs, else ``worker_specs(gpus, workers)``; ``gpus``
    defaults to ``repro.visible_gpus()``."""
    from distributed import LocalCluster, Scheduler, SpecCluster

    if gpus is None:
        from gentools.repro import visible_gpus

        gpus = visible_gpus()
    if not gpus:
        return LocalCluster(n_workers=workers or os.cpu_count() or 1, processes=True,
                            threads_per_worker=1, dashboard_address=None)
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": ":0"}}
    return SpecCluster(workers=worker_specs(gpus, workers), scheduler=scheduler)


def needs_gpu(device: object, cluster_has_gpus: bool) -> bool:
    """Whether a run on ``device`` asks for a GPU: cuda always, auto where GPUs exist."""
    return str(device).startswith("cuda") or (device == "auto" and cluster_has_gpus)


def execute_job(notebook: str, parameters: dict, out: str, retries: int) -> dict:
    """Run one sweep run on a Dask worker, up to ``1 + retries`` times; never raises for a
    failed run. A completed run folder is left alone (Dask may rerun a task whose worker
    died); an unfinished one is resumed in its folder (``jobs.resume``), from its
    checkpoint when it has one; anything else starts afresh."""
    run_dir = jobs.reuse_dir(notebook, parameters, out)
    if jobs.run_status(run_dir) == "completed":
        return {"status": "completed", "attempts": 0, "error": None}
    error = None
    for attempt in range(1, retries + 2):
        try:
            try:
                jobs.resumable(run_dir)
            except jobs.NotResumable:
                jobs.run(notebook, parameters, out=out, progress=False, reuse=True)
            else:
                jobs.resume(run_dir, progress=False)
        except jobs.RunFailed as exc:
            error = f"{exc.ename}: {exc.evalue}"
        except Exception as exc:  # a full disk, say: recorded and retried like a failure
            error = f"{type(exc).__name__}: {exc}"
        else:
            return {"status": "completed", "attempts": attempt, "error": None}
    return {"status": "failed", "attempts": retries + 1, "error": error}


# --- running a sweep -------------------------------------------------------------------


def run_sweep(sweep: Sweep, out: str | os.PathLike[str] = "runs", *, client=None,
              scheduler: str | None = None, workers: int | None = None,
              progress: bool = True) -> Path:
    """Run every run of ``sweep`` that has not completed, on ``client``, or the cluster at
    ``scheduler``, or a ``local_cluster(workers)``; return ``<out>/sweeps/<name>/``."""
    out = Path(out).resolve()
    outcomes = {job: {"status": "completed", "attempts": 0, "error": None}
                for job in sweep.jobs if jobs.run_status(job.run_dir(out)) == "completed"}
    pending = [job for job in sweep.jobs if job not in outcomes]
    if pending:
        _run_pending(sweep, pending, out, outcomes, client, scheduler, workers, progress)
    folder = out / SWEEPS / sweep.name
    rows = results_table(sweep, outcomes, out)
    write_csv(rows, folder / RESULTS)
    figure = summary_figure(rows, sweep.swept, sweep.metric)
    figure.write_html(folder / SUMMARY, include_plotlyjs=True)
    return folder


def _run_pending(sweep, pending, out, outcomes, client, scheduler, workers, progress) -> None:
    from contextlib import ExitStack

    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    with ExitStack() as stack:
        if client is None and scheduler:
            client = stack.enter_context(Client(scheduler))
            client.wait_for_workers(1, timeout=120)
        elif client is None:
            from gentools.repro import visible_gpus

            gpus = visible_gpus()
            count = workers or (None if gpus else max(1, min(len(pending), os.cpu_count() or 1)))
            client = stack.enter_context(Client(stack.enter_context(local_cluster(count, gpus))))
        info = client.scheduler_info(n_workers=-1).get("workers", {}).values()
        has_gpus = any(w.get("resources", {}).get(GPU) for w in info)
        gpu_jobs = [j for j in pending if needs_gpu(j.parameters.get("device"), has_gpus)]
        if gpu_jobs and not has_gpus:
            job = gpu_jobs[0]
            raise SpecError(f"{job.entry} ({job.name}) runs on {job.parameters['device']!r}, "
                            f"but no worker offers a {GPU} resource (no GPU here, or workers "
                            f"started without --resources {GPU}=1)")
        token = uuid.uuid4().hex[:8]
        futures: dict = {}  # the runs submitted and not yet finished, at most `window`

        def submit(job: Job):
            future = client.submit(
                execute_job, str(job.notebook), job.parameters, str(out), sweep.retries,
                key=f"gentools-{job.name}-{job.digest}-{token}",
                resources={GPU: 1} if job in gpu_jobs else None, pure=False)
            futures[future] = job
            return future

        # two runs per worker in flight: the scheduler never holds the whole sweep
        window, queue = 2 * max(1, len(info)), iter(pending)
        running = as_completed([submit(job) for job in itertools.islice(queue, window)])
        quiet = {} if progress else {"disable": True}  # else tqdm honours TQDM_DISABLE
        with tqdm(total=len(sweep.jobs), initial=len(sweep.jobs) - len(pending),
                  desc=f"sweep {sweep.name}", unit="run", **quiet) as bar:
            for future in running:
                job = futures.pop(future)
                if future.status == "error":  # the task itself broke (its worker kept dying)
                    exc = future.exception()
                    outcomes[job] = {"status": "failed", "attempts": 1,
                                     "error": f"{type(exc).__name__}: {exc}"}
                else:
                    outcomes[job] = future.result()
                bar.set_postfix(failed=sum(o["status"] != "completed" for o in
                                           outcomes.values()), refresh=False)
                bar.update(1)
                following = next(queue, None)
                if following is not None:
                    running.add(submit(following))


# --- results ---------------------------------------------------------------------------


def results_table(sweep: Sweep, outcomes: Mapping[Job, dict], out: Path) -> list[dict]:
    """One row per run: notebook, run id, status, attempts, wall time, entry, then
    ``params.<name>`` and ``metrics.<name>`` columns, the error and the run folder."""
    rows = []
    for job in sweep.jobs:
        run_dir = job.run_dir(out)
        outcome = outcomes.get(job, {"status": "not run", "attempts": 0, "error": None})
        manifest = read_json(run_dir / jobs.MANIFEST, {})
        metrics = read_json(run_dir / jobs.METRICS, {}) if manifest.get("status") == "completed" \
            else {}
        error = manifest.get("error")
        rows.append({
            "notebook": job.name, "run_id": job.digest,
            "status": manifest.get("status", outcome["status"]),
            "attempts": outcome["attempts"], "wall_time_s": manifest.get("wall_time_s"),
            "entry": job.entry,
            **{f"params.{k}": v for k, v in job.parameters.items()},
            **{f"metrics.{k}": v for k, v in metrics.items()},
            "error": f"{error['ename']}: {error['evalue']}" if error else outcome["error"],
            "run_dir": str(run_dir),
        })
    return rows


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Write the results table as CSV (atomically): the columns of every row, the metrics
    after the parameters, the error and the run folder last."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    last = [n for n in names if n.startswith("metrics.")] + ["error", "run_dir"]
    columns = [n for n in names if n not in last] + [n for n in last if n in names]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def read_results(folder: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a sweep's ``results.csv`` (values as text; empty where a run has none)."""
    with open(Path(folder) / RESULTS, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_figure(rows: Sequence[dict], swept: Sequence[str], metric: str | None = None):
    """A plotly figure: the metric against each swept parameter, one panel per parameter,
    a colour per notebook; hovering a point names its run folder. ``metric`` defaults to
    the first metric (by name) that every completed run has. Failed runs are left out."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    done = [r for r in rows if r["status"] == "completed"]
    if metric is None:
        names = [{k for k in r if k.startswith("metrics.")} for r in done]
        shared = sorted(set.intersection(*names) or set().union(*names)) if names else []
        metric = shared[0].removeprefix("metrics.") if shared else None
    panels = list(swept) or ["run_id"]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=panels)
    done = [r for r in done if f"metrics.{metric}" in r]
    for col, name in enumerate(panels, start=1):
        for notebook in dict.fromkeys(r["notebook"] for r in done):
            mine = [r for r in done if r["notebook"] == notebook]
            xs = [r.get(name if name == "run_id" else f"params.{name}") for r in mine]
            fig.add_trace(go.Scatter(
                x=[str(x) if isinstance(x, bool) or x is None else x for x in xs],
                y=[r[f"metrics.{metric}"] for r in mine], mode="markers", name=notebook,
                legendgroup=notebook, showlegend=col == 1,
                text=[f"{notebook}/{r['run_id']}" for r in mine],
                hovertemplate=f"{name}=%{{x}}<br>{metric}=%{{y}}<br>run %{{text}}",
            ), row=1, col=col)
    fig.update_yaxes(title_text=metric or "no metrics", row=1, col=1)
    fig.update_layout(title=f"{metric or 'no completed runs'} per swept parameter", height=400,
                      width=max(500, 320 * len(panels)))
    return fig
