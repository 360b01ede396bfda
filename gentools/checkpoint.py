"""Atomic, pickle-free checkpoints: tensors in safetensors, everything else as JSON.

One checkpoint is one `.safetensors` file. Its tensors hold the model weights, the
optimizer states and the RNG state; its metadata holds a JSON document with the
step, the metric history, the configs and any extra JSON the caller adds (a
tokenizer, say). It is written to a temporary file in the same folder and renamed
over the old one, so a crash mid-write never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from gentools.files import atomic_write

FORMAT = "gentools-checkpoint-1"


def save(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write `tensors` and the JSON-able `meta` to `path` atomically."""
    # safetensors refuses tensors that share memory (tied weights): store copies.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"format": FORMAT, "meta": json.dumps(meta)}
    return atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=header))


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Read a checkpoint written by `save`: returns (tensors, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gentools checkpoint (format {header.get('format')!r})")
    return load_file(str(path), device=str(device)), json.loads(header["meta"])


def optimizer_to_flat(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer's state_dict into tensors (keyed by name) and JSON."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(name: str, tensors: dict, meta: dict) -> dict:
    """Rebuild the state_dict that `optimizer_to_flat` split."""
    state: dict[int, dict] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            pid, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[field] = value
    for key, value in meta["scalars"].items():
        pid, field = key.split(".", 1)
        state.setdefault(int(pid), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}
