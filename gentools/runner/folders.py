"""Run folders: their names, the manifest read back, and the lock of the one process that
runs a folder.

A run of ``gentools run`` lives in ``<out>/<stem>/<YYYYmmdd-HHMMSS>-<digest>[-N]``; a sweep's
and the comparison's in ``<out>/<stem>/<digest>`` (``reuse_dir``), so they find it again. The
``digest`` (``run_digest``) covers the notebook's bytes and the parameters. `jobs` executes
notebooks into these folders and writes their ``manifest.json``; `locked` keeps a second
process out of a folder while one runs it; ``settle_notebook`` turns what papermill wrote
into the folder's executed notebook.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from gentools.files import atomic_write, read_json
from gentools.parameters import Notebook, load_notebook

MANIFEST = "manifest.json"
LOCK = ".lock"  # held (flock) by the one process that runs or resumes the folder's run


class NotResumable(ValueError):
    """``jobs.resume`` was pointed at a folder that is not an unfinished run, or is busy."""


class RunLocked(NotResumable):
    """Another process holds the run folder's lock: it runs or resumes that run now."""


def run_digest(notebook: str | os.PathLike[str] | Notebook,
               parameters: Mapping[str, object]) -> str:
    """A run's identity: the first 8 hex of sha256(notebook name, notebook bytes, canonical
    JSON of ``parameters``). ``gentools run`` puts it after the start time in the folder
    name; sweeps and the comparison use ``<stem>/<digest>`` alone, so a run is found again.
    ``notebook`` is a loaded Notebook (its bytes as parsed) or the notebook file's path."""
    if isinstance(notebook, Notebook):
        stem, source = notebook.stem, notebook.source
    else:
        stem, source = Path(notebook).stem, Path(notebook).read_bytes()
    canonical = json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(stem.encode("utf-8") + b"\0" + source)
    digest.update(canonical.encode("utf-8"))
    return digest.hexdigest()[:8]


def reuse_dir(notebook: str | os.PathLike[str] | Notebook, parameters: Mapping[str, object],
              out: str | os.PathLike[str]) -> Path:
    """``<out>/<stem>/<digest>``: the folder of the run of ``parameters`` (every one but
    ``out_dir``) that ``jobs.run(..., reuse=True)`` runs, or finds completed there."""
    found = load_notebook(notebook)
    return Path(out).resolve() / found.stem / run_digest(found, parameters)


def run_status(run_dir: str | os.PathLike[str]) -> str | None:
    """The manifest's status ("running", "completed", ...), or None without a manifest."""
    manifest = read_json(Path(run_dir) / MANIFEST, None)
    return manifest.get("status") if isinstance(manifest, dict) else None


def read_manifest(run_dir: str | os.PathLike[str]) -> dict:
    """The run's manifest; NotResumable names the file when it is missing, is not JSON, or
    is not a gentools manifest."""
    path = Path(run_dir) / MANIFEST
    try:
        manifest = read_json(path)
    except FileNotFoundError:
        raise NotResumable(f"{run_dir} is not a run folder: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise NotResumable(f"{path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("parameters"), dict):
        raise NotResumable(f"{path} is not a gentools run manifest (no parameters mapping)")
    return manifest


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock (an flock on ``run_dir/.lock``) for the block, or raise
    RunLocked at once naming the process that holds it. ``jobs.run``, ``jobs.resume``, sweeps
    and the comparison's reuse take it before they read or write anything in the folder; the
    kernel does not inherit it, so it goes when its process dies."""
    import fcntl

    with open(run_dir / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunLocked(f"{run_dir} is being run by another process (pid "
                            f"{handle.read().strip() or '?'}); wait for it to end") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def is_locked(run_dir: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the run folder's lock (``locked``)."""
    import fcntl

    try:
        with open(Path(run_dir) / LOCK, encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def make_run_dir(parent: Path, run_id: str) -> Path:
    """A new folder ``parent/run_id``, or ``run_id-2``, ``-3``... when that one exists."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count(1):
        candidate = parent / (run_id if attempt == 1 else f"{run_id}-{attempt}")
        with contextlib.suppress(FileExistsError):
            candidate.mkdir()
            return candidate


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def slim_notebook(path: Path, target: Path | None = None) -> None:
    """Drop widget state and views from an executed notebook and write it to ``target``
    (default: in place), atomically: a headless run saves only empty views plus a state
    that embeds plotly.js (megabytes per figure). Each view keeps its text form, and the
    static figures stay."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                del output["data"][WIDGET_VIEW]
    atomic_write(target or path, lambda tmp: nbformat.write(nb, tmp))


def settle_notebook(partial: Path, executed: Path) -> None:
    """Turn the notebook papermill wrote into the executed notebook, slimmed; never half a
    file: one cut short (a full disk) is deleted, and one that cannot be rewritten is
    renamed as it is. Raises nothing."""
    if not partial.is_file():
        return
    try:
        slim_notebook(partial, executed)
    except OSError:  # no room for the slimmed copy: the whole notebook as it is
        with contextlib.suppress(OSError):
            os.replace(partial, executed)
    except Exception:  # not a notebook: papermill's write was cut short
        pass
    partial.unlink(missing_ok=True)
