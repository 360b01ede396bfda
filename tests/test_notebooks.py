"""Every notebook: stored small and clean, runs under nbval and as a papermill job.

The notebook tests run each notebook at its `tiny` test parameters (stored in the
notebook's metadata, `gentools.test_parameters`), injected after the parameters cell
the way papermill injects them. The checked outputs (`# NBVAL_CHECK_OUTPUT`) do not
depend on the size, so nbval compares them with what the stored notebook holds.

Each notebook runs twice: once cell by cell under nbval, and once as a papermill job
(`jobs.run`). The nbval test checks the first; the reproducibility test checks that the
second ends with the first one's metrics, value for value. Both are methods of the
notebook's own class (`TestVae`, `TestCompare`, ...), which pytest-xdist's `--dist loadscope`
runs whole in one worker, so one nbval run serves both.
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

from gentools.parameters import notebook_parameters, validate
from gentools.runner import jobs
from gentools.runner.params import tiny_parameters

# compare.ipynb first: it runs six notebooks, so its runs take longest and start first
NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"),
                   key=lambda p: (p.stem != "compare", p.stem))
CHECK = "# NBVAL_CHECK_OUTPUT"


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS][:1], "no notebooks found"
    assert "vae" in [p.stem for p in NOTEBOOKS]


def test_stored_notebook_is_small_and_keeps_only_checked_outputs(notebook):
    assert notebook.stat().st_size < 100_000
    ids = [cell.get("id") for cell in json.loads(notebook.read_text())["cells"]]
    assert None not in ids and len(set(ids)) == len(ids)  # nbformat 4.5: one id per cell
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
    assert {"tiny", "default", "gpu"} <= set(ours["size"].choices)
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


def nbval_passed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.fixture(scope="class")
def nbval_run(request, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The test class's notebook executed under nbval, once for the class: (the run's out_dir,
    the completed pytest --nbval-lax process)."""
    notebook = request.cls.notebook
    folder = tmp_path_factory.mktemp(f"nbval-{notebook.stem}")
    return folder / "run", run_nbval(notebook, folder)


class NotebookRuns:
    """The nbval run and the papermill job of one notebook (`notebook`): the classes below
    subclass it once per notebook."""

    notebook: Path

    @pytest.mark.slow
    def test_notebook_under_nbval(self, nbval_run):
        out_dir, result = nbval_run
        nbval_passed(result)
        assert json.loads((out_dir / "metrics.json").read_text())

    @pytest.mark.slow
    def test_papermill_runs_are_reproducible(self, nbval_run, tmp_path):
        """A papermill job ends with the metrics of the nbval run at the same parameters.

        compare.ipynb's job points `runs_dir` at the model runs its nbval run trained, so it
        reuses all of them: its table from reused runs must equal the one from fresh runs (that
        each of those notebooks reproduces its own runs is checked by its own pair of tests).
        """
        notebook = self.notebook
        params = tiny_parameters(notebook)
        out_dir, result = nbval_run
        nbval_passed(result)
        if "runs_dir" in params:
            params["runs_dir"] = str(out_dir / "runs")
            trained = sorted((out_dir / "runs").rglob("manifest.json"))
            assert len(trained) >= 5  # vae, gan, pixelcnn, flow, diffusion (+ flow matching)
        job = jobs.run(notebook.stem, params, out=tmp_path, progress=False)
        if "runs_dir" in params:
            assert sorted((out_dir / "runs").rglob("manifest.json")) == trained  # none made
        metrics = [json.loads((r / "metrics.json").read_text()) for r in (out_dir, job)]
        timing = {k for k in metrics[0] if "seconds" in k}
        assert {k: v for k, v in metrics[0].items() if k not in timing} == {
            k: v for k, v in metrics[1].items() if k not in timing
        }
        manifest = json.loads((job / "manifest.json").read_text())
        assert manifest["status"] == "completed"
        assert (job / "checkpoint.safetensors").is_file()
        assert (job / f"{notebook.stem}.ipynb").stat().st_size < 1_000_000


def notebook_class(notebook: Path) -> type:
    """`Test<Name>(NotebookRuns)` for `notebook`; marked long when it trains the other
    notebooks' runs first (compare.ipynb: the suite's longest unit, started first)."""
    cls = type(f"Test{notebook.stem.title()}", (NotebookRuns,), {"notebook": notebook})
    return pytest.mark.long(cls) if "runs_dir" in tiny_parameters(notebook) else cls


for _cls in map(notebook_class, NOTEBOOKS):  # TestCompare, TestBert, ...: one xdist unit each
    globals()[_cls.__name__] = _cls


@pytest.mark.slow
def test_nbval_catches_a_changed_checked_output(tmp_path):
    """The checked outputs are really compared: a stored output that differs fails."""
    nb = nbformat.read(NOTEBOOKS[[p.stem for p in NOTEBOOKS].index("vae")], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(CHECK))
    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("must", "should")
    nb.cells = nb.cells[: nb.cells.index(cell) + 1]  # what comes after it plays no part
    tampered = tmp_path / "src" / "vae.ipynb"
    tampered.parent.mkdir()
    nbformat.write(nb, tampered)
    result = run_nbval(tampered, tmp_path)
    assert result.returncode == 1
    assert "1 failed" in result.stdout
