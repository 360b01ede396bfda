"""Notebook jobs: run a notebook with papermill into its own run folder, with a manifest.

``run("vae", {"steps": 100})`` checks the parameters before any kernel starts, executes
the notebook into ``runs/vae/<run-id>/`` with ``out_dir`` set to it, and keeps
``manifest.json``: status, error, every try, timings, the environment the notebook
recorded (``repro.environment``) and the sha256 of every output. ``resume`` continues a
run that did not complete; ``record`` is what a notebook calls to write ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import numbers
import os
import platform
import shutil
import signal
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from gentools import signals
from gentools.files import read_json, sha256_file, write_json
from gentools.params import ParameterError, find_notebook, notebook_parameters, validate

MANIFEST = "manifest.json"
METRICS = "metrics.json"
ENVIRONMENT = "environment.json"
OUT_DIR = "out_dir"


class RunFailed(RuntimeError):
    """A run ended without completing (a cell raised, the kernel died, a signal stopped it);
    its folder keeps the executed notebook and the manifest with the error and traceback."""

    def __init__(self, run_dir: Path, executed: Path, ename: str, evalue: str,
                 signal: int | None = None) -> None:
        self.run_dir, self.executed_notebook = run_dir, executed
        self.ename, self.evalue, self.signal = ename, evalue, signal
        what = f"run interrupted by signal {signal}" if signal else "run failed"
        super().__init__(
            f"{what} with {ename}: {evalue.splitlines()[0] if evalue else ''}\n"
            f"run folder: {run_dir}\n"
            f"executed notebook (see the failing cell): {executed}\n"
            f"resume it with: gentools run --resume {run_dir}"
        )


class NotResumable(ValueError):
    """``resume`` was pointed at a folder that is not an unfinished run."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def run_digest(notebook: str | os.PathLike[str], parameters: Mapping[str, object]) -> str:
    """A run's identity: the first 8 hex of sha256(notebook name, notebook bytes, canonical
    JSON of ``parameters``). ``gentools run`` puts it after the start time in the folder
    name; sweeps and the comparison use ``<stem>/<digest>`` alone, so a run is found again."""
    path = Path(notebook)
    canonical = json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(path.stem.encode("utf-8") + b"\0" + path.read_bytes())
    digest.update(canonical.encode("utf-8"))
    return digest.hexdigest()[:8]


def reuse_dir(notebook: str | os.PathLike[str], parameters: Mapping[str, object],
              out: str | os.PathLike[str]) -> Path:
    """``<out>/<stem>/<digest>``: the folder of the run of ``parameters`` (every one but
    ``out_dir``) that ``run(..., reuse=True)`` runs, or finds completed there."""
    path = find_notebook(notebook)
    return Path(out).resolve() / path.stem / run_digest(path, parameters)


def run_status(run_dir: str | os.PathLike[str]) -> str | None:
    """The manifest's status ("running", "completed", ...), or None without a manifest."""
    manifest = read_json(Path(run_dir) / MANIFEST, None)
    return manifest.get("status") if isinstance(manifest, dict) else None


def _make_run_dir(parent: Path, run_id: str) -> Path:
    """A new folder ``parent/run_id``, or ``run_id-2``, ``-3``... when that one exists."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count(1):
        candidate = parent / (run_id if attempt == 1 else f"{run_id}-{attempt}")
        with contextlib.suppress(FileExistsError):
            candidate.mkdir()
            return candidate


def check_run(notebook: str | os.PathLike[str], parameters: Mapping[str, object]) -> dict:
    """The checks ``run`` makes before any kernel starts; returns every parameter but
    ``out_dir`` (which is gentools' to set: giving it raises ParameterError)."""
    path = find_notebook(notebook)
    spec = notebook_parameters(path)
    if OUT_DIR in parameters:
        raise ParameterError(f"parameter {OUT_DIR!r} is set by gentools to the run folder; "
                             "choose where runs go with --out DIR (run(..., out=DIR)) instead")
    if OUT_DIR not in spec:
        raise ParameterError(f"{path.name} has no {OUT_DIR!r} parameter; a notebook run by "
                             'gentools must declare one in its parameters cell (out_dir = "...")')
    values = validate(spec, parameters, notebook=path.name)
    values.pop(OUT_DIR)
    return values


def run(notebook: str | os.PathLike[str], parameters: Mapping[str, object] | None = None,
        out: str | os.PathLike[str] | None = None, progress: bool = True,
        kernel_name: str = "python3", reuse: bool = False) -> Path:
    """Execute ``notebook`` with papermill in a run folder and return its absolute path.

    The folder is ``<out or ./runs>/<stem>/<YYYYmmdd-HHMMSS>-<digest>[-N]`` (UTC), a new one
    each time; with ``reuse=True`` (sweeps, the comparison) it is ``<stem>/<digest>``, where a
    completed run is returned as it is and an unfinished one is emptied and run again.
    Raises ParameterError before any kernel starts, and RunFailed when the run does not
    complete (its manifest then says "failed" or "interrupted"; ``resume`` continues it).
    """
    source = find_notebook(notebook)
    values = check_run(source, dict(parameters or {}))
    run_dir = reuse_dir(source, values, out or "runs")
    parent, digest, started = run_dir.parent, run_dir.name, _utc_now()
    if reuse and run_status(run_dir) == "completed":
        return run_dir
    if reuse:  # empty a folder of an unfinished run, unless a live process still runs it
        if run_status(run_dir) == "running" and _alive(read_json(run_dir / MANIFEST)):
            raise FileExistsError(f"{run_dir} is being run by another process")
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
    else:
        stamp = datetime.fromisoformat(started).strftime("%Y%m%d-%H%M%S")
        run_dir = _make_run_dir(parent, f"{stamp}-{digest}")
    values[OUT_DIR] = str(run_dir)
    manifest = dict(
        notebook=str(source), notebook_sha256=sha256_file(source),
        executed_notebook=f"{source.stem}.ipynb", run_id=run_dir.name, digest=digest,
        status="running", error=None, parameters=values, seed=values.get("seed"), device=None,
        environment=None, started_at=started, finished_at=None, wall_time_s=None, attempts=[],
        outputs={},
    )
    return _attempt(source, run_dir, manifest, kernel_name, progress)


def resumable(run_dir: str | os.PathLike[str]) -> dict[str, object]:
    """The manifest of the unfinished run in ``run_dir``: not completed, run by no live process
    on this host, its notebook unchanged and with a ``resume`` parameter. NotResumable says
    which of these fails. (A run without a checkpoint restarts from step 0.)"""
    run_dir = Path(run_dir)
    try:
        manifest = read_json(run_dir / MANIFEST)
    except FileNotFoundError:
        raise NotResumable(f"{run_dir} is not a run folder: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise NotResumable(f"{run_dir / MANIFEST} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or "parameters" not in manifest:
        raise NotResumable(f"{run_dir / MANIFEST} is not a gentools run manifest")
    status = manifest.get("status")
    if status == "completed":
        raise NotResumable(f"{run_dir} holds a completed run; there is nothing to resume")
    if status == "running" and _alive(manifest):
        raise NotResumable(f"{run_dir} is still running (process {manifest.get('pid')})")
    source = Path(str(manifest.get("notebook")))
    if not source.is_file():
        raise NotResumable(f"the run's notebook {source} no longer exists")
    if sha256_file(source) != manifest.get("notebook_sha256"):
        raise NotResumable(f"{source} changed since the run started; resuming would mix two "
                           "versions of it (start a new run instead)")
    if "resume" not in notebook_parameters(source):
        raise NotResumable(f"{source.name} has no 'resume' parameter, so it cannot resume")
    return manifest


def resume(run_dir: str | os.PathLike[str], progress: bool = True,
           kernel_name: str = "python3") -> Path:
    """Continue the unfinished run in ``run_dir`` from its last checkpoint: the notebook runs
    again there with its manifest's parameters plus ``resume=True``, and ends with the
    metrics an uninterrupted run would have. Raises NotResumable (nothing runs) or
    RunFailed."""
    run_dir = Path(run_dir).resolve()
    manifest = resumable(run_dir)
    manifest["parameters"][OUT_DIR] = str(run_dir)
    return _attempt(Path(str(manifest["notebook"])), run_dir, manifest, kernel_name, progress,
                    resume=True)


def _alive(manifest: Mapping[str, object]) -> bool:
    """Whether the process that wrote a "running" manifest still runs on this host."""
    pid = manifest.get("pid")
    if manifest.get("host") != platform.node() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # it exists (PermissionError: it exists, under another user)


def _attempt(source: Path, run_dir: Path, manifest: dict, kernel_name: str, progress: bool,
             resume: bool = False) -> Path:
    """Execute the notebook once into ``run_dir``, recording the try in the manifest.
    papermill injects ``out_dir``, ``resume`` when resuming, and what differs from the
    defaults, so the executed notebook shows what was set."""
    spec = notebook_parameters(source)
    injected = {k: v for k, v in manifest["parameters"].items()
                if k == OUT_DIR or k not in spec or v != spec[k].default}
    if resume:
        injected["resume"] = True
    attempt = dict(started_at=_utc_now(), finished_at=None, status="running", error=None)
    for earlier in manifest.setdefault("attempts", []):
        if earlier["status"] == "running":  # its process died without a word
            earlier["status"] = "lost"
    manifest["attempts"].append(attempt)
    manifest.update(status="running", error=None, pid=os.getpid(), host=platform.node())
    write_json(run_dir / MANIFEST, manifest)
    executed = run_dir / str(manifest["executed_notebook"])
    clock = time.monotonic()
    received: list[int] = []
    managers: list = []  # the run's kernel manager, for the signal handler and the clean-up

    def interrupt(signum, frame):  # the kernel's train.fit then stops with a checkpoint
        received.append(signum)
        pid = next((m.provisioner.pid for m in managers if m.provisioner is not None), None)
        if len(received) > 1 or pid is None:  # a second signal stops waiting for it
            raise KeyboardInterrupt(f"signal {signum}")
        os.kill(pid, signal.SIGINT)

    try:
        import papermill

        from gentools._compat import ipc_kernel_manager

        try:
            with signals.handled(interrupt):
                papermill.execute_notebook(
                    str(source), str(executed), parameters=injected, cwd=str(source.parent),
                    kernel_name=kernel_name, progress_bar=progress, log_output=False,
                    kernel_manager_class=ipc_kernel_manager(managers))
        finally:
            for manager in managers:
                if getattr(manager, "folder", None):
                    shutil.rmtree(manager.folder, ignore_errors=True)
            if executed.exists():
                slim_notebook(executed)
    except BaseException as exc:
        ename, evalue, trace = _error_of(exc)
        status = "interrupted" if received or ename == "KeyboardInterrupt" else "failed"
        error = {"ename": ename, "evalue": evalue}
        attempt.update(status=status, error={**error, "traceback": trace})
        manifest.update(status=status, error=error)
        _finish(manifest, attempt, run_dir, clock)
        if isinstance(exc, (Exception, KeyboardInterrupt)):
            raise RunFailed(run_dir, executed, ename, evalue, received[0] if received else None) \
                from exc
        raise
    attempt["status"] = manifest["status"] = "completed"
    _finish(manifest, attempt, run_dir, clock)
    return run_dir


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def slim_notebook(path: Path) -> None:
    """Drop widget state and views from an executed notebook, in place: a headless run
    saves only empty views plus a state that embeds plotly.js (megabytes per figure). Each
    view keeps its text form, and the static figures stay."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                del output["data"][WIDGET_VIEW]
    nbformat.write(nb, path)


def _error_of(exc: BaseException) -> tuple[str, str, str]:
    """(name, value, traceback text) of what ended a run: the failing cell's error when a
    cell raised, else the exception itself (a dead kernel, a signal)."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return str(exc.ename), str(exc.evalue), "\n".join(exc.traceback)
    import traceback

    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))


def _finish(manifest: dict, attempt: dict, run_dir: Path, clock: float) -> None:
    environment = read_json(run_dir / ENVIRONMENT, None)  # None: the run stopped before it
    manifest["environment"] = environment
    manifest["device"] = environment.get("device") if isinstance(environment, dict) else None
    attempt["finished_at"] = manifest["finished_at"] = _utc_now()
    attempt["wall_time_s"] = round(time.monotonic() - clock, 3)
    manifest["wall_time_s"] = round(sum(a.get("wall_time_s") or 0 for a in manifest["attempts"]), 3)
    manifest["outputs"] = {
        path.relative_to(run_dir).as_posix(): sha256_file(path)
        for path in sorted(run_dir.rglob("*")) if path.is_file() and path != run_dir / MANIFEST
    }
    write_json(run_dir / MANIFEST, manifest)


def _metric_value(name: object, value: object) -> float:
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric names must be non-empty strings (got {name!r})")
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # a 0-d numpy array or torch tensor
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"metric {name!r} must be a number (got {type(value).__name__} {value!r})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r} must be finite (got {number})")
    return number


def record(metrics: Mapping[str, object], out_dir: str | os.PathLike[str],
           environment: Mapping[str, object] | None = None) -> dict[str, float]:
    """Write ``<out_dir>/metrics.json`` (and ``environment.json``) and return the metrics, a
    flat ``{name: float}``. A value that is not a finite number raises ValueError naming the
    metric, and nothing is written."""
    clean = dict(sorted((name, _metric_value(name, value)) for name, value in metrics.items()))
    write_json(Path(out_dir) / METRICS, clean)
    if environment is not None:
        write_json(Path(out_dir) / ENVIRONMENT, dict(environment), sort_keys=True)
    return clean
