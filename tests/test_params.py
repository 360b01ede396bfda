"""Tests for gentools.parameters (parsing the parameters cell, validation) and
gentools.runner.params (parse_value)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from gentools.parameters import (
    Notebook,
    Param,
    ParameterError,
    check_notebook,
    load_notebook,
    notebook_parameters,
    parse_parameters_source,
    repo_notebooks_dir,
    validate,
)
from gentools.runner.params import parse_value

CELL = """\
seed = 0             # random seed [0..]
device = "auto"      # where to train [auto|cpu|cuda|cuda:N|mps]
size = "default"     # model size [tiny|default|gpu]
steps = 3000         # optimisation steps [1..1000000]
lr = 0.001           # learning rate [0..1]
shift = -1.5         # offset [..10]
verbose = True       # print progress
data = "digits"      # dataset name or folder
out_dir = "runs/vae/interactive"  # run folder for the checkpoint and metrics
"""


@pytest.fixture
def spec() -> dict[str, Param]:
    return parse_parameters_source(CELL)


def write_notebook(path: Path, cell: str = CELL) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# test"),
        nbformat.v4.new_code_cell(cell, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(seed)"),
    ]
    nbformat.write(nb, path)
    return path


# --- parsing ---------------------------------------------------------------------------


def test_parses_every_literal_type_in_order(spec: dict[str, Param]) -> None:
    assert list(spec) == [
        "seed",
        "device",
        "size",
        "steps",
        "lr",
        "shift",
        "verbose",
        "data",
        "out_dir",
    ]
    assert {n: (p.type, p.default) for n, p in spec.items()} == {
        "seed": (int, 0),
        "device": (str, "auto"),
        "size": (str, "default"),
        "steps": (int, 3000),
        "lr": (float, 0.001),
        "shift": (float, -1.5),
        "verbose": (bool, True),
        "data": (str, "digits"),
        "out_dir": (str, "runs/vae/interactive"),
    }


def test_help_and_constraints(spec: dict[str, Param]) -> None:
    assert spec["seed"] == Param("seed", int, 0, "random seed", None, 0.0, None)
    assert spec["steps"].low == 1 and spec["steps"].high == 1_000_000
    assert spec["shift"].low is None and spec["shift"].high == 10
    assert spec["size"].choices == ("tiny", "default", "gpu")
    assert spec["size"].help == "model size"
    assert spec["data"] == Param("data", str, "digits", "dataset name or folder")
    assert spec["verbose"].help == "print progress"
    assert spec["out_dir"].help == "run folder for the checkpoint and metrics"


def test_comment_on_last_line_of_a_multiline_assignment() -> None:
    spec = parse_parameters_source('name = (\n    "a"\n)  # the name [a|b]\n# standalone\nk = 2\n')
    assert spec["name"].choices == ("a", "b")
    assert spec["name"].help == "the name"
    assert spec["k"].help == ""


def test_cuda_n_choice(spec: dict[str, Param]) -> None:
    param = spec["device"]
    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert param.coerce(ok) == ok
    for bad in ("cuda:", "cuda:x", "cuda:-1", "cuda:1.5", "gpu", "CPU", "cuda:0 "):
        with pytest.raises(ParameterError, match="must be one of auto, cpu, cuda, cuda:N, mps"):
            param.coerce(bad)


def test_n_inside_a_word_is_literal() -> None:
    param = parse_parameters_source('m = "NONE"  # mode [NONE|layer:N]')["m"]
    assert param.coerce("NONE") == "NONE" and param.coerce("layer:3") == "layer:3"
    with pytest.raises(ParameterError, match="must be one of NONE, layer:N"):
        param.coerce("0ONE")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = foo()", "x = foo\\(\\) is not a literal"),
        ("x = 2 * 3", "x = 2 \\* 3 is not a literal"),
        ("x = [1, 2]", "x = \\[1, 2\\] is a list"),
        ("x = None", "is a NoneType"),
        ("import os", "not a plain assignment"),
        ("x = y = 1", "not a plain assignment"),
        ("x = 1\nx = 2", "'x' assigned twice"),
        ("x = 5  # [1..3]", "default of parameter 'x' must be in 1..3 \\(got 5\\)"),
        ('x = "c"  # [a|b]', "default of parameter 'x' must be one of a, b"),
        ("x = 1  # [a|b]", "needs a str default"),
        ('x = "a"  # [0..1]', "needs an int or float default"),
        ("x = 1  # [3..1]", "empty range"),
        ("x = 1  # [a..b]", "bad range"),
        ("x = (", "line 1"),
    ],
)
def test_bad_cells_raise(source: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_parameters_source(source, origin="t.ipynb")


def test_bad_cell_reports_every_problem_with_origin() -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameters_source("a = f()\nb = 1  # [5..]\nc = 2\n", origin="t.ipynb")
    assert len(info.value.problems) == 2
    assert all(p.startswith("t.ipynb parameters cell: ") for p in info.value.problems)


def test_notebook_parameters_reads_the_tagged_cell(tmp_path: Path) -> None:
    spec = notebook_parameters(write_notebook(tmp_path / "vae.ipynb"))
    assert spec["steps"].default == 3000


def test_notebook_without_parameters_cell(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, tmp_path / "plain.ipynb")
    with pytest.raises(ParameterError, match="exactly one code cell tagged 'parameters'"):
        notebook_parameters(tmp_path / "plain.ipynb")



def test_load_notebook_resolves_and_parses_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_notebook(tmp_path / "vae.ipynb")
    monkeypatch.setenv("GENTOOLS_NOTEBOOKS", str(tmp_path))
    notebook = load_notebook("vae")
    assert isinstance(notebook, Notebook) and load_notebook(notebook) is notebook
    assert (notebook.path, notebook.name, notebook.stem) == (path.resolve(), "vae.ipynb", "vae")
    assert notebook.source == path.read_bytes()
    assert list(notebook.params) == list(parse_parameters_source(CELL))
    assert load_notebook(str(path)).params == notebook.params


def test_a_changed_notebook_is_parsed_again(tmp_path: Path) -> None:
    """The parse is kept by the file's bytes: a rewrite of the same size within the same
    clock tick (the same mtime) is still seen."""
    path = write_notebook(tmp_path / "vae.ipynb")
    stat = path.stat()
    assert notebook_parameters(path)["steps"].default == 3000
    path.write_text(path.read_text().replace("steps = 3000", "steps = 4000"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert notebook_parameters(path)["steps"].default == 4000
    assert load_notebook(path).params["steps"].default == 4000


def test_a_file_that_is_not_a_notebook_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "cut.ipynb").write_text('{"cells": [{"cell_type": "code", "sou')
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    for name in ("cut.ipynb", "list.ipynb"):
        with pytest.raises(ParameterError, match="not a Jupyter notebook"):
            notebook_parameters(tmp_path / name)


def test_every_notebook_reads_as_nbformat_reads_it() -> None:
    for path in sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert notebook_parameters(path) == parse_parameters_source(cell.source, origin=path.name)

# --- values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-3", 0.001),
        ("3", 3),
        ("-2", -2),
        ("2.5", 2.5),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("cpu", "cpu"),
        ("cuda:0", "cuda:0"),
        ("'quoted'", "quoted"),
        ("data/my folder", "data/my folder"),
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_value_for_a_str_parameter_keeps_the_text() -> None:
    assert parse_value("123", str) == "123"
    assert parse_value("true", str) == "true"
    assert parse_value("'x'", str) == "x"
    assert parse_value("123", int) == 123


def test_describe(spec: dict[str, Param]) -> None:
    assert spec["steps"].describe() == "steps (int, default 3000, 1..1000000): optimisation steps"
    assert spec["seed"].describe() == "seed (int, default 0, 0..): random seed"
    assert spec["shift"].describe() == "shift (float, default -1.5, ..10): offset"
    assert spec["lr"].describe() == "lr (float, default 0.001, 0..1): learning rate"
    assert spec["device"].describe() == (
        "device (str, default 'auto', auto|cpu|cuda|cuda:N|mps): where to train"
    )
    assert Param("k", int, 2).describe() == "k (int, default 2)"


def test_validate_fills_defaults_and_converts(spec: dict[str, Param]) -> None:
    values = validate(spec, {"steps": 3.0, "lr": 1, "device": "cuda:1", "verbose": False})
    assert values == {
        "seed": 0,
        "device": "cuda:1",
        "size": "default",
        "steps": 3,
        "lr": 1.0,
        "shift": -1.5,
        "verbose": False,
        "data": "digits",
        "out_dir": "runs/vae/interactive",
    }
    assert type(values["steps"]) is int and type(values["lr"]) is float


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"stepz": 5},
            "unknown parameter 'stepz' for vae.ipynb; did you mean 'steps'\\? known: seed, device,",
        ),
        ({"zzz": 5}, "unknown parameter 'zzz' for vae.ipynb; known: seed, device, size"),
        ({"steps": "abc"}, "parameter 'steps' must be int \\(got str 'abc'\\)"),
        ({"steps": 2.5}, "parameter 'steps' must be int \\(got float 2.5\\)"),
        ({"steps": True}, "parameter 'steps' must be int \\(got bool True\\)"),
        ({"lr": False}, "parameter 'lr' must be float \\(got bool False\\)"),
        ({"lr": "0.1"}, "parameter 'lr' must be float \\(got str '0.1'\\)"),
        ({"verbose": 1}, "parameter 'verbose' must be bool \\(got int 1\\)"),
        ({"data": 3}, "parameter 'data' must be str \\(got int 3\\)"),
        ({"steps": 0}, "parameter 'steps' must be in 1..1000000 \\(got 0\\)"),
        ({"lr": 1.5}, "parameter 'lr' must be in 0..1 \\(got 1.5\\)"),
        ({"lr": float("nan")}, "parameter 'lr' must be in 0..1 \\(got nan\\)"),
        ({"seed": -1}, "parameter 'seed' must be >= 0 \\(got -1\\)"),
        ({"shift": 11}, "parameter 'shift' must be <= 10 \\(got 11.0\\)"),
        ({"size": "huge"}, "parameter 'size' must be one of tiny, default, gpu \\(got 'huge'\\)"),
    ],
)
def test_validate_errors(spec: dict[str, Param], values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        validate(spec, values, notebook="vae.ipynb")


def test_validate_reports_all_problems_at_once(spec: dict[str, Param]) -> None:
    with pytest.raises(ParameterError) as info:
        validate(spec, {"stepz": 1, "lr": 7, "size": "huge", "seed": "x"}, notebook="vae.ipynb")
    assert len(info.value.problems) == 4
    text = str(info.value)
    assert text.startswith("4 parameter problems for vae.ipynb:")
    for fragment in ("'stepz'", "'lr' must be in 0..1", "'size' must be one of", "'seed' must be"):
        assert fragment in text


# --- check_notebook --------------------------------------------------------------------


def test_check_notebook_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_notebook(tmp_path / "vae.ipynb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENTOOLS_NOTEBOOKS", raising=False)
    values = {n: p.default for n, p in parse_parameters_source(CELL).items()}
    namespace = {**values, "steps": 10, "lr": 1, "__name__": "__main__", "np": object()}
    result = check_notebook(namespace, "vae.ipynb")
    assert result["steps"] == 10 and result["lr"] == 1.0
    assert "np" not in result and list(result) == list(values)


def test_check_notebook_reports_missing_and_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "vae.ipynb")
    monkeypatch.chdir(tmp_path)
    values = {n: p.default for n, p in parse_parameters_source(CELL).items()}
    del values["data"]
    values["steps"] = -3
    with pytest.raises(ParameterError) as info:
        check_notebook(values, "vae.ipynb")
    assert sorted(info.value.problems) == [
        "missing parameter 'data' for vae.ipynb",
        "parameter 'steps' must be in 1..1000000 (got -3)",
    ]


def test_check_notebook_uses_gentools_notebooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "vae.ipynb", "seed = 1  # seed [0..]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENTOOLS_NOTEBOOKS", str(folder))
    assert check_notebook({"seed": 4}, "vae.ipynb") == {"seed": 4}


def test_check_notebook_missing_file_names_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENTOOLS_NOTEBOOKS", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        check_notebook({}, "nope.ipynb")
    message = str(info.value)
    assert f"not found in {tmp_path} or {repo_notebooks_dir()}" in message
    assert "available: bert, compare" in message  # the repository's notebooks


def test_setup_checks_the_parameters_then_seeds_and_reports_the_device(capsys):
    import torch

    import gentools

    notebook = Path(__file__).parents[1] / "notebooks" / "vae.ipynb"
    values = {name: p.default for name, p in notebook_parameters(notebook).items()}
    with pytest.raises(ParameterError, match=r"parameter .steps. must be in 0\.\.1000000"):
        gentools.setup({**values, "steps": -1}, "vae.ipynb")
    assert capsys.readouterr().out == ""
    params, dev = gentools.setup({**values, "seed": 7, "device": "cpu"}, "vae.ipynb")
    chosen = {"size": "default", "steps": 2000, "decoder": "categorical", "iwae_k": 1000}
    assert params == {**values, "seed": 7, "device": "cpu", **chosen}  # auto, for the digits
    assert dev == torch.device("cpu") and torch.initial_seed() == 7
    assert capsys.readouterr().out == (
        "chosen for digits: size='default', steps=2000, decoder='categorical', iwae_k=1000\n"
        f"device cpu, {torch.get_num_threads()} torch thread(s)\n")
