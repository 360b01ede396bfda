"""What a notebook records in its run folder: ``record(results, out_dir, environment)`` writes
``metrics.json`` (a flat ``{name: float}``) and ``environment.json`` (``repro.environment``).

Every notebook calls it in its last cell, inside its kernel, so it is core; the runner reads
both files back into the run's manifest, the sweep's table and the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gentools.files import write_json
from gentools.results import Results, number

METRICS = "metrics.json"
ENVIRONMENT = "environment.json"


def record(metrics: Results | Mapping[str, object], out_dir: str | os.PathLike[str],
           environment: Mapping[str, object] | None = None) -> dict[str, float]:
    """Write ``<out_dir>/metrics.json`` (and ``environment.json``) and return the metrics, a
    flat ``{name: float}``: a family's typed results (`gentools.results`), or a mapping of
    names to numbers. A value that is not a finite number raises ValueError naming the
    metric, and nothing is written."""
    if isinstance(metrics, Results):
        metrics = metrics.metrics()
    for name in metrics:
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric names must be non-empty strings (got {name!r})")
    clean = dict(sorted((name, number(name, value)) for name, value in metrics.items()))
    write_json(Path(out_dir) / METRICS, clean)
    if environment is not None:
        write_json(Path(out_dir) / ENVIRONMENT, dict(environment), sort_keys=True)
    return clean
