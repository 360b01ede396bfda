"""Tests for gentools.runner.jobs and .folders (papermill runs, run folders, manifests),
gentools.record, and gentools.runner.cli."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest

from gentools import parameters
from gentools.files import write_json
from gentools.parameters import (
    ParameterError,
    available_notebooks,
    find_notebook,
    load_notebook,
    notebook_parameters,
    notebooks_dir,
)
from gentools.record import record
from gentools.runner import cli, folders, jobs

PARAMETERS = """\
seed = 0                # random seed [0..]
scale = 2.0             # multiplier [0..10]
mode = "fast"           # how to run [fast|slow]
out_dir = "runs/tiny/interactive"  # run folder for the checkpoint and metrics
"""
VALIDATE = """\
from gentools.parameters import check_notebook
params = check_notebook({k: globals()[k] for k in ("seed", "scale", "mode", "out_dir")}, \
"tiny.ipynb")
"""
RECORD = """\
import os
from gentools.record import record
os.makedirs(os.path.join(out_dir, "ckpt"), exist_ok=True)
with open(os.path.join(out_dir, "ckpt", "model.safetensors"), "wb") as f:
    f.write(b"not really weights")
record({"x": float(seed) * 2, "scaled": seed * scale}, out_dir, environment={"device": "cpu"})
"""
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}(-\d+)?$")


def make_notebook(path: Path, *cells: str, parameters: str = PARAMETERS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(cell) for cell in cells]
    nbformat.write(nb, path)
    return path


def make_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make_notebook(folder / "tiny.ipynb", VALIDATE, RECORD)
    make_notebook(folder / "broken.ipynb", VALIDATE, 'raise ValueError("boom")')
    return folder


@pytest.fixture
def notebooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = make_notebooks(tmp_path / "notebooks")
    monkeypatch.setenv("GENTOOLS_NOTEBOOKS", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two real papermill runs of tiny.ipynb with the same parameters."""
    root = tmp_path_factory.mktemp("jobs")
    folder = make_notebooks(root / "notebooks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENTOOLS_NOTEBOOKS", str(folder))
        mp.chdir(root)
        first = jobs.run("tiny", {"seed": 3}, out=root / "runs", progress=False)
        second = jobs.run("tiny.ipynb", {"seed": 3}, out=root / "runs", progress=False)
    yield first, second


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every resolution of a notebook and every parse of a parameters cell in this process,
    with the parse cache off, so that a repeated parse counts."""
    seen: dict[str, list] = {"resolved": [], "parsed": []}
    find, parse = parameters.find_notebook, parameters.parse_parameters_source

    def counted_find(name):
        seen["resolved"].append(name)
        return find(name)

    def counted_parse(source, origin=None):
        seen["parsed"].append(origin)
        return parse(source, origin)

    monkeypatch.setattr(parameters, "find_notebook", counted_find)
    monkeypatch.setattr(parameters, "parse_parameters_source", counted_parse)
    monkeypatch.setattr(parameters, "_parameters_in", parameters._parameters_in.__wrapped__)
    return seen


def manifest_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


# --- end-to-end runs (start a kernel) ----------------------------------------------------


@pytest.mark.slow
def test_run_folder_layout(two_runs: tuple[Path, Path]) -> None:
    run_dir = two_runs[0]
    assert run_dir.parent.name == "tiny" and run_dir.parent.parent.name == "runs"
    assert RUN_ID.match(run_dir.name)
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    assert files == [
        ".lock",  # the run folder's lock, left for whoever runs it next
        "ckpt/model.safetensors",
        "environment.json",
        "manifest.json",
        "metrics.json",
        "tiny.ipynb",
    ]


@pytest.mark.slow
def test_manifest_fields(two_runs: tuple[Path, Path]) -> None:
    run_dir = two_runs[0]
    manifest = manifest_of(run_dir)
    assert manifest["status"] == "completed" and manifest["error"] is None
    assert manifest["run_id"] == run_dir.name
    assert Path(manifest["notebook"]).name == "tiny.ipynb"
    assert manifest["executed_notebook"] == "tiny.ipynb"
    assert manifest["parameters"] == {
        "seed": 3,
        "scale": 2.0,
        "mode": "fast",
        "out_dir": str(run_dir.resolve()),
    }
    assert manifest["seed"] == 3
    # what the notebook recorded (a real notebook records repro.environment: see test_repro)
    assert manifest["device"] == "cpu" and manifest["environment"] == {"device": "cpu"}
    started = datetime.fromisoformat(manifest["started_at"])
    finished = datetime.fromisoformat(manifest["finished_at"])
    assert started.utcoffset() is not None and finished >= started
    assert 0 < manifest["wall_time_s"] < 600


@pytest.mark.slow
def test_outputs_hashes_match_files(two_runs: tuple[Path, Path]) -> None:
    run_dir = two_runs[0]
    outputs = manifest_of(run_dir)["outputs"]
    assert set(outputs) == {
        "ckpt/model.safetensors",
        "environment.json",
        "metrics.json",
        "tiny.ipynb",
    }
    for name, digest in outputs.items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_metrics_and_injected_out_dir(two_runs: tuple[Path, Path]) -> None:
    run_dir = two_runs[0]
    text = (run_dir / "metrics.json").read_text()
    assert json.loads(text) == {"scaled": 6.0, "x": 6.0}
    assert text.index('"scaled"') < text.index('"x"')
    executed = nbformat.read(run_dir / "tiny.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    source = injected[0].source
    assert f'out_dir = "{run_dir.resolve()}"' in source and "seed = 3" in source
    assert "scale" not in source  # only values that differ from the defaults are injected


@pytest.mark.slow
def test_same_parameters_same_metrics_distinct_folders(two_runs: tuple[Path, Path]) -> None:
    first, second = two_runs
    assert first != second and first.parent == second.parent
    assert (first / "metrics.json").read_bytes() == (second / "metrics.json").read_bytes()
    digest = folders.run_digest(
        first.parent.parent.parent / "notebooks" / "tiny.ipynb",
        {"seed": 3, "scale": 2.0, "mode": "fast"},
    )
    assert first.name.split("-")[2] == second.name.split("-")[2] == digest


@pytest.mark.slow
def test_failing_notebook_raises_run_failed(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(jobs.RunFailed) as info:
        jobs.run("broken", out=tmp_path / "out", progress=False)
    (run_dir,) = (tmp_path / "out" / "broken").iterdir()
    manifest = manifest_of(run_dir)
    assert manifest["status"] == "failed"
    assert manifest["error"] == {"ename": "ValueError", "evalue": "boom"}
    assert (run_dir / "broken.ipynb").is_file()
    assert "broken.ipynb" in manifest["outputs"]
    assert info.value.run_dir == run_dir
    message = str(info.value)
    assert str(run_dir) in message and str(run_dir / "broken.ipynb") in message
    assert "ValueError: boom" in message


@pytest.mark.slow
def test_cli_run_prints_paths(
    notebooks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "tiny", "-p", "seed", "2", "-p", "mode", "slow", "--no-progress"]) == 0
    (run_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    assert capsys.readouterr().out.splitlines() == [
        f"executed notebook: {run_dir / 'tiny.ipynb'}",
        f"metrics: {run_dir / 'metrics.json'}",
        f"checkpoint: {run_dir / 'ckpt' / 'model.safetensors'}",
        f"manifest: {run_dir / 'manifest.json'}",
    ]
    assert json.loads((run_dir / "metrics.json").read_text()) == {"scaled": 4.0, "x": 4.0}
    assert manifest_of(run_dir)["parameters"]["mode"] == "slow"


@pytest.mark.slow
def test_a_run_resolves_its_notebook_and_parses_its_parameters_once(
    notebooks: Path, tmp_path: Path, parses: dict[str, list]
) -> None:
    run_dir = jobs.run("tiny", {"seed": 1}, out=tmp_path / "out", progress=False)
    assert parses == {"resolved": ["tiny"], "parsed": ["tiny.ipynb"]}  # the kernel's are apart
    manifest = manifest_of(run_dir)
    checked = {k: v for k, v in manifest["parameters"].items() if k != "out_dir"}
    assert manifest["status"] == "completed"
    assert manifest["digest"] == folders.run_digest(notebooks / "tiny.ipynb", checked)
    assert manifest["notebook_sha256"] == hashlib.sha256(
        (notebooks / "tiny.ipynb").read_bytes()).hexdigest()


@pytest.mark.slow
def test_cli_run_resolves_and_parses_once(notebooks: Path, parses: dict[str, list]) -> None:
    assert cli.main(["run", "tiny", "-p", "seed", "2", "--no-progress"]) == 0
    assert parses == {"resolved": ["tiny"], "parsed": ["tiny.ipynb"]}


def test_a_loaded_notebook_is_parsed_once_for_the_checks_and_the_folder(
    notebooks: Path, tmp_path: Path, parses: dict[str, list]
) -> None:
    notebook = load_notebook("tiny")
    values = jobs.check_run(notebook, {"seed": 4})
    jobs.check_data(notebook, values)
    folder = folders.reuse_dir(notebook, values, tmp_path)
    assert parses == {"resolved": ["tiny"], "parsed": ["tiny.ipynb"]}
    assert folder == tmp_path.resolve() / "tiny" / folders.run_digest(notebooks / "tiny.ipynb",
                                                                        values)
    assert folder == folders.reuse_dir("tiny", values, tmp_path)  # a name gives the same


# --- refusals before any kernel starts ---------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"seed": -1}, "parameter 'seed' must be >= 0"),
        ({"sead": 1}, "did you mean 'seed'"),
        ({"out_dir": "x"}, "--out DIR"),
    ],
)
def test_bad_parameter_refused_before_kernel(
    notebooks: Path, tmp_path: Path, no_kernel: None, parameters: dict, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        jobs.run("tiny", parameters, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_notebook_without_out_dir_is_refused(
    notebooks: Path, tmp_path: Path, no_kernel: None
) -> None:
    make_notebook(notebooks / "bare.ipynb", "pass", parameters="seed = 0  # seed\n")
    with pytest.raises(ParameterError, match="no 'out_dir' parameter"):
        jobs.run("bare", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_bad_parameter_exits_2(
    notebooks: Path, tmp_path: Path, no_kernel: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "tiny", "-p", "mode", "turbo", "-p", "scale", "11"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: 2 parameter problems for tiny.ipynb")
    assert "parameter 'mode' must be one of fast, slow (got 'turbo')" in captured.err
    assert "parameter 'scale' must be in 0..10 (got 11.0)" in captured.err
    assert not (tmp_path / "runs").exists()


def test_cli_failed_run_exits_1(
    notebooks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(*args: object, **kwargs: object) -> Path:
        raise jobs.RunFailed(tmp_path / "r", tmp_path / "r" / "tiny.ipynb", "KeyError", "'w'")

    monkeypatch.setattr(jobs, "run", fail)
    assert cli.main(["run", "tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: run failed with KeyError: 'w'") and str(tmp_path / "r") in err


def test_cli_repeated_parameter_exits_2(
    notebooks: Path, no_kernel: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "tiny", "-p", "seed", "1", "-p", "seed", "2"]) == 2
    assert "parameter 'seed' given twice" in capsys.readouterr().err


def test_cli_unknown_notebook_exits_2(
    notebooks: Path, no_kernel: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "tiyn"]) == 2
    err = capsys.readouterr().err
    assert "notebook 'tiyn' not found" in err and "did you mean 'tiny'?" in err
    assert "available: broken, tiny" in err


# --- finding notebooks -----------------------------------------------------------------


def test_find_notebook(notebooks: Path) -> None:
    expected = (notebooks / "tiny.ipynb").resolve()
    assert find_notebook("tiny") == expected
    assert find_notebook("tiny.ipynb") == expected
    assert find_notebook(str(notebooks / "tiny.ipynb")) == expected
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_notebook(str(notebooks / "nope.ipynb"))


def test_a_notebook_in_the_current_folder_comes_first(notebooks: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a kernel the current folder is the notebook's own, which may not be the
    notebooks folder (a copy run by nbval, a notebook opened elsewhere in JupyterLab)."""
    (tmp_path / "elsewhere").mkdir()
    here = make_notebook(tmp_path / "elsewhere" / "tiny.ipynb", "pass")
    monkeypatch.chdir(here.parent)
    assert find_notebook("tiny.ipynb") == here.resolve()
    assert find_notebook("tiny") == (notebooks / "tiny.ipynb").resolve()


def test_notebooks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENTOOLS_NOTEBOOKS", str(tmp_path))
    assert notebooks_dir() == tmp_path
    monkeypatch.setenv("GENTOOLS_NOTEBOOKS", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="GENTOOLS_NOTEBOOKS"):
        notebooks_dir()
    monkeypatch.delenv("GENTOOLS_NOTEBOOKS")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    assert notebooks_dir() == tmp_path / "notebooks"


def test_available_notebooks(notebooks: Path) -> None:
    listed = available_notebooks()
    assert list(listed) == ["broken", "tiny"]
    assert list(notebook_parameters(listed["tiny"])) == ["seed", "scale", "mode", "out_dir"]


def test_cli_list(notebooks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        "broken",
        "  seed (int, default 0, 0..): random seed",
        "  scale (float, default 2.0, 0..10): multiplier",
        "  mode (str, default 'fast', fast|slow): how to run",
        "  out_dir (str, default 'runs/tiny/interactive'): run folder for the checkpoint and "
        "metrics",
    ]
    assert lines[5] == "tiny" and len(lines) == 10


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_json(
        tmp_path / "manifest.json",
        {
            "notebook": "nb/tiny.ipynb",
            "status": "completed",
            "error": None,
            "parameters": {"seed": 3, "mode": "fast"},
            "wall_time_s": 2.345,
        },
    )
    record({"loss": 0.5, "acc": 0.25}, tmp_path)
    assert cli.main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for line in ("status: completed", "wall time: 2.3 s", "  seed = 3", "  mode = 'fast'"):
        assert line in out.splitlines()
    assert re.search(r"^  acc\s+0\.25$", out, re.M) and re.search(r"^  loss\s+0\.5$", out, re.M)


@pytest.mark.parametrize(("text", "message"), [
    (None, "is not a run folder: it has no manifest.json"),
    ('{"status": "runn', "manifest.json is unreadable: Unterminated string"),
    ('["a", "list"]', "manifest.json is not a gentools run manifest"),
    ('{"parameters": 3}', "manifest.json is not a gentools run manifest"),
])
def test_cli_show_refuses_a_missing_or_broken_manifest_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / "manifest.json").write_text(text)
    assert cli.main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(tmp_path) in err and len(err.splitlines()) == 1


def test_cli_show_says_lost_when_no_process_holds_a_running_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_json(tmp_path / "manifest.json", {"status": "running", "parameters": {}})
    assert cli.main(["show", str(tmp_path)]) == 0
    assert "status: lost (the process that ran it is gone" in capsys.readouterr().out
    with folders.locked(tmp_path):
        assert cli.main(["show", str(tmp_path)]) == 0
        assert "status: running" in capsys.readouterr().out.splitlines()


# --- helpers -----------------------------------------------------------------------------


def test_run_folders_are_never_reused(tmp_path: Path) -> None:
    made = [folders.make_run_dir(tmp_path / "tiny", "20250101-000000-abcdef12") for _ in range(3)]
    assert [p.name for p in made] == [
        "20250101-000000-abcdef12",
        "20250101-000000-abcdef12-2",
        "20250101-000000-abcdef12-3",
    ]


def test_run_digest_depends_on_notebook_and_parameters(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "a.ipynb", "pass")
    base = folders.run_digest(nb, {"seed": 1, "scale": 2.0})
    assert re.fullmatch(r"[0-9a-f]{8}", base)
    assert folders.run_digest(nb, {"scale": 2.0, "seed": 1}) == base
    assert folders.run_digest(nb, {"seed": 2, "scale": 2.0}) != base
    other = make_notebook(tmp_path / "b.ipynb", "pass  # changed")
    assert folders.run_digest(other, {"seed": 1, "scale": 2.0}) != base
    assert folders.run_digest(load_notebook(nb), {"seed": 1, "scale": 2.0}) == base


def test_run_digest_is_the_one_runs_were_made_with(tmp_path: Path) -> None:
    """A run folder made before stays the one found after: the digest is pinned."""
    pinned = tmp_path / "pin.ipynb"
    pinned.write_bytes(b'{"cells": []}')
    assert folders.run_digest(pinned, {"seed": 1, "scale": 2.0}) == "a89d2b9e"


def test_record_writes_metrics_and_environment(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    metrics = record(
        {"b": np.float32(0.5), "a": 2, "c": np.array(1.5)}, out, environment={"device": "cpu"}
    )
    assert metrics == {"a": 2.0, "b": 0.5, "c": 1.5}
    assert all(type(v) is float for v in metrics.values())
    text = (out / "metrics.json").read_text()
    assert json.loads(text) == metrics and list(json.loads(text)) == ["a", "b", "c"]
    assert json.loads((out / "environment.json").read_text()) == {"device": "cpu"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "figure 'loss' must be finite \\(got nan\\)"),
        (float("inf"), "figure 'loss' must be finite \\(got inf\\)"),
        ("0.1", "figure 'loss' must be a number \\(got str '0.1'\\)"),
        (True, "figure 'loss' must be a number \\(got bool True\\)"),
        ([1.0], "figure 'loss' must be a number"),
    ],
)
def test_record_rejects_bad_values(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record({"ok": 1.0, "loss": value}, tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_module_imports_stay_light() -> None:
    import subprocess
    import sys

    code = ("import sys, gentools.runner.cli; "
            "print(sorted({'torch', 'papermill'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_run_that_a_live_process_runs_is_neither_resumed_nor_emptied(
    notebooks: Path, tmp_path: Path, no_kernel: None
) -> None:
    import os

    params = jobs.check_run("tiny", {})
    run_dir = tmp_path / "out" / "tiny" / folders.run_digest(notebooks / "tiny.ipynb", params)
    run_dir.mkdir(parents=True)
    write_json(run_dir / "manifest.json", {
        "status": "running", "parameters": params, "notebook": str(notebooks / "tiny.ipynb")})
    (run_dir / "checkpoint.safetensors").write_bytes(b"weights")
    with folders.locked(run_dir):  # as the process that runs it holds it
        with pytest.raises(folders.RunLocked, match=f"another process \\(pid {os.getpid()}\\)"):
            jobs.resume(run_dir)
        with pytest.raises(folders.RunLocked, match="being run by another process"):
            jobs.run("tiny", {}, out=tmp_path / "out", reuse=True)
    assert (run_dir / "checkpoint.safetensors").read_bytes() == b"weights"


@pytest.mark.slow
def test_a_kernel_stopped_by_a_signal_marks_the_run_interrupted(
    notebooks: Path, tmp_path: Path
) -> None:
    """What train.fit does on SIGTERM in the kernel: checkpoint, then KeyboardInterrupt."""
    make_notebook(notebooks / "stopped.ipynb", VALIDATE.replace("tiny.ipynb", "stopped.ipynb"),
                  'raise KeyboardInterrupt("training interrupted by signal 15 after step 3")')
    with pytest.raises(jobs.RunFailed) as info:
        jobs.run("stopped", out=tmp_path / "out", progress=False)
    manifest = manifest_of(info.value.run_dir)
    assert manifest["status"] == "interrupted" and info.value.signal is None
    assert [a["status"] for a in manifest["attempts"]] == ["interrupted"]
    assert manifest["error"]["ename"] == "KeyboardInterrupt"
    assert "resume it with: gentools run --resume" in str(info.value)


@pytest.mark.parametrize(("version", "transport"), [("8.10.0", "ipc"), ("9.0.0", "tcp")])
def test_the_kernel_manager_uses_ipc_only_where_it_was_checked(
    monkeypatch: pytest.MonkeyPatch, version: str, transport: str
) -> None:
    import jupyter_client

    from gentools.runner import kernels

    monkeypatch.setattr(jupyter_client, "__version__", version)
    managers: list = []
    manager = kernels.ipc_kernel_manager(managers)()
    assert managers == [manager] and manager.transport == transport
    if transport == "ipc":
        assert Path(manager.ip).parent == Path(manager.folder) and Path(manager.folder).is_dir()
        Path(manager.folder).rmdir()
    else:
        assert manager.folder is None
