"""Every notebook: stored small and clean, runs under nbval and as a papermill job.

The notebook tests run each notebook at its `tiny` test parameters (stored in the
notebook's metadata, `gentools.test_parameters`), injected after the parameters cell
the way papermill injects them. The checked outputs (`# NBVAL_CHECK_OUTPUT`) do not
depend on the size, so nbval compares them with what the stored notebook holds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from gentools import jobs
from gentools.params import notebook_parameters, tiny_parameters, validate

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"



@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS][:1], "no notebooks found"
    assert "vae" in [p.stem for p in NOTEBOOKS]


def test_stored_notebook_is_small_and_keeps_only_checked_outputs(notebook):
    assert notebook.stat().st_size < 100_000
    nb = nbformat.read(notebook, as_version=4)
    assert "widgets" not in nb.metadata
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.language_info.name
    checked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.startswith(CHECK):
            checked += 1
            assert cell.execution_count == checked
            assert cell.outputs, "a checked cell must store the output nbval compares"
            assert all(o.output_type == "stream" for o in cell.outputs)
        else:
            assert cell.execution_count is None
            assert not cell.outputs, f"unchecked output stored in: {cell.source[:60]!r}"
    assert checked >= 2


def test_parameters_cell_parses_for_papermill_and_gentools(notebook):
    ours = notebook_parameters(notebook)
    theirs = {p["name"]: p for p in papermill.inspect_notebook(str(notebook)).values()}
    assert set(ours) == set(theirs)
    assert {"seed", "device", "size", "out_dir"} <= set(ours)
    assert ours["size"].choices == ("tiny", "default", "gpu")
    validate(ours, tiny_parameters(notebook))  # the test parameters are themselves valid


def run_nbval(notebook: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    nb = load_notebook_node(str(notebook))  # nbformat.read plus the metadata papermill expects
    params = {**tiny_parameters(notebook), "out_dir": str(tmp_path / "run")}
    nbformat.write(parameterize_notebook(nb, params), tmp_path / notebook.name)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         str(tmp_path / notebook.name)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow
def test_notebook_under_nbval(notebook, tmp_path):
    result = run_nbval(notebook, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())


@pytest.mark.slow
def test_papermill_runs_are_reproducible(notebook, tmp_path):
    params = tiny_parameters(notebook)
    runs = [jobs.run(notebook.stem, params, out=tmp_path, progress=False) for _ in range(2)]
    assert runs[0] != runs[1]
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    timing = {k for k in metrics[0] if "seconds" in k}
    assert {k: v for k, v in metrics[0].items() if k not in timing} == {
        k: v for k, v in metrics[1].items() if k not in timing
    }
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert (runs[0] / "checkpoint.safetensors").is_file()
    assert (runs[0] / f"{notebook.stem}.ipynb").stat().st_size < 1_000_000


@pytest.mark.slow
def test_nbval_catches_a_changed_checked_output(tmp_path):
    """The checked outputs are really compared: a stored output that differs fails."""
    nb = nbformat.read(NOTEBOOKS[[p.stem for p in NOTEBOOKS].index("vae")], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(CHECK))
    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("must", "should")
    tampered = tmp_path / "src" / "vae.ipynb"
    tampered.parent.mkdir()
    nbformat.write(nb, tampered)
    result = run_nbval(tampered, tmp_path)
    assert result.returncode == 1
    assert "1 failed" in result.stdout
