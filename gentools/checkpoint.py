"""Atomic, pickle-free checkpoints: tensors in safetensors, everything else as JSON.

One checkpoint is one `.safetensors` file. Its tensors hold the model weights, the
optimizer states and the RNG state; its metadata holds a JSON document with the
step, the metric history, the configs and any extra JSON the caller adds (a
tokenizer, say). It is written to a temporary file in the same folder and renamed
over the old one, so a crash mid-write never leaves a half-written checkpoint.

A training run's checkpoint is `CHECKPOINT` in its out_dir: `save_state` writes the State of
`gentools.train.fit` in that layout, `restore_state` puts it back for a resume, and
`load_model` rebuilds the trained model from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, safe_open, save_file

from gentools.files import atomic_write

if TYPE_CHECKING:
    from gentools.train import State

FORMAT = "gentools-checkpoint-1"
CHECKPOINT = "checkpoint.safetensors"  # a training run's checkpoint in its out_dir


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


# --- a training run's checkpoint ---------------------------------------------------------
def save_state(state: State, path: Path) -> None:
    """Write a training run's State to `path`: the model's weights, the optimizers' states,
    the RNG states, and the step, time, history and configs as JSON."""
    tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    optim_meta = {}
    for name, opt in state.optimizers.items():
        t, optim_meta[name] = optimizer_to_flat(name, opt)
        tensors.update(t)
    tensors["rng.torch"] = torch.get_rng_state()
    if state.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(state.device)
    meta = {
        "step": state.step,
        "elapsed": state.elapsed,
        "history": state.history,
        "val": state.val,
        "train_config": asdict(state.cfg),
        "model_class": type(state.model).__name__,
        "model_config": state.model.config_dict() if hasattr(state.model, "config_dict") else {},
        "optimizers": optim_meta,
    }
    state.checkpoint_path = save(path, tensors, meta)


def saved_step(path: Path) -> int:
    """The step of the training State saved at `path`."""
    return load(path)[1]["step"]


def restore_state(state: State, path: Path) -> None:
    """Put the State saved by `save_state` back into `state`, whose model and optimizers are
    built already, on `state.device`."""
    tensors, meta = load(path, device=state.device)
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    state.model.load_state_dict(model_sd)
    for name, opt in state.optimizers.items():
        opt.load_state_dict(optimizer_from_flat(name, tensors, meta["optimizers"][name]))
    torch.set_rng_state(tensors["rng.torch"].cpu())
    if "rng.cuda" in tensors and state.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), state.device)
    state.step, state.elapsed = meta["step"], meta["elapsed"]
    state.history, state.val = meta["history"], meta["val"]
    state.checkpoint_path = path


def load_model(cls, path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a model of class `cls` from a checkpoint written by `train.fit`."""
    tensors, meta = load(path, device=device)
    if meta["model_class"] != cls.__name__:
        raise ValueError(f"{path} holds a {meta['model_class']}, not a {cls.__name__}")
    model = cls(cls.Config(**meta["model_config"]))
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )
    return model.to(device).eval()
