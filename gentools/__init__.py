"""gentools: a notebook-first PyTorch toolkit for the classic generative architectures.

Two layers, and every import arrow points down:

    notebooks/*.ipynb, the `gentools` command (__main__.py)
        |
        v
    gentools/runner/   the runner: notebooks as jobs (papermill), sweeps (Dask), the
        |              comparison, the CLI; see gentools.runner
        v
    gentools/          the core, below: what a learner reads, and all that runs inside a
                       notebook's kernel

The core imports no papermill, nbclient, jupyter_client, dask or distributed, and nothing
from gentools.runner (tests/test_project.py checks both). Its modules:

    data/            datasets and loaders, embedded defaults first
    nn.py            layers several models share: masked and causal convolutions
    transformer.py   the Transformer block GPT and BERT share, and its KV cache
    models/          one architecture per file (diffusion/ and flow/ per part), on models/base.py
    train.py         the one training loop: fit(model, data, cfg, callbacks), fit_async
    checkpoint.py    atomic safetensors + JSON checkpoints (no pickle): a run's State, load_model
    metrics.py       bits/dim, dataset NLL, the histogram baseline, the Frechet distance
    judge.py         the sample judge: a small classifier's Frechet distance, coverage
    monitor.py       the live training monitor (curves, samples, ETA, Stop)
    widgets/         exploration widgets: latent space, images, audio, text, attention
    presets.py       the values of parameters left at "auto" / 0, chosen for the data
    repro.py         seeding, device, torch threads, environment capture
    parameters.py    a notebook's parameters cell as a schema, its checks, the resolver
    results.py       each family's figures as a typed dataclass, with their units
    record.py        record(): a notebook's metrics.json and environment.json
    files.py         the one atomic write; JSON read and written whole
    signals.py       SIGINT / SIGTERM handled for the length of a run or of training

and ``setup`` below, the preamble every notebook calls.
"""

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
    from gentools.parameters import check_notebook

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
