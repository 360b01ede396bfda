"""Notebook jobs: run a notebook with papermill into its own run folder, with a manifest.

``run("vae", {"steps": 100})`` loads the notebook once (`gentools.parameters.Notebook`; a
caller may hand one in), checks the parameters before any kernel starts, executes
the notebook into ``runs/vae/<run-id>/`` (`folders`) with ``out_dir`` set to it, and keeps
``manifest.json``: status, error, every try, timings, the environment the notebook
recorded (``repro.environment``) and the sha256 of every output. ``resume`` continues a
run that did not complete. The notebook itself writes ``metrics.json`` with the core's
`gentools.record`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import re
import shutil
import signal
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from gentools import signals
from gentools.files import read_json, sha256_file, write_json
from gentools.parameters import Notebook, ParameterError, load_notebook, validate
from gentools.record import ENVIRONMENT
from gentools.runner.folders import (
    LOCK,
    MANIFEST,
    NotResumable,
    locked,
    make_run_dir,
    read_manifest,
    reuse_dir,
    run_status,
    settle_notebook,
)

OUT_DIR = "out_dir"
RESERVE = ".reserve"  # room kept on the disk for the last manifest, freed just before it
RESERVE_BYTES = 64 * 1024
PARTIAL = ".partial.ipynb"  # what papermill writes while the run goes on: vae.partial.ipynb
# errno -> the run's status when writing a file fails with it
OS_STATUS = {errno.ENOSPC: "out of disk", errno.EDQUOT: "out of disk", errno.EFBIG: "out of disk",
             errno.EACCES: "unwritable folder", errno.EPERM: "unwritable folder",
             errno.EROFS: "unwritable folder"}


class RunFailed(RuntimeError):
    """A run ended without completing; ``status`` says how (failed, interrupted, out of disk,
    unwritable folder). Its message is three lines: what went wrong, where the details are,
    and a next step that can work (a resume only where resuming can help)."""

    def __init__(self, run_dir: Path, executed: Path, ename: str, evalue: str,
                 signal: int | None = None, status: str = "failed") -> None:
        self.run_dir, self.executed_notebook = run_dir, executed
        self.ename, self.evalue, self.signal, self.status = ename, evalue, signal, status
        what = {"failed": "run failed", "interrupted": "run interrupted",
                "out of disk": "run stopped: out of disk space",
                "unwritable folder": "run stopped: a file could not be written"}.get(status, status)
        what += f" by signal {signal}" if signal else ""
        details = [str(f) for f in (executed, run_dir / MANIFEST) if f.is_file()] or [str(run_dir)]
        resume = f"resume it with: gentools run --resume {run_dir}"
        next_step = {"out of disk": f"free space on that disk, then {resume}",
                     "unwritable folder": f"make {run_dir} writable, then {resume}",
                     "interrupted": resume}.get(status)
        if next_step is None:  # a cell raised: the same run would raise again
            next_step = resume if ename == "DeadKernelError" else (
                "fix what the failing cell needs, then start a new run (a resume would fail "
                "the same way)")
        super().__init__(
            f"{what} with {ename}: {evalue.splitlines()[0] if evalue else ''}\n"
            f"run folder: {run_dir}\n"
            f"details: {' and '.join(details)}\n{next_step}"
        )


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def check_run(notebook: str | os.PathLike[str] | Notebook,
              parameters: Mapping[str, object]) -> dict:
    """The checks ``run`` makes before any kernel starts; returns every parameter but
    ``out_dir`` (which is gentools' to set: giving it raises ParameterError)."""
    found = load_notebook(notebook)
    spec = found.params
    if OUT_DIR in parameters:
        raise ParameterError(f"parameter {OUT_DIR!r} is set by gentools to the run folder; "
                             "choose where runs go with --out DIR (run(..., out=DIR)) instead")
    if OUT_DIR not in spec:
        raise ParameterError(f"{found.name} has no {OUT_DIR!r} parameter; a notebook run by "
                             'gentools must declare one in its parameters cell (out_dir = "...")')
    values = validate(spec, parameters, notebook=found.name)
    values.pop(OUT_DIR)
    return values


def check_data(notebook: str | os.PathLike[str] | Notebook,
               parameters: Mapping[str, object]) -> None:
    """Open the data set that ``data`` (and ``data_dir``) name, before any kernel starts,
    with the loader the notebook uses: an image data set by name, else a text file (a
    notebook whose ``data`` defaults to "pydoc") or a folder of WAV files ("synth"). The
    embedded default is not opened. A problem raises ParameterError naming the file."""
    spec = load_notebook(notebook).params
    data, folder = parameters.get("data"), parameters.get("data_dir") or None
    if "data" not in spec or data == spec["data"].default:
        return
    from gentools.data import audio, images, text

    if data in images.DATASETS and folder is None and images.default_root(str(data)) is None:
        hint = images.INSTALL_HINTS.get(str(data))
        raise ParameterError(f"data {data!r} needs the folder of its files: give it with "
                             "-p data_dir DIR (nothing is downloaded)"
                             + (f", or install it: {hint}" if hint else ""))
    try:
        if data in images.DATASETS:
            images.load_images(str(data), folder)
        elif spec["data"].default == "pydoc":
            text.load_corpus(str(data))
        elif spec["data"].default == "synth":
            audio.load_wav_folder(str(data))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"data {data!r}: {exc}") from None


def run(notebook: str | os.PathLike[str] | Notebook, parameters: Mapping[str, object] | None = None,
        out: str | os.PathLike[str] | None = None, progress: bool = True,
        kernel_name: str = "python3", reuse: bool = False) -> Path:
    """Execute ``notebook`` with papermill in a run folder and return its absolute path.

    The folder is ``<out or ./runs>/<stem>/<YYYYmmdd-HHMMSS>-<digest>[-N]`` (UTC), a new one
    each time; with ``reuse=True`` (sweeps, the comparison) it is ``<stem>/<digest>``, where a
    completed run is returned as it is and an unfinished one is emptied and run again.
    Raises ParameterError (bad parameters or data) before any folder is made or kernel
    starts, RunLocked when another process runs the folder, and RunFailed when the run does
    not complete (its manifest says how; ``resume`` continues it).
    """
    source = load_notebook(notebook)  # the one resolution and parse of this run
    values = check_run(source, dict(parameters or {}))
    check_data(source, values)
    run_dir = reuse_dir(source, values, out or "runs")
    parent, digest, started = run_dir.parent, run_dir.name, _utc_now()
    if reuse and run_status(run_dir) == "completed":  # a completed manifest is final
        return run_dir
    if reuse:
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        stamp = datetime.fromisoformat(started).strftime("%Y%m%d-%H%M%S")
        run_dir = make_run_dir(parent, f"{stamp}-{digest}")
    with locked(run_dir):
        if reuse and run_status(run_dir) == "completed":  # it completed while we looked
            return run_dir
        for entry in run_dir.iterdir() if reuse else []:  # an unfinished run starts afresh
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        values[OUT_DIR] = str(run_dir)
        manifest = dict(
            notebook=str(source.path),
            notebook_sha256=hashlib.sha256(source.source).hexdigest(),
            executed_notebook=f"{source.stem}.ipynb", run_id=run_dir.name, digest=digest,
            status="running", error=None, parameters=values, seed=values.get("seed"),
            device=None, environment=None, started_at=started, finished_at=None,
            wall_time_s=None, attempts=[], outputs={},
        )
        return _attempt(source, run_dir, manifest, kernel_name, progress)


def resumable(run_dir: str | os.PathLike[str]) -> dict[str, object]:
    """The manifest of the unfinished run in ``run_dir``, checked as ``run`` checks a new
    one: not completed, its notebook unchanged and with a ``resume`` parameter, its
    parameters valid (ParameterError lists every problem) and its checkpoints the files
    the manifest recorded (sha256). NotResumable says which check fails. (A run without a
    checkpoint restarts from step 0.)"""
    return _resumable(Path(run_dir))[0]


def _resumable(run_dir: Path) -> tuple[dict[str, object], Notebook]:
    """``resumable``'s manifest, and the run's notebook loaded for the resume."""
    manifest = read_manifest(run_dir)
    if manifest.get("status") == "completed":
        raise NotResumable(f"{run_dir} holds a completed run; there is nothing to resume")
    source = Path(str(manifest.get("notebook")))
    if not source.is_file():
        raise NotResumable(f"the run's notebook {source} no longer exists")
    found = load_notebook(source)  # its bytes, hashed as `run` hashed them
    if hashlib.sha256(found.source).hexdigest() != manifest.get("notebook_sha256"):
        raise NotResumable(f"{source} changed since the run started; resuming would mix two "
                           "versions of it (start a new run instead)")
    if "resume" not in found.params:
        raise NotResumable(f"{source.name} has no 'resume' parameter, so it cannot resume")
    check_run(found, {k: v for k, v in manifest["parameters"].items() if k != OUT_DIR})
    attempts = manifest.get("attempts") or [{}]
    recorded = manifest.get("outputs") if attempts[-1].get("status") != "running" else None
    for name, digest in (recorded or {}).items():  # unknown after a lost try: it wrote on
        path = run_dir / name
        if name.endswith(".safetensors") and (not path.is_file() or sha256_file(path) != digest):
            state = "is missing" if not path.is_file() else "differs from the file the run wrote"
            raise NotResumable(f"checkpoint {path} {state} (sha256 in {run_dir / MANIFEST}); "
                               f"a resume cannot use it: start a new run of {source.stem}")
    return manifest, found


def resume(run_dir: str | os.PathLike[str], progress: bool = True,
           kernel_name: str = "python3") -> Path:
    """Continue the unfinished run in ``run_dir`` from its last checkpoint: the notebook runs
    again there with its manifest's parameters plus ``resume=True``, and ends with the
    metrics an uninterrupted run would have. Raises NotResumable or ParameterError (nothing
    runs), RunLocked (another process runs it) or RunFailed."""
    run_dir = Path(run_dir).resolve()
    read_manifest(run_dir)  # a folder without a run gets no lock file
    with locked(run_dir):
        manifest, source = _resumable(run_dir)
        check_data(source, manifest["parameters"])
        manifest["parameters"][OUT_DIR] = str(run_dir)
        return _attempt(source, run_dir, manifest, kernel_name, progress, resume=True)


def _attempt(source: Notebook, run_dir: Path, manifest: dict, kernel_name: str, progress: bool,
             resume: bool = False) -> Path:
    """Execute the notebook once into ``run_dir`` (whose lock the caller holds), recording
    the try in the manifest. papermill injects ``out_dir``, ``resume`` when resuming, and
    what differs from the defaults, so the executed notebook shows what was set. It writes
    ``<stem>.partial.ipynb``, which becomes ``<stem>.ipynb`` at the end (``settle_notebook``)."""
    spec = source.params
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
    try:  # a full disk or a read-only folder stops the run here, before any kernel
        (run_dir / RESERVE).write_bytes(bytes(RESERVE_BYTES))
        write_json(run_dir / MANIFEST, manifest)
    except OSError:
        (run_dir / RESERVE).unlink(missing_ok=True)
        if not resume:  # nothing of the run is there yet: leave no folder
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    executed = run_dir / str(manifest["executed_notebook"])
    partial = executed.with_suffix(PARTIAL)
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

        from gentools.runner.kernels import ipc_kernel_manager

        try:
            with signals.handled(interrupt):
                papermill.execute_notebook(
                    str(source.path), str(partial), parameters=injected,
                    cwd=str(source.path.parent),
                    kernel_name=kernel_name, progress_bar=progress, log_output=False,
                    kernel_manager_class=ipc_kernel_manager(managers))
        finally:
            for manager in managers:
                if getattr(manager, "folder", None):
                    shutil.rmtree(manager.folder, ignore_errors=True)
            settle_notebook(partial, executed)
    except BaseException as exc:
        ename, evalue, trace = _error_of(exc)
        status = "interrupted" if received or ename == "KeyboardInterrupt" else "failed"
        code = re.match(r"\[Errno (\d+)\]", evalue)
        status = OS_STATUS.get(int(code[1]), status) if code else status
        error = {"ename": ename, "evalue": evalue}
        attempt.update(status=status, error={**error, "traceback": trace})
        manifest.update(status=status, error=error)
        _finish(manifest, attempt, run_dir, clock)
        if isinstance(exc, (Exception, KeyboardInterrupt)):
            raise RunFailed(run_dir, executed, ename, evalue, received[0] if received else None,
                            status) from exc
        raise
    attempt["status"] = manifest["status"] = "completed"
    _finish(manifest, attempt, run_dir, clock)
    return run_dir


def _error_of(exc: BaseException) -> tuple[str, str, str]:
    """(name, value, traceback text) of what ended a run: the failing cell's error when a
    cell raised, else the exception itself (a dead kernel, a signal, a full disk)."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return str(exc.ename), str(exc.evalue), "\n".join(exc.traceback)
    import traceback

    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))


def _finish(manifest: dict, attempt: dict, run_dir: Path, clock: float) -> None:
    """Write the manifest's last word on this try, first freeing the room kept for it."""
    environment = read_json(run_dir / ENVIRONMENT, None)  # None: the run stopped before it
    manifest["environment"] = environment
    manifest["device"] = environment.get("device") if isinstance(environment, dict) else None
    attempt["finished_at"] = manifest["finished_at"] = _utc_now()
    attempt["wall_time_s"] = round(time.monotonic() - clock, 3)
    manifest["wall_time_s"] = round(sum(a.get("wall_time_s") or 0 for a in manifest["attempts"]), 3)
    (run_dir / RESERVE).unlink(missing_ok=True)
    manifest["outputs"] = {
        path.relative_to(run_dir).as_posix(): sha256_file(path)
        for path in sorted(run_dir.rglob("*")) if path.is_file() and path != run_dir / MANIFEST
        and not path.name.startswith(".")
    }
    write_json(run_dir / MANIFEST, manifest)
