"""Project hygiene: dependencies agree, lint is clean, the README's commands exist."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def requirement_names(reqs):
    return {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirement_names(project["dependencies"] + project["optional-dependencies"]["dev"])
    wanted = {CONDA_NAMES.get(n, n) for n in wanted}
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = requirement_names(d for d in deps if isinstance(d, str))
    assert conda - {"python", "pip"} == wanted
    assert {"pip": ["-e ."]} in deps  # the package itself comes from pip


def gentools_imports(path: Path) -> set[str]:
    """The gentools modules that the file at `path` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] == "gentools"}


def test_the_layer_modules_import_nothing_from_gentools():
    """nn.py and transformer.py sit under the models: no import arrow runs back up."""
    for layers in ("nn.py", "transformer.py"):
        assert gentools_imports(ROOT / "gentools" / layers) == set(), layers


def test_ruff_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "gentools", "tests", "notebooks", "scripts",
         "benchmarks"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_quick_start_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
