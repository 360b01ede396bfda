"""Parameter sweeps: many papermill runs of the gentools notebooks, spread over Dask.

A sweep spec (YAML) names notebooks, base parameters, a grid and/or explicit parameter
sets, seeds and retries::

    name: vae-lr             # optional; default: the spec file's name
    notebooks: [vae]         # or {vae: {iwae_k: 8}, gan: {n_samples: 200}}
    base: {size: tiny, steps: 20}
    grid: {lr: [0.001, 0.002]}
    sets: [{lr: 0.003, batch_size: 32}]
    seeds: [0, 1, 2]
    retries: 1
    metric: test_nll         # optional; the metric the summary figure plots

``load_spec`` expands it into runs and checks every run exactly as ``gentools run``
does, before anything starts; a problem names the entry it comes from. ``run_sweep``
executes each run with ``jobs.run`` on a Dask cluster (a local one by default) into
``<out>/<notebook>/<digest>``, the run's stable id, so a second invocation skips the
runs that completed. A run that fails is retried, then recorded, and the rest go on.
The results land in ``<out>/sweeps/<name>/``: ``results.csv``, ``summary.html`` (the
plotly figure) and ``report.html`` (the table, linking every run, and the figure).

Dask, plotly and tqdm are imported only where they are used; torch never is.
"""

from __future__ import annotations

import csv
import html
import itertools
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gentools import jobs
from gentools.params import ParameterError, notebook_parameters, parse_value

__all__ = [
    "Job",
    "Sweep",
    "SpecError",
    "detect_gpus",
    "execute_job",
    "load_spec",
    "local_cluster",
    "needs_gpu",
    "parse_spec",
    "read_results",
    "run_sweep",
    "summary_figure",
    "worker_specs",
]

SPEC_KEYS = ("name", "notebooks", "base", "grid", "sets", "seeds", "retries", "metric")
GPU = "GPU"  # the Dask worker resource a GPU run asks for
SWEEPS = "sweeps"  # <out>/sweeps/<name>/ holds a sweep's table, figure and report
RESULTS, SUMMARY, REPORT = "results.csv", "summary.html", "report.html"


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
    def name(self) -> str:
        return self.notebook.stem

    def run_dir(self, out: Path) -> Path:
        return out / self.name / self.digest


@dataclass
class Sweep:
    """A checked spec, expanded into its runs."""

    name: str
    jobs: list[Job]
    swept: list[str]  # parameters whose value differs between runs
    retries: int = 0
    metric: str | None = None
    source: Path | None = None  # the spec file


@dataclass
class Outcome:
    """What happened to one run in this invocation."""

    status: str  # "completed" or "failed" (from the manifest when there is one)
    attempts: int = 0  # tries in this invocation; 0: it had completed before
    error: str | None = None
    extra: dict = field(default_factory=dict)


# --- the spec --------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str]) -> Sweep:
    """Read a YAML sweep spec and check it (``parse_spec``); SpecError names bad entries."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"sweep spec {path}: not valid YAML: {exc}") from None
    return parse_spec(data, name=path.stem, source=path)


def _label(values: Mapping[str, object]) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in values.items()) + "}"


def _as_mapping(value: object, where: str, problems: list[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        problems.append(f"{where}: expected a mapping of parameter names to values")
        return {}
    return dict(value)


def _notebooks(value: object, problems: list[str]) -> dict[str, dict]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return {v: {} for v in value}
    if isinstance(value, Mapping) and value:
        return {str(k): _as_mapping(v, f"notebooks.{k}", problems) for k, v in value.items()}
    problems.append("notebooks: expected a notebook name, a list of names, or a mapping")
    return {}


def _grid_points(value: object, problems: list[str]) -> list[tuple[str, dict]]:
    grid = _as_mapping(value, "grid", problems)
    if not grid:
        return []
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{name}: expected a non-empty list of values")
            return []
    points = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo, strict=True))
        points.append((f"grid point {_label(point)}", point))
    return points


def _sets(value: object, problems: list[str]) -> list[tuple[str, dict]]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append("sets: expected a list of parameter mappings")
        return []
    return [(f"sets[{i}]", _as_mapping(v, f"sets[{i}]", problems)) for i, v in enumerate(value)]


def _seeds(value: object, problems: list[str]) -> list[int] | None:
    if value is None:
        return None
    seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(seeds, list) or not seeds:
        problems.append("seeds: expected an integer or a non-empty list of integers")
        return None
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int):
            problems.append(f"seeds[{i}]: expected an integer (got {seed!r})")
    if len(set(map(repr, seeds))) != len(seeds):
        problems.append(f"seeds: {seeds} repeats a seed")
    return seeds


def _retries(value: object, problems: list[str]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"retries: expected an integer >= 0 (got {value!r})")
        return 0
    return value


def _typed(spec: Mapping, values: Mapping[str, object]) -> dict[str, object]:
    """YAML reads ``1e-3`` as text; read text as ``gentools run -p`` does for non-str params."""
    out = {}
    for name, value in values.items():
        param = spec.get(name)
        if isinstance(value, str) and param is not None and param.type is not str:
            value = parse_value(value, param.type)
        out[name] = value
    return out


def _check_entry(
    notebook: Path, spec: Mapping, where: str, values: Mapping[str, object], problems: list[str]
) -> bool:
    try:
        jobs.check_run(notebook, _typed(spec, values))
    except ParameterError as exc:
        problems.extend(f"{where} ({notebook.stem}): {p}" for p in exc.problems)
        return False
    device = values.get("device")
    if isinstance(device, str) and device.startswith("cuda:") and device != "cuda:0":
        problems.append(
            f"{where} ({notebook.stem}): device {device!r}: each sweep worker owns one GPU, "
            "which its runs see as cuda (cuda:0)"
        )
        return False
    return True


def parse_spec(data: object, name: str = "sweep", source: Path | None = None) -> Sweep:
    """Check a spec (the YAML's data) and expand it into runs, or raise SpecError.

    The runs are: for each notebook, each grid point then each explicit set (or just
    the base when there are neither), each over every seed. Every piece is checked on
    its own first, so a problem names its entry (``grid.lr``, ``sets[2]``, ``seeds[1]``).
    """
    where = f"sweep spec {source}" if source else "sweep spec"
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    problems: list[str] = []
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        problems.append(f"unknown key(s) {unknown}; a spec may hold {', '.join(SPEC_KEYS)}")
    if "notebooks" not in data:
        problems.append("notebooks: missing; name one or more notebooks")
    sweep_name = data.get("name", name)
    if not isinstance(sweep_name, str) or not sweep_name or "/" in sweep_name:
        problems.append(f"name: expected a folder name (got {sweep_name!r})")
    metric = data.get("metric")
    if metric is not None and not isinstance(metric, str):
        problems.append(f"metric: expected a metric name (got {metric!r})")
    notebooks = _notebooks(data.get("notebooks"), problems) if "notebooks" in data else {}
    base = _as_mapping(data.get("base"), "base", problems)
    points = _grid_points(data.get("grid"), problems) + _sets(data.get("sets"), problems)
    seeds = _seeds(data.get("seeds"), problems)
    retries = _retries(data.get("retries"), problems)
    if seeds is not None:
        for entry, values in [("base", base), *points]:
            if "seed" in values:
                problems.append(f"{entry}: sets 'seed', which the spec's seeds already vary")
    if problems:
        raise SpecError([f"{where}: {p}" for p in problems], header=f"{where} is invalid")
    run_list = _expand(notebooks, base, points or [("base", {})], seeds, problems)
    if problems:
        raise SpecError([f"{where}: {p}" for p in problems], header=f"{where} is invalid")
    return Sweep(str(sweep_name), run_list, _swept(run_list), retries, metric, source)


def _expand(
    notebooks: dict[str, dict],
    base: dict,
    points: list[tuple[str, dict]],
    seeds: list[int] | None,
    problems: list[str],
) -> list[Job]:
    found: list[Job] = []
    for stem, extra in notebooks.items():
        try:
            notebook = jobs.find_notebook(stem)
            spec = notebook_parameters(notebook)
        except (FileNotFoundError, ParameterError) as exc:
            problems.append(f"notebooks.{stem}: {exc}")
            continue
        pieces = [("base", base), (f"notebooks.{stem}", extra), *points]
        pieces += [(f"seeds[{i}]", {"seed": s}) for i, s in enumerate(seeds or [])]
        if not all([_check_entry(notebook, spec, w, v, problems) for w, v in pieces]):
            continue
        for (entry, point), seed in itertools.product(points, seeds or [None]):
            values = {**base, **extra, **point} | ({} if seed is None else {"seed": seed})
            label = entry if seed is None else f"{entry}, seed {seed}"
            try:
                checked = jobs.check_run(notebook, _typed(spec, values))
            except ParameterError as exc:
                problems.extend(f"{label} ({stem}): {p}" for p in exc.problems)
                continue
            found.append(Job(notebook, checked, jobs.run_digest(notebook, checked), label))
    seen: dict[tuple[str, str], Job] = {}
    for job in found:
        first = seen.setdefault((job.name, job.digest), job)
        if first is not job:
            same = first.parameters == job.parameters
            what = "repeats the run of" if same else "has the same digest as"
            problems.append(f"{job.entry} ({job.name}) {what} {first.entry}")
    return found


def _swept(run_list: Sequence[Job]) -> list[str]:
    """Parameters whose value differs between runs of the same notebook, in cell order."""
    swept: dict[str, None] = {}
    for stem in dict.fromkeys(job.name for job in run_list):
        mine = [job.parameters for job in run_list if job.name == stem]
        for name in mine[0]:
            if len({repr(p[name]) for p in mine}) > 1:
                swept.setdefault(name)
    return list(swept)


# --- Dask: the cluster, the workers' GPUs, one run ---------------------------------------


def detect_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this machine offers: ``CUDA_VISIBLE_DEVICES`` when set, else nvidia-smi's."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return list(itertools.takewhile(lambda v: v != "-1", ids))
    return [row[0] for row in jobs.nvidia_smi("index")]


def worker_specs(gpus: Sequence[str], workers: int | None = None) -> dict[str, dict]:
    """Dask worker specs for a local cluster on GPUs: one worker process per GPU.

    Each GPU worker sees only its GPU (``CUDA_VISIBLE_DEVICES``) and offers the worker
    resource ``GPU=1``; ``workers`` beyond the GPU count become CPU-only workers (no GPU
    visible, no resource). Every worker runs one task at a time.
    """
    from distributed import Nanny

    count = len(gpus) if workers is None else workers
    specs = {}
    for i in range(count):
        gpu = gpus[i] if i < len(gpus) else None
        options = {
            "nthreads": 1,
            "env": {"CUDA_VISIBLE_DEVICES": gpu if gpu is not None else ""},
            "resources": {GPU: 1} if gpu is not None else {},
        }
        specs[f"gpu-{gpu}" if gpu is not None else f"cpu-{i}"] = {"cls": Nanny, "options": options}
    return specs


def local_cluster(workers: int | None = None, gpus: Sequence[str] | None = None):
    """A local Dask cluster of worker processes, one task each.

    Without GPUs it is a ``LocalCluster`` of ``workers`` processes (default: the CPU
    count). With GPUs (``detect_gpus()`` unless given), one worker per GPU
    (``worker_specs``).
    """
    from distributed import LocalCluster, Scheduler, SpecCluster

    gpus = detect_gpus() if gpus is None else list(gpus)
    if not gpus:
        return LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
        )
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": ":0"}}
    return SpecCluster(workers=worker_specs(gpus, workers), scheduler=scheduler)


def needs_gpu(device: object, cluster_has_gpus: bool) -> bool:
    """Whether a run on ``device`` asks for a GPU: cuda always, auto where GPUs exist."""
    device = str(device)
    return device.startswith("cuda") or (device == "auto" and cluster_has_gpus)


def execute_job(notebook: str, parameters: dict, out: str, retries: int) -> dict:
    """Run one sweep run with ``jobs.run`` (on a Dask worker); never raises for a failed run.

    A completed run folder is left alone (Dask may run a task again after its worker
    died). An unfinished one (interrupted, failed, or left "running" by a process that
    died) is resumed in its folder with ``jobs.resume``, from its checkpoint when it has
    one; anything else starts in an empty folder. It is tried ``1 + retries`` times, so at
    most one completed record exists per run.
    """
    run_dir = Path(out) / Path(notebook).stem / jobs.run_digest(notebook, parameters)
    if jobs.run_status(run_dir) == "completed":
        return {"status": "completed", "attempts": 0, "error": None}
    error = None
    for attempt in range(1, retries + 2):
        try:
            if _resumable(run_dir):
                jobs.resume(run_dir, progress=False)
            else:
                jobs.run(notebook, parameters, out=out, progress=False, reuse=True)
        except jobs.RunFailed as exc:
            error = f"{exc.ename}: {exc.evalue}"
        except Exception as exc:  # a full disk, say: recorded and retried like a failure
            error = f"{type(exc).__name__}: {exc}"
        else:
            return {"status": "completed", "attempts": attempt, "error": None}
    return {"status": "failed", "attempts": retries + 1, "error": error}


def _resumable(run_dir: Path) -> bool:
    try:
        jobs.resumable(run_dir)
    except jobs.NotResumable:
        return False
    return True


def _cluster_has_gpus(client) -> bool:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return any(w.get("resources", {}).get(GPU) for w in workers.values())


# --- running a sweep -------------------------------------------------------------------


def run_sweep(
    sweep: Sweep,
    out: str | os.PathLike[str] = "runs",
    *,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Run every run of ``sweep`` that has not completed; return the results folder.

    Uses ``client`` when given, else connects to ``scheduler``, else starts a local
    cluster (``local_cluster(workers)``) for as long as the sweep runs. Writes
    ``results.csv``, ``summary.html`` and ``report.html`` into ``<out>/sweeps/<name>/``.
    """
    out = Path(out).resolve()
    outcomes: dict[Job, Outcome] = {}
    pending = []
    for job in sweep.jobs:
        if jobs.run_status(job.run_dir(out)) == "completed":
            outcomes[job] = Outcome("completed", attempts=0)
        else:
            pending.append(job)
    if pending:
        _run_pending(sweep, pending, out, outcomes, client, scheduler, workers, progress)
    folder = out / SWEEPS / sweep.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = results_table(sweep, outcomes, out)
    write_csv(rows, folder / RESULTS)
    figure = summary_figure(rows, sweep.swept, sweep.metric)
    figure.write_html(folder / SUMMARY, include_plotlyjs=True)
    write_report(sweep, rows, figure, folder / REPORT)
    return folder


def _run_pending(sweep, pending, out, outcomes, client, scheduler, workers, progress) -> None:
    from contextlib import ExitStack

    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    with ExitStack() as stack:
        if client is None:
            if scheduler:
                client = stack.enter_context(Client(scheduler))
                client.wait_for_workers(1, timeout=120)
            else:
                gpus = detect_gpus()
                count = workers or (None if gpus else _default_workers(pending))
                cluster = stack.enter_context(local_cluster(count, gpus))
                client = stack.enter_context(Client(cluster))
        has_gpus = _cluster_has_gpus(client)
        gpu_jobs = [j for j in pending if needs_gpu(j.parameters.get("device"), has_gpus)]
        if gpu_jobs and not has_gpus:
            raise SpecError(
                f"{gpu_jobs[0].entry} ({gpu_jobs[0].name}) runs on "
                f"{gpu_jobs[0].parameters.get('device')!r}, but no worker offers a {GPU} "
                f"resource (no GPU here, or workers started without --resources {GPU}=1)"
            )
        token = uuid.uuid4().hex[:8]
        futures = {}
        for job in pending:
            future = client.submit(
                execute_job,
                str(job.notebook),
                job.parameters,
                str(out),
                sweep.retries,
                key=f"gentools-{job.name}-{job.digest}-{token}",
                resources={GPU: 1} if job in gpu_jobs else None,
                pure=False,
            )
            futures[future] = job
        done = len(sweep.jobs) - len(pending)
        quiet = {} if progress else {"disable": True}  # else tqdm honours TQDM_DISABLE
        bar = tqdm(
            total=len(sweep.jobs), initial=done, desc=f"sweep {sweep.name}", unit="run", **quiet
        )
        failed = 0
        with bar:
            for future in as_completed(futures):
                job = futures[future]
                outcomes[job] = _outcome(future)
                failed += outcomes[job].status != "completed"
                bar.set_postfix(failed=failed, refresh=False)
                bar.update(1)


def _default_workers(pending: Sequence[Job]) -> int:
    return max(1, min(len(pending), os.cpu_count() or 1))


def _outcome(future) -> Outcome:
    if future.status == "error":  # the task itself broke (e.g. its worker kept dying)
        exc = future.exception()
        return Outcome("failed", attempts=1, error=f"{type(exc).__name__}: {exc}")
    result = future.result()
    return Outcome(result["status"], result["attempts"], result["error"])


# --- results ---------------------------------------------------------------------------


def results_table(sweep: Sweep, outcomes: Mapping[Job, Outcome], out: Path) -> list[dict]:
    """One row per run: notebook, run id, status, attempts, wall time, parameters, metrics.

    Parameters are ``params.<name>`` columns and metrics ``metrics.<name>``; a value
    a run does not have is left empty.
    """
    rows = []
    for job in sweep.jobs:
        run_dir = job.run_dir(out)
        outcome = outcomes.get(job, Outcome("not run"))
        manifest = _read_dict(run_dir / jobs.MANIFEST)
        completed = manifest.get("status") == "completed"
        metrics = _read_dict(run_dir / jobs.METRICS) if completed else {}
        error = manifest.get("error") or {}
        row = {
            "notebook": job.name,
            "run_id": job.digest,
            "status": manifest.get("status", outcome.status),
            "attempts": outcome.attempts,
            "wall_time_s": manifest.get("wall_time_s"),
            "entry": job.entry,
        }
        row.update({f"params.{k}": v for k, v in job.parameters.items()})
        row.update({f"metrics.{k}": v for k, v in metrics.items()})
        row["error"] = f"{error.get('ename')}: {error.get('evalue')}" if error else outcome.error
        row["run_dir"] = str(run_dir)
        rows.append(row)
    return rows


def read_results(folder: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a sweep's ``results.csv`` (values as text; empty where a run has none)."""
    with open(Path(folder) / RESULTS, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _read_dict(path: Path) -> dict:
    try:
        data = jobs.read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _columns(rows: Iterable[dict]) -> list[str]:
    names = list(dict.fromkeys(k for row in rows for k in row))
    tail = [n for n in ("error", "run_dir") if n in names]
    head = [n for n in names if n not in tail and not n.startswith("metrics.")]
    return head + [n for n in names if n.startswith("metrics.")] + tail


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Write the results table as CSV (``_columns`` order)."""
    columns = _columns(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _default_metric(rows: Sequence[dict]) -> str | None:
    done = [r for r in rows if r["status"] == "completed"]
    names = [{k for k in r if k.startswith("metrics.")} for r in done]
    shared = sorted(set.intersection(*names)) if names else []
    if shared:
        return shared[0].removeprefix("metrics.")
    every = sorted(set().union(*names)) if names else []
    return every[0].removeprefix("metrics.") if every else None


def summary_figure(rows: Sequence[dict], swept: Sequence[str], metric: str | None = None):
    """A plotly figure: the metric against each swept parameter, one panel per parameter.

    ``metric`` defaults to the first metric (by name) that every completed run has.
    Failed runs are left out; each notebook gets its own colour.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metric = metric or _default_metric(rows)
    panels = list(swept) or ["run_id"]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=panels)
    column = f"metrics.{metric}"
    done = [r for r in rows if r["status"] == "completed" and column in r]
    for col, name in enumerate(panels, start=1):
        key = name if name == "run_id" else f"params.{name}"
        for notebook in dict.fromkeys(r["notebook"] for r in done):
            mine = [r for r in done if r["notebook"] == notebook]
            xs = [r.get(key) for r in mine]
            xs = [str(x) if isinstance(x, bool) or x is None else x for x in xs]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[r[column] for r in mine],
                    mode="markers",
                    name=notebook,
                    legendgroup=notebook,
                    showlegend=col == 1,
                    text=[r["run_id"] for r in mine],
                    hovertemplate=f"{name}=%{{x}}<br>{metric}=%{{y}}<br>run %{{text}}",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(title_text=metric or "no metrics", row=1, col=1)
    fig.update_layout(
        title=f"{metric or 'no completed runs'} per swept parameter",
        height=400,
        width=max(500, 320 * len(panels)),
    )
    return fig


def write_report(sweep: Sweep, rows: Sequence[dict], figure, path: Path) -> Path:
    """An HTML page: counts, the figure (``summary.html`` beside it), and the table with a
    link to each run's executed notebook and manifest."""
    columns = [c for c in _columns(rows) if c != "run_dir"]
    statuses = [r["status"] for r in rows]
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["run", *columns])
    body = []
    for row in rows:
        run_dir = Path(row["run_dir"])
        target = run_dir / f"{row['notebook']}.ipynb"
        link = os.path.relpath(target, path.parent)
        cells = [
            f'<td><a href="{html.escape(link)}">{html.escape(row["run_id"])}</a>'
            f' (<a href="{html.escape(os.path.relpath(run_dir / jobs.MANIFEST, path.parent))}"'
            ">manifest</a>)</td>"
        ]
        cells += [f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns]
        css = "" if row["status"] == "completed" else ' class="bad"'
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sweep {html.escape(sweep.name)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} tr.bad{{background:#fdd}}</style></head>
<body><h1>Sweep {html.escape(sweep.name)}</h1>
<p>{len(rows)} runs: {html.escape(summary)}. Spec: {html.escape(str(sweep.source or "-"))}.
Table: <a href="{RESULTS}">{RESULTS}</a>.</p>
<iframe src="{SUMMARY}" title="summary figure" width="{figure.layout.width + 40}"
 height="{figure.layout.height + 40}" style="border:none"></iframe>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
