"""Project hygiene: dependencies agree, the core and the runner keep their one-way imports,
lint is clean, the README's commands exist."""

import ast
import json
import pkgutil
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


# --- two layers: the core (gentools/) and the runner (gentools/runner/) on top of it -------

RUNNER_PACKAGES = ("papermill", "nbclient", "jupyter_client", "dask", "distributed")
TOP = {"__main__"}  # gentools/__main__.py: the `gentools` command, above both layers
CORE_IMPORTS = """\
import importlib, json, pkgutil, sys

class Unimportable:  # the runner's packages, as if they were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked}:
            raise ImportError(f"{{name}} is not importable here")
        return None

sys.meta_path.insert(0, Unimportable())
import gentools

def walk(package):  # pkgutil.walk_packages would import gentools.runner to look inside it
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name in ("gentools.runner", "gentools.__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{{type(exc).__name__}}: {{exc}}"
            continue
        imported.append(info.name)
        if info.ispkg:
            walk(module)

imported, failed = [], {{}}
walk(gentools)
runner = sorted(n for n in sys.modules if n.split(".")[:2] == ["gentools", "runner"])
print(json.dumps({{"imported": imported, "failed": failed, "runner": runner}}))
"""


def imported_modules(path: Path) -> set[str]:
    """Every module the file at `path` imports, at its top or inside a function, by full name
    (``from gentools import runner`` counts as gentools.runner)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def in_runner(name: str) -> bool:
    """Whether ``name`` is gentools.runner or something in it."""
    return name.split(".")[:2] == ["gentools", "runner"]


def module_name(path: Path) -> str:
    """gentools/models/vae.py -> gentools.models.vae; gentools/data/__init__.py -> gentools.data"""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_files() -> list[Path]:
    """Every .py file of the core: gentools/ but runner/ and the command's __main__.py."""
    return [p for p in sorted((ROOT / "gentools").rglob("*.py"))
            if not in_runner(module_name(p)) and p.stem not in TOP]


def test_the_core_imports_without_the_runner_or_its_packages():
    """Every core module imports with papermill, nbclient, jupyter_client, dask and
    distributed unimportable, and none of them pulls in gentools.runner."""
    code = CORE_IMPORTS.format(blocked=set(RUNNER_PACKAGES))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["failed"] == {}
    assert found["runner"] == []
    assert set(found["imported"]) == {module_name(p) for p in core_files()} - {"gentools"}


def test_no_core_file_imports_the_runner_or_its_packages_even_inside_a_function():
    """The subprocess test above sees only import-time imports; this reads every import."""
    for path in core_files():
        names = imported_modules(path)
        assert {n for n in names if in_runner(n)} == set(), path
        assert {n.partition(".")[0] for n in names} & set(RUNNER_PACKAGES) == set(), path


def docstring_modules(package: Path) -> list[str]:
    """The modules a package's docstring lists after "Its modules", in its order: the lines
    ``    name.py   what it is`` and ``    name/   what it is``."""
    text = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    listing = text.split("Its modules", 1)[1]
    return re.findall(r"^    ([a-z_0-9]+)(?:\.py|/)  ", listing, re.M)


def test_the_layers_are_the_ones_the_package_docstrings_describe():
    """gentools/__init__.py lists the core and gentools/runner/__init__.py the runner, each
    module once; the runner lists its modules in the order they build on one another, so
    each imports only core modules and runner modules listed before it."""
    core = {m.name for m in pkgutil.iter_modules([str(ROOT / "gentools")])} - TOP - {"runner"}
    listed_core = docstring_modules(ROOT / "gentools")
    assert sorted(listed_core) == sorted(core)
    runner = docstring_modules(ROOT / "gentools" / "runner")
    assert sorted(runner) == sorted(m.name for m in pkgutil.iter_modules(
        [str(ROOT / "gentools" / "runner")]))
    for i, name in enumerate(runner):
        path = ROOT / "gentools" / "runner" / f"{name}.py"
        runner_names = [n.split(".") for n in imported_modules(path) if in_runner(n)]
        uses = {parts[2] for parts in runner_names if len(parts) > 2}
        assert uses <= set(runner[:i]), f"runner/{name}.py imports {uses - set(runner[:i])}"


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
