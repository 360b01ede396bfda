"""Parameters from the command line and the tests' side: ``-p NAME VALUE`` text read as a value
(``parse_value``; a sweep spec's text is read the same way), and the tiny configuration each
notebook stores for its tests (``tiny_parameters``).

The parameters cell itself, the notebook resolver and the checks are in the core,
`gentools.parameters`, since a running notebook checks its own parameters with them.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path


def tiny_parameters(path: str | os.PathLike[str]) -> dict[str, object]:
    """The tiny configuration a notebook stores in its metadata (``gentools.test_parameters``),
    which the tests inject after its parameters cell; {} when it stores none."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    return dict(notebook.get("metadata", {}).get("gentools", {}).get("test_parameters", {}))


def parse_value(text: str, type_: type | None = None) -> object:
    """Command-line text as a value: a Python literal (``"1e-3"`` -> 0.001), ``true``/``false``
    in any case, else the text itself (``"cpu"``). With ``type_=str`` a non-string literal
    stays text, so ``-p data 123`` means '123' for a str parameter."""
    lowered = text.strip().lower()
    if lowered in ("true", "false") and type_ is not str:
        return lowered == "true"
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    if type_ is str and not isinstance(value, str):
        return text
    return value
