"""Notebook jobs: run a notebook with papermill into its own run folder, with a manifest.

``run("vae", {"steps": 100})`` validates the parameters against the notebook's
``parameters`` cell before any kernel starts, creates ``runs/vae/<run-id>/``, writes
``manifest.json`` (status "running"), executes the notebook into that folder with
``out_dir`` set to it, and finishes the manifest (status, error, git state, package
versions, platform, environment written by the notebook, timings, sha256 of outputs).

``record(metrics, out_dir)`` is what a notebook calls at its end to write
``metrics.json`` (and ``environment.json``). papermill is imported only inside ``run``;
torch is never imported here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from gentools.params import (
    Param,
    ParameterError,
    notebook_parameters,
    repo_notebooks_dir,
    validate,
)

__all__ = [
    "MANIFEST",
    "METRICS",
    "ENVIRONMENT",
    "NotResumable",
    "RunFailed",
    "atomic_write_json",
    "available_notebooks",
    "check_run",
    "find_notebook",
    "git_state",
    "output_hashes",
    "package_versions",
    "platform_info",
    "list_notebooks",
    "notebooks_dir",
    "nvidia_smi",
    "gpu_record",
    "read_json",
    "record",
    "resume",
    "run",
    "run_digest",
    "run_status",
    "smi_gpu",
    "sha256_file",
]

MANIFEST = "manifest.json"
METRICS = "metrics.json"
ENVIRONMENT = "environment.json"
OUT_DIR = "out_dir"
PACKAGES = (
    "torch",
    "numpy",
    "scikit-learn",
    "ipywidgets",
    "plotly",
    "papermill",
    "nbval",
    "safetensors",
    "jupyterlab",
    "gentools",
)


class RunFailed(RuntimeError):
    """A run ended without completing: a cell raised, the kernel died, or a signal stopped it.

    The executed notebook and the manifest ("failed" or "interrupted", with the error and
    its traceback) are kept; ``signal`` is the signal that stopped the run, if one did.
    """

    def __init__(
        self, run_dir: Path, executed: Path, ename: str, evalue: str, signal: int | None = None
    ) -> None:
        self.run_dir = run_dir
        self.executed_notebook = executed
        self.ename = ename
        self.evalue = evalue
        self.signal = signal
        what = f"run interrupted by signal {signal}" if signal else "run failed"
        evalue = evalue.splitlines()[0] if evalue else ""
        super().__init__(
            f"{what} with {ename}: {evalue}\n"
            f"run folder: {run_dir}\n"
            f"executed notebook (see the failing cell): {executed}\n"
            f"resume it with: gentools run --resume {run_dir}"
        )


class NotResumable(ValueError):
    """``resume`` was pointed at a folder that is not an unfinished run."""


# --- small helpers ---------------------------------------------------------------------

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_json(
    path: str | os.PathLike[str], obj: object, *, sort_keys: bool = False
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temp file in the same folder + replace).

    Non-finite floats are refused (ValueError), so the file is always strict JSON.
    """
    path = Path(path)
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike[str]) -> object:
    """Load a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


# --- finding notebooks -----------------------------------------------------------------


def notebooks_dir() -> Path:
    """$GENTOOLS_NOTEBOOKS if set, else ./notebooks if it exists, else <repo>/notebooks."""
    env = os.environ.get("GENTOOLS_NOTEBOOKS")
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"GENTOOLS_NOTEBOOKS={env} is not a folder")
        return folder
    candidates = [Path.cwd() / "notebooks", repo_notebooks_dir()]
    for folder in candidates:
        if folder.is_dir():
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no notebooks folder; looked in: {looked} (or set GENTOOLS_NOTEBOOKS)")


def available_notebooks() -> dict[str, Path]:
    """``{stem: path}`` of the notebooks in ``notebooks_dir()``, sorted by name."""
    return {p.stem: p for p in sorted(notebooks_dir().glob("*.ipynb")) if p.is_file()}


def find_notebook(name: str | os.PathLike[str]) -> Path:
    """Resolve ``"vae"``, ``"vae.ipynb"`` or a path to a notebook file."""
    given = Path(name).expanduser()
    if given.suffix == ".ipynb" and given.is_file():
        return given.resolve()
    if len(given.parts) > 1 or given.is_absolute():
        raise FileNotFoundError(f"notebook {str(name)!r} does not exist")
    stem = given.name.removesuffix(".ipynb")
    available = available_notebooks()
    if stem in available:
        return available[stem].resolve()
    close = difflib.get_close_matches(stem, list(available), n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    names = ", ".join(available) or "none"
    raise FileNotFoundError(
        f"notebook {str(name)!r} not found in {notebooks_dir()};{hint} available: {names}"
    )


def list_notebooks() -> dict[str, dict[str, Param]]:
    """``{stem: parameter spec}`` for every notebook in ``notebooks_dir()``."""
    return {stem: notebook_parameters(path) for stem, path in available_notebooks().items()}


# --- provenance ------------------------------------------------------------------------


def _output(cmd: list[str], cwd: Path | None = None) -> str | None:
    """The stdout of ``cmd``, or None when it cannot start, fails or runs over 30 s."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git(args: list[str], cwd: Path) -> str | None:
    return _output(["git", "--no-optional-locks", *args], cwd)


def nvidia_smi(fields: str) -> list[list[str]]:
    """``nvidia-smi --query-gpu=FIELDS``: one row of stripped fields per GPU; [] without
    nvidia-smi or without a GPU."""
    smi = shutil.which("nvidia-smi")
    out = _output([smi, f"--query-gpu={fields}", "--format=csv,noheader"]) if smi else None
    return [[f.strip() for f in line.split(",")] for line in (out or "").splitlines()
            if line.strip()]


def git_state(folder: Path) -> dict[str, object]:
    """``{"commit": sha or None, "dirty": bool or None}`` for the repository holding ``folder``."""
    commit = _git(["rev-parse", "HEAD"], folder)
    status = _git(["status", "--porcelain"], folder)
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if status is None else bool(status.strip()),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None when missing)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def platform_info() -> dict[str, object]:
    """Machine description for the manifest."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
    }


def smi_gpu(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``{"name", "driver"}`` of the first GPU this process may use, from nvidia-smi.

    ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs) picks the GPU. None without nvidia-smi,
    without a GPU, or when ``CUDA_VISIBLE_DEVICES`` hides them all.
    """
    environ = os.environ if environ is None else environ
    rows = [row for row in nvidia_smi("index,uuid,name,driver_version") if len(row) == 4]
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = visible.split(",")[0].strip()
        rows = [row for row in rows if wanted in (row[0], row[1])]
    if not rows:
        return None
    return {"name": rows[0][2], "driver": rows[0][3]}


def gpu_record(
    environment: Mapping[str, object] | None, host: Mapping[str, object] | None
) -> dict[str, object] | None:
    """The manifest's ``gpu`` entry: GPU name, driver, CUDA and cuDNN versions, or None.

    ``environment`` is what the notebook recorded (``repro.environment``): when its device
    is CUDA it names the GPU and gives the CUDA and cuDNN versions torch used. ``host`` is
    ``smi_gpu()`` (or an earlier ``gpu`` entry), which fills in what the notebook did not.
    """
    env = dict(environment or {})
    on_cuda = str(env.get("device", "")).startswith("cuda")
    if not on_cuda and not host:
        return None
    host = dict(host or {})
    return {
        "name": env.get("device_name") if on_cuda else host.get("name"),
        "driver": env.get("driver") or host.get("driver"),
        "cuda": env.get("cuda") if on_cuda else host.get("cuda"),
        "cudnn": env.get("cudnn") if on_cuda else host.get("cudnn"),
    }


def output_hashes(run_dir: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``run_dir`` but the manifest."""
    return {
        path.relative_to(run_dir).as_posix(): sha256_file(path)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.relative_to(run_dir).as_posix() != MANIFEST
    }


def _read_environment(run_dir: Path) -> tuple[dict | None, str | None]:
    path = run_dir / ENVIRONMENT
    if not path.is_file():
        return None, None
    try:
        env = read_json(path)
    except (OSError, ValueError) as exc:
        return None, f"{ENVIRONMENT} unreadable: {exc}"
    if not isinstance(env, dict):
        return None, f"{ENVIRONMENT} is not a JSON object"
    return env, None


# --- running ---------------------------------------------------------------------------


def run_digest(notebook: str | os.PathLike[str], parameters: Mapping[str, object]) -> str:
    """First 8 hex of sha256(notebook name + notebook bytes + canonical JSON of ``parameters``).

    This is a run's identity: ``gentools run`` puts it after the start time in the folder
    name, and a sweep uses it alone as the folder name (so a finished run is found again).
    """
    path = Path(notebook)
    canonical = json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(path.stem.encode("utf-8") + b"\0")
    digest.update(path.read_bytes())
    digest.update(canonical.encode("utf-8"))
    return digest.hexdigest()[:8]


def run_status(run_dir: str | os.PathLike[str]) -> str | None:
    """The manifest's status ("running", "completed", "failed"), or None without a manifest."""
    try:
        manifest = read_json(Path(run_dir) / MANIFEST)
    except (OSError, ValueError):
        return None
    return manifest.get("status") if isinstance(manifest, dict) else None


def _reuse_run_dir(run_dir: Path) -> Path:
    """Create ``run_dir``, or empty it when it holds an unfinished or failed run (but not one
    that a live process on this host still runs)."""
    if run_dir.exists():
        status = run_status(run_dir)
        if status == "completed":
            raise FileExistsError(f"{run_dir} already holds a completed run")
        if status == "running" and _alive(read_json(run_dir / MANIFEST)):
            raise FileExistsError(f"{run_dir} is being run by another process")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def _make_run_dir(parent: Path, run_id: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        candidate = parent / (run_id if attempt == 1 else f"{run_id}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"too many runs named {run_id} in {parent}")


def _validated(
    notebook: Path, parameters: Mapping[str, object]
) -> tuple[dict[str, Param], dict[str, object]]:
    spec = notebook_parameters(notebook)
    if OUT_DIR in parameters:
        raise ParameterError(
            f"parameter {OUT_DIR!r} is set by gentools to the run folder; "
            "choose where runs go with --out DIR (run(..., out=DIR)) instead"
        )
    if OUT_DIR not in spec:
        raise ParameterError(
            f"{notebook.name} has no {OUT_DIR!r} parameter; a notebook run by gentools must "
            'declare one in its parameters cell (out_dir = "runs/...")'
        )
    return spec, validate(spec, parameters, notebook=notebook.name)


def check_run(
    notebook: str | os.PathLike[str], parameters: Mapping[str, object]
) -> dict[str, object]:
    """The checks ``run`` makes before any kernel starts; returns the full parameters.

    Raises ParameterError as ``run`` does (``out_dir`` is gentools' to set, so it may not
    be given); the returned dict holds every parameter but ``out_dir``.
    """
    _, values = _validated(find_notebook(notebook), dict(parameters))
    values.pop(OUT_DIR, None)
    return values


def run(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, object] | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    kernel_name: str = "python3",
    reuse: bool = False,
) -> Path:
    """Execute ``notebook`` with papermill in a run folder and return its absolute path.

    The folder is ``<out or ./runs>/<stem>/<YYYYmmdd-HHMMSS>-<digest>[-N]`` (UTC time), a
    new one each time. With ``reuse=True`` (what sweeps use) it is ``<stem>/<digest>``:
    a folder left by an unfinished or failed run of the same digest is emptied and run
    again, and one that holds a completed run raises FileExistsError.
    Raises ParameterError (before any kernel starts) for bad parameters, and RunFailed
    when the run does not complete (a cell raised, the kernel died, SIGTERM or SIGINT);
    its manifest then says "failed" or "interrupted", and ``resume`` continues it.
    """
    source = find_notebook(notebook)
    spec, values = _validated(source, dict(parameters or {}))
    started = _utc_now()
    hashed = {k: v for k, v in values.items() if k != OUT_DIR}
    digest = run_digest(source, hashed)
    parent = Path(out or "runs").resolve() / source.stem
    if reuse:
        run_dir = _reuse_run_dir(parent / digest)
    else:
        run_dir = _make_run_dir(parent, f"{started:%Y%m%d-%H%M%S}-{digest}")
    values[OUT_DIR] = str(run_dir)
    manifest: dict[str, object] = {
        "notebook": str(source),
        "notebook_sha256": sha256_file(source),
        "executed_notebook": f"{source.stem}.ipynb",
        "run_id": run_dir.name,
        "digest": digest,
        "status": "running",
        "error": None,
        "parameters": values,
        "seed": values.get("seed"),
        "git": git_state(source.parent),
        "packages": package_versions(),
        "platform": platform_info(),
        "device": None,
        "gpu": gpu_record(None, smi_gpu()),
        "environment": None,
        "started_at": started.isoformat(),
        "finished_at": None,
        "wall_time_s": None,
        "attempts": [],
        "outputs": {},
    }
    injected = {k: v for k, v in values.items() if k == OUT_DIR or v != spec[k].default}
    return _attempt(source, run_dir, manifest, injected, kernel_name, progress)


def resumable(run_dir: str | os.PathLike[str]) -> dict[str, object]:
    """The manifest of the unfinished run in ``run_dir``; NotResumable says why it is not one.

    A run can be resumed when its manifest is not "completed", no live process on this
    host still runs it, its notebook is unchanged, and the notebook has a ``resume``
    parameter. Without a checkpoint it restarts from step 0 in the same folder.
    """
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


def resume(
    run_dir: str | os.PathLike[str], progress: bool = True, kernel_name: str = "python3"
) -> Path:
    """Continue the unfinished run in ``run_dir`` from its last checkpoint.

    The notebook runs again in the same folder with the parameters in its manifest plus
    ``resume=True``, so training picks up at the checkpoint's step and the run ends with
    the metrics an uninterrupted run would have. Each try is added to the manifest's
    ``attempts``. Raises NotResumable (nothing runs) or RunFailed, like ``run``.
    """
    run_dir = Path(run_dir).resolve()
    manifest = resumable(run_dir)
    source = Path(str(manifest["notebook"]))
    spec = notebook_parameters(source)
    values = {**manifest["parameters"], OUT_DIR: str(run_dir), "resume": True}
    injected = {k: v for k, v in values.items()
                if k in (OUT_DIR, "resume") or k not in spec or v != spec[k].default}
    return _attempt(source, run_dir, manifest, injected, kernel_name, progress)


def _alive(manifest: Mapping[str, object]) -> bool:
    """Whether the process that wrote a "running" manifest still runs on this host."""
    pid = manifest.get("pid")
    if manifest.get("host") != platform.node() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _attempt(
    source: Path, run_dir: Path, manifest: dict, injected: dict, kernel_name: str, progress: bool
) -> Path:
    """Execute the notebook once into ``run_dir``, recording the try in the manifest."""
    attempt = {"started_at": _utc_now().isoformat(), "finished_at": None, "status": "running",
               "error": None}
    for earlier in manifest.setdefault("attempts", []):
        if earlier["status"] == "running":  # its process died without a word
            earlier["status"] = "lost"
    manifest["attempts"].append(attempt)
    manifest.update(status="running", error=None, pid=os.getpid(), host=platform.node())
    atomic_write_json(run_dir / MANIFEST, manifest)
    executed = run_dir / str(manifest["executed_notebook"])
    clock = time.monotonic()
    received: list[int] = []
    try:
        with _signals_interrupt_the_kernel(received) as managers:
            _execute(source, executed, injected, kernel_name, progress, managers)
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


@contextmanager
def _signals_interrupt_the_kernel(received: list[int]):
    """While a notebook runs, SIGTERM and SIGINT interrupt its kernel (training then saves
    a checkpoint and stops, see ``train.fit``); a second signal stops waiting for it.

    Yields the list that the kernel manager of the run appends itself to. Signal handlers
    can only be set in the main thread; elsewhere (a Dask worker) signals keep their way.
    """
    managers: list = []
    if threading.current_thread() is not threading.main_thread():
        yield managers
        return

    def interrupt(signum, frame):
        received.append(signum)
        pid = next((m.provisioner.pid for m in managers if m.provisioner is not None), None)
        if len(received) > 1 or pid is None:
            raise KeyboardInterrupt(f"signal {signum}")
        os.kill(pid, signal.SIGINT)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield managers
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _kernel_manager_class(managers: list):
    """A kernel manager that talks to its kernel over local IPC sockets in a private
    temporary folder rather than TCP ports (no port is opened), and that registers itself
    in ``managers`` so a signal can interrupt its kernel."""
    from jupyter_client.manager import AsyncKernelManager

    class IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(Path(tempfile.mkdtemp(prefix="gentools-kernel-")) / "kernel")
            managers.append(self)

    return IpcKernelManager


def _execute(
    source: Path, executed: Path, parameters: dict, kernel_name: str, progress: bool,
    managers: list,
) -> None:
    import papermill

    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            cwd=str(source.parent),
            kernel_name=kernel_name,
            progress_bar=progress,
            log_output=False,
            kernel_manager_class=_kernel_manager_class(managers),
        )
    finally:
        for manager in managers:
            shutil.rmtree(Path(manager.ip).parent, ignore_errors=True)
        if executed.exists():
            slim_notebook(executed)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def slim_notebook(path: Path) -> None:
    """Drop widget state and widget views from an executed notebook, in place.

    A headless run saves only empty widget views (updates after display are lost) plus
    the widget state, which embeds the plotly.js bundle (megabytes per figure). Each
    view keeps its text form, and the static figures the notebook displays stay.
    """
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
    environment, problem = _read_environment(run_dir)
    manifest["environment"] = environment
    manifest["device"] = environment.get("device") if environment else None
    if environment:
        manifest["gpu"] = gpu_record(environment, manifest.get("gpu"))
    if problem:
        manifest["environment_error"] = problem
    attempt["finished_at"] = manifest["finished_at"] = _utc_now().isoformat()
    attempt["wall_time_s"] = round(time.monotonic() - clock, 3)
    manifest["wall_time_s"] = round(sum(a.get("wall_time_s") or 0 for a in manifest["attempts"]), 3)
    manifest["outputs"] = output_hashes(run_dir)
    atomic_write_json(run_dir / MANIFEST, manifest)


# --- called from notebooks -------------------------------------------------------------


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


def record(
    metrics: Mapping[str, object],
    out_dir: str | os.PathLike[str],
    environment: Mapping[str, object] | None = None,
) -> dict[str, float]:
    """Write ``<out_dir>/metrics.json`` (and ``environment.json``) and return the metrics.

    ``metrics`` is a flat ``{name: number}``; each value becomes a Python float. Non-numeric
    or non-finite values raise ValueError naming the metric, and nothing is written.
    ``environment`` (e.g. ``{"device": "cuda:0", "torch": "2.3.0"}``) must be JSON-able.
    """
    clean = {name: _metric_value(name, value) for name, value in metrics.items()}
    clean = dict(sorted(clean.items()))
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / METRICS, clean, sort_keys=True)
    if environment is not None:
        atomic_write_json(folder / ENVIRONMENT, dict(environment), sort_keys=True)
    return clean
