"""Parameter sweeps: many papermill runs of the gentools notebooks, spread over Dask.

``run_sweep`` runs a checked spec (`sweep_spec`; README, "Sweeps") on Dask into
``<out>/<notebook>/<digest>`` (so a second invocation skips completed runs and resumes
unfinished ones), retrying failures, and writes ``<out>/sweeps/<name>/results.csv`` and
``summary.html``. Torch is never imported.
"""

from __future__ import annotations

import csv
import itertools
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from gentools.files import atomic_write, read_json
from gentools.parameters import load_notebook
from gentools.record import METRICS
from gentools.runner import folders, jobs
from gentools.runner.folders import MANIFEST
from gentools.runner.sweep_spec import Job, SpecError, Sweep

GPU = "GPU"  # the Dask worker resource a GPU run asks for
SWEEPS = "sweeps"  # <out>/sweeps/<name>/ holds a sweep's table and figure
RESULTS, SUMMARY = "results.csv", "summary.html"


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
    checkpoint when it has one; anything else starts afresh. The worker loads the notebook
    once (``load_notebook``) for the folder and the run."""
    notebook = load_notebook(notebook)
    run_dir = folders.reuse_dir(notebook, parameters, out)
    if folders.run_status(run_dir) == "completed":
        return {"status": "completed", "attempts": 0, "error": None}
    error = None
    for attempt in range(1, retries + 2):
        try:
            try:
                jobs.resumable(run_dir)
            except folders.NotResumable:
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
                for job in sweep.jobs if folders.run_status(job.run_dir(out)) == "completed"}
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
        manifest = read_json(run_dir / MANIFEST, {})
        metrics = read_json(run_dir / METRICS, {}) if manifest.get("status") == "completed" \
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
