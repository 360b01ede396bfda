"""gentools: a notebook-first PyTorch toolkit for the classic generative architectures."""

from __future__ import annotations

from collections.abc import Mapping

__version__ = "0.1.0"


def setup(values: Mapping[str, object], notebook: str) -> tuple[dict[str, object], object]:
    """A notebook's preamble in one call: ``params, dev = gentools.setup(globals(), "vae.ipynb")``.

    Checks the parameters against the notebook's own parameters cell (a wrong name, type or
    range raises ParameterError before any work starts), resolves those left at "auto" / 0 for
    the data (`gentools.presets`), sets the torch thread count, seeds
    Python, NumPy and torch, turns deterministic algorithms on or off, and prints the device.
    Returns the validated parameters and the torch.device. Imports torch only when called.
    """
    from gentools import presets, repro
    from gentools.params import check_notebook

    params = check_notebook(values, notebook)
    chosen = presets.resolve(notebook, params)
    changed = {k: v for k, v in chosen.items() if v != params[k]}
    if changed:
        chosen_text = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        print(f"chosen for {params['data']}: {chosen_text}")
    params = chosen
    dev = repro.resolve_device(str(params.get("device", "auto")))
    threads = repro.set_threads(int(params.get("threads", 0)))
    repro.seed_everything(int(params.get("seed", 0)))
    repro.set_deterministic(bool(params.get("deterministic", False)))
    print(f"device {dev}, {threads} torch thread(s)")
    return params, dev
