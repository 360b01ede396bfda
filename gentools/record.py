"""What a notebook records in its run folder: ``record(metrics, out_dir, environment)`` writes
``metrics.json`` (a flat ``{name: float}``) and ``environment.json`` (``repro.environment``).

Every notebook calls it in its last cell, inside its kernel, so it is core; the runner reads
both files back into the run's manifest, the sweep's table and the comparison.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

from gentools.files import write_json

METRICS = "metrics.json"
ENVIRONMENT = "environment.json"


def _metric_value(name: object, value: object) -> float:
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric names must be non-empty strings (got {name!r})")
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # a 0-d numpy array or torch tensor
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"metric {name!r} must be a number (got {type(value).__name__} {value!r})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r} must be finite (got {number})")
    return number


def record(metrics: Mapping[str, object], out_dir: str | os.PathLike[str],
           environment: Mapping[str, object] | None = None) -> dict[str, float]:
    """Write ``<out_dir>/metrics.json`` (and ``environment.json``) and return the metrics, a
    flat ``{name: float}``. A value that is not a finite number raises ValueError naming the
    metric, and nothing is written."""
    clean = dict(sorted((name, _metric_value(name, value)) for name, value in metrics.items()))
    write_json(Path(out_dir) / METRICS, clean)
    if environment is not None:
        write_json(Path(out_dir) / ENVIRONMENT, dict(environment), sort_keys=True)
    return clean
