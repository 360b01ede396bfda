"""Re-run a notebook at its test parameters and store only its checked outputs.

    python scripts/refresh_checked_outputs.py notebooks/vae.ipynb

Stored notebooks keep no outputs except those of cells marked `# NBVAL_CHECK_OUTPUT`,
which nbval compares on every test run. This script executes a copy of the notebook
with the test parameters from its metadata (`gentools.test_parameters`), copies the
outputs of the checked cells back into the stored notebook, and strips everything
else (other outputs, execution counts, widget state).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

CHECK = "# NBVAL_CHECK_OUTPUT"


def strip(nb: nbformat.NotebookNode, keep: dict[str, list] | None = None) -> None:
    """Remove outputs (except `keep[cell id]` for checked cells) and run-time metadata."""
    keep = keep or {}
    checked_count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        checked = cell.source.startswith(CHECK)
        cell.outputs = keep.get(cell.id, cell.outputs) if checked else []
        # nbval treats a cell with outputs but no execution count as "unrun"
        cell.execution_count = (checked_count := checked_count + 1) if checked else None
        for key in ("execution", "papermill", "scrolled", "collapsed"):
            cell.metadata.pop(key, None)
    for key in ("widgets", "papermill"):
        nb.metadata.pop(key, None)


def refresh(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    params = nb.metadata.get("gentools", {}).get("test_parameters", {})
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        params = {**params, "out_dir": str(Path(tmp) / "run")}
        papermill.execute_notebook(str(path), str(copy), parameters=params, cwd=tmp)
        executed = nbformat.read(copy, as_version=4)
    keep = {}
    for cell in executed.cells:
        if cell.cell_type == "code" and cell.source.startswith(CHECK):
            keep[cell.id] = [o for o in cell.outputs if o.get("output_type") == "stream"]
            for out in keep[cell.id]:
                out.pop("metadata", None)
    strip(nb, keep)
    nbformat.write(nb, path)
    print(f"{path}: {len(keep)} checked cells stored, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        refresh(Path(arg))
