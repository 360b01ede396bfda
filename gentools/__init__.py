"""gentools: a notebook-first PyTorch toolkit for the classic generative architectures."""

from __future__ import annotations

from collections.abc import Mapping

__version__ = "0.1.0"


def setup(values: Mapping[str, object], notebook: str) -> tuple[dict[str, object], object]:
    """A notebook's preamble in one call: ``params, dev = gentools.setup(globals(), "vae.ipynb")``.

    Checks the parameters against the notebook's own parameters cell (a wrong name, type or
    range raises ParameterError before any work starts), sets the torch thread count, seeds
    Python, NumPy and torch, turns deterministic algorithms on or off, and prints the device.
    Returns the validated parameters and the torch.device. Imports torch only when called.
    """
    from gentools import repro
    from gentools.params import check_notebook

    params = check_notebook(values, notebook)
    dev = repro.resolve_device(str(params.get("device", "auto")))
    threads = repro.set_threads(int(params.get("threads", 0)))
    repro.seed_everything(int(params.get("seed", 0)))
    repro.set_deterministic(bool(params.get("deterministic", False)))
    print(f"device {dev}, {threads} torch thread(s)")
    return params, dev
