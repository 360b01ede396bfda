"""Notebook parameters: the `parameters`-tagged cell of a notebook is its schema.

Each notebook has one code cell tagged ``parameters`` holding plain literal assignments,
each followed by a comment::

    seed = 0             # random seed [0..]
    device = "auto"      # where to train [auto|cpu|cuda|cuda:N|mps]
    lr = 0.001           # learning rate [0..1]
    data = "digits"      # dataset name or folder

The type of a parameter is the type of its default literal (int, float, str or bool).
An optional trailing ``[...]`` in the comment is the constraint: ``[lo..hi]`` is an
inclusive numeric range (either bound may be empty), ``[a|b|c]`` a list of allowed
strings in which a standalone ``N`` segment (``cuda:N``) matches a non-negative
integer. The rest of the comment is the help text.

This module finds notebooks (``find_notebook``), parses that cell (``load_notebook`` does
both, once, into the ``Notebook`` a run hands down) and checks values (``validate``),
reporting every problem in one ``ParameterError``; ``check_notebook`` is the check a running
notebook makes (through ``gentools.setup``), so this module is core, and it imports nothing
heavy.
"""

from __future__ import annotations

import ast
import difflib
import functools
import io
import json
import os
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PARAMETERS_TAG = "parameters"
_TYPES: tuple[type, ...] = (bool, int, float, str)
_CONSTRAINT = re.compile(r"^(?P<help>.*?)\s*\[(?P<body>[^\[\]]*)\]\s*$")
_RANGE = re.compile(r"^\s*(?P<low>\S*?)\s*\.\.\s*(?P<high>\S*)\s*$")
_STANDALONE_N = re.compile(r"(?<![A-Za-z0-9_])N(?![A-Za-z0-9_])")


class ParameterError(ValueError):
    """Invalid parameters or parameters cell; ``problems`` lists each problem found."""

    def __init__(self, problems: str | Iterable[str], header: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1 and header is None:
            message = self.problems[0]
        else:
            head = header or f"{len(self.problems)} parameter problems"
            message = head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


def repo_notebooks_dir() -> Path:
    """``<repo>/notebooks``, the repository's notebook folder (parent of the package)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def notebooks_dir() -> Path:
    """$GENTOOLS_NOTEBOOKS if set, else ./notebooks if it exists, else <repo>/notebooks."""
    env = os.environ.get("GENTOOLS_NOTEBOOKS")
    if env:
        if not Path(env).expanduser().is_dir():
            raise FileNotFoundError(f"GENTOOLS_NOTEBOOKS={env} is not a folder")
        return Path(env).expanduser()
    here = Path.cwd() / "notebooks"
    return here if here.is_dir() else repo_notebooks_dir()


def available_notebooks() -> dict[str, Path]:
    """``{stem: path}`` of the notebooks in ``notebooks_dir()``, sorted by name."""
    return {p.stem: p for p in sorted(notebooks_dir().glob("*.ipynb")) if p.is_file()}


def find_notebook(name: str | os.PathLike[str]) -> Path:
    """The one notebook resolver: an existing ``.ipynb`` path (inside a kernel the current
    folder is the notebook's own) as it is, else ``"vae"`` or ``"vae.ipynb"`` looked up in
    ``notebooks_dir()``. FileNotFoundError says where it looked and suggests a close name."""
    given = Path(name).expanduser()
    if given.suffix == ".ipynb" and given.is_file():
        return given.resolve()
    if len(given.parts) > 1 or given.is_absolute():
        raise FileNotFoundError(f"notebook {str(name)!r} does not exist")
    available = available_notebooks()
    stem = given.name.removesuffix(".ipynb")
    if stem in available:
        return available[stem].resolve()
    close = difflib.get_close_matches(stem, list(available), n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    raise FileNotFoundError(f"notebook {str(name)!r} not found in {Path.cwd()} or "
                            f"{notebooks_dir()};{hint} available: {', '.join(available) or 'none'}")


def _format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _choice_pattern(choice: str) -> re.Pattern[str]:
    pieces = _STANDALONE_N.split(choice)
    return re.compile("[0-9]+".join(re.escape(p) for p in pieces))


@dataclass(frozen=True)
class Param:
    """One notebook parameter: its name, type, default, help and constraint."""

    name: str
    type: type
    default: object
    help: str = ""
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None

    def constraint(self) -> str | None:
        """The constraint as written in the cell (``1..10``, ``a|b``), or None."""
        if self.choices is not None:
            return "|".join(self.choices)
        if self.low is None and self.high is None:
            return None
        low = "" if self.low is None else _format_number(self.low)
        high = "" if self.high is None else _format_number(self.high)
        return f"{low}..{high}"

    def describe(self) -> str:
        """One line, e.g. ``steps (int, default 3000, 1..1000000): optimisation steps``."""
        default = repr(self.default) if self.type is str else str(self.default)
        parts = [self.type.__name__, f"default {default}"] + [c for c in [self.constraint()] if c]
        text = f"{self.name} ({', '.join(parts)})"
        return f"{text}: {self.help}" if self.help else text

    def coerce(self, value: object) -> object:
        """``value`` converted to this parameter's type, or ParameterError. An int parameter
        takes a whole float (``1e3``), a float one an int; a bool is never a number."""
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = {bool: isinstance(value, bool), str: isinstance(value, str), float: number,
                int: number and float(value).is_integer()}[self.type]
        if not fits:
            raise ParameterError(f"parameter {self.name!r} must be {self.type.__name__} "
                                 f"(got {type(value).__name__} {value!r})")
        value = self.type(value)
        if self.choices is not None:
            if not any(_choice_pattern(c).fullmatch(value) for c in self.choices):
                raise ParameterError(f"parameter {self.name!r} must be one of "
                                     f"{', '.join(self.choices)} (got {value!r})")
        elif number and ((self.low is not None and not value >= self.low)
                         or (self.high is not None and not value <= self.high)):
            if self.low is not None and self.high is not None:
                allowed = f"in {self.constraint()}"
            elif self.low is not None:
                allowed = f">= {_format_number(self.low)}"
            else:
                allowed = f"<= {_format_number(self.high)}"
            raise ParameterError(f"parameter {self.name!r} must be {allowed} (got {value!r})")
        return value


def _comments_by_line(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def _make_param(name: str, default: object, comment: str) -> Param:
    """The parameter ``name = default  # help [constraint]``."""
    kind, choices, low, high = type(default), None, None, None
    match = _CONSTRAINT.match(comment)
    help_text, body = (match["help"].strip(), match["body"]) if match else (comment, None)
    if body is not None and ".." in body:
        if kind not in (int, float):
            raise ParameterError(f"parameter {name!r}: range [{body}] needs an int or float "
                                 f"default, not {kind.__name__}")
        bounds = _RANGE.fullmatch(body)
        try:
            low, high = (float(bounds[k]) if bounds[k] else None for k in ("low", "high"))
        except (TypeError, ValueError):  # no match, or not numbers
            raise ParameterError(f"parameter {name!r}: bad range [{body}], expected [lo..hi] "
                                 "with numbers") from None
        if low is not None and high is not None and low > high:
            raise ParameterError(f"parameter {name!r}: empty range [{body}]")
    elif body is not None:
        if kind is not str:
            raise ParameterError(f"parameter {name!r}: [{body}] is a list of choices, which "
                                 f"needs a str default ({kind.__name__} parameters take a range "
                                 "[lo..hi])")
        choices = tuple(c.strip() for c in body.split("|"))
        if not all(choices):
            raise ParameterError(f"parameter {name!r}: empty choice in [{body}]")
    param = Param(name, kind, default, help_text, choices, low, high)
    try:
        param.coerce(default)
    except ParameterError as exc:
        raise ParameterError(f"default of {exc}") from None
    return param


def _assignment(stmt: ast.stmt) -> tuple[str, ast.expr] | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        target, value = stmt.target, stmt.value
    else:
        return None
    return (target.id, value) if isinstance(target, ast.Name) else None


def _literal(name: str, node: ast.expr, line: int) -> object:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        raise ParameterError(f"line {line}: {name} = {ast.unparse(node)} is not a literal; the "
                             "parameters cell may only assign int, float, str or bool literals") \
            from None
    if type(value) not in _TYPES:
        raise ParameterError(f"line {line}: {name} = {ast.unparse(node)} is a "
                             f"{type(value).__name__}; parameters must be int, float, str or bool "
                             "literals")
    return value


def parse_parameters_source(source: str, origin: str | None = None) -> dict[str, Param]:
    """Parse a parameters cell into ``{name: Param}`` in cell order; anything but plain
    literal assignments raises ParameterError, prefixed by ``origin`` (the notebook)."""
    where = f"{origin} parameters cell" if origin else "parameters cell"
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{where}: line {exc.lineno}: {exc.msg}") from None
    comments = _comments_by_line(source)
    spec: dict[str, Param] = {}
    problems: list[str] = []
    for stmt in tree.body:
        found = _assignment(stmt)
        if found is None:
            problems.append(f"line {stmt.lineno}: `{ast.unparse(stmt)}` is not a plain "
                            "assignment `name = literal`")
            continue
        name, node = found
        end = stmt.end_lineno or stmt.lineno
        comment = next((comments[n] for n in range(end, stmt.lineno - 1, -1) if n in comments), "")
        try:
            if name in spec:
                raise ParameterError(f"line {stmt.lineno}: parameter {name!r} assigned twice")
            spec[name] = _make_param(name, _literal(name, node, stmt.lineno), comment)
        except ParameterError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ParameterError([f"{where}: {p}" for p in problems])
    return spec


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, Param]:
    """Parse a notebook's single ``parameters``-tagged code cell (read as plain JSON: every
    notebook calls this first, and importing nbformat would add about a second). The
    parse is kept while the file's bytes are unchanged: a sweep checks thousands of runs."""
    path = Path(path)
    return dict(_parameters_in(path, path.read_bytes()))


@dataclass(frozen=True, eq=False)
class Notebook:
    """A notebook resolved and its parameters cell parsed, once (``load_notebook``): what a
    run hands down instead of a name. ``source`` holds the bytes that were parsed, which
    the run's digest hashes."""

    path: Path  # the notebook file, absolute
    params: dict[str, Param]  # its parameters cell, in cell order (read it, don't change it)
    source: bytes = field(repr=False)  # the file's bytes when it was parsed

    @property
    def name(self) -> str:  # "vae.ipynb"
        return self.path.name

    @property
    def stem(self) -> str:  # "vae"
        return self.path.stem


def load_notebook(notebook: str | os.PathLike[str] | Notebook) -> Notebook:
    """``notebook`` resolved (``find_notebook``: a name or a path) and its parameters cell
    parsed; a Notebook is returned as it is, so a caller may give either."""
    if isinstance(notebook, Notebook):
        return notebook
    path = find_notebook(notebook)
    source = path.read_bytes()
    return Notebook(path, dict(_parameters_in(path, source)), source)


@functools.lru_cache(maxsize=64)
def _parameters_in(path: Path, source: bytes) -> dict[str, Param]:
    try:
        cells = json.loads(source.decode("utf-8"))["cells"]
        tagged = [cell for cell in cells if cell["cell_type"] == "code"
                  and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParameterError(f"{path}: not a Jupyter notebook ({exc!r})") from exc
    if len(tagged) != 1:
        raise ParameterError(f"{path}: expected exactly one code cell tagged {PARAMETERS_TAG!r}, "
                             f"found {len(tagged)}")
    source = tagged[0]["source"]
    return parse_parameters_source(source if isinstance(source, str) else "".join(source),
                                   origin=path.name)


def validate(
    spec: Mapping[str, Param], values: Mapping[str, object], notebook: str | None = None,
    require_all: bool = False,
) -> dict[str, object]:
    """The full parameter dict: defaults overridden by ``values``, converted. Every problem
    (unknown name, wrong type, out of range, bad choice; a missing name with
    ``require_all``) is raised together in one ParameterError naming ``notebook``."""
    result = {name: p.default for name, p in spec.items()}
    problems: list[str] = []
    where = f" for {notebook}" if notebook else ""
    for name, value in values.items():
        if name not in spec:
            close = difflib.get_close_matches(str(name), list(spec), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            problems.append(f"unknown parameter {name!r}{where}{hint} known: {', '.join(spec)}")
            continue
        try:
            result[name] = spec[name].coerce(value)
        except ParameterError as exc:
            problems.extend(exc.problems)
    if require_all:
        problems.extend(f"missing parameter {name!r}{where}" for name in spec if name not in values)
    if problems:
        header = f"{len(problems)} parameter problems{where}" if len(problems) > 1 else None
        raise ParameterError(problems, header=header)
    return result


def check_notebook(
    values: Mapping[str, object], notebook: str | os.PathLike[str]
) -> dict[str, object]:
    """Validate a running notebook's parameters against its own parameters cell, as
    ``gentools.setup`` does: ``check_notebook(globals(), "vae.ipynb")``. ``values`` must
    hold every parameter; its other keys are ignored."""
    found = load_notebook(notebook)
    given = {name: values[name] for name in found.params if name in values}
    return validate(found.params, given, found.name, require_all=True)
