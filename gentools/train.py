"""The one training loop for every gentools model.

Nothing here knows which model it trains: a model brings `training_step` (the base
class gives the usual one), `loss` for evaluation and `configure_optimizers`. The
loop owns the device, bfloat16 autocast on CUDA, gradient clipping, the learning
rate schedule, evaluation, atomic checkpoints and resume (their layout is
`gentools.checkpoint`'s), the NaN/Inf guard and the stop flag. Callbacks (the live
monitor, say) get the whole `State`.

Batches are drawn by step: step s reads a fixed slice of a permutation seeded by
(seed, epoch), so a resumed run sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate
from tqdm.auto import tqdm

from gentools import checkpoint, repro, signals


def _checkpoint_seconds() -> float:
    return float(os.environ.get("GENTOOLS_CHECKPOINT_SECONDS", 60))


@dataclass
class TrainConfig:
    steps: int = 1000  # optimisation steps in total (a resumed run counts its earlier steps)
    batch_size: int = 64  # examples per step
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup: int = 0  # steps of linear warm-up from 0 to lr
    schedule: str = "cosine"  # "cosine": decay to lr * min_lr_ratio at the end; "constant"
    min_lr_ratio: float = 0.1  # final lr / peak lr for the cosine schedule
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    eval_every: int = 200  # evaluate on val every N steps, and always at the end
    eval_batches: int = 0  # val batches per evaluation; 0 = the whole val set
    checkpoint_every: int = 0  # also save every N steps (0: only at the end or on stop)
    # also save after every N seconds of training (0: never); $GENTOOLS_CHECKPOINT_SECONDS or 60
    checkpoint_seconds: float = field(default_factory=_checkpoint_seconds)
    out_dir: str | None = None  # folder for checkpoint.safetensors; None: no checkpoints
    resume: bool = True  # continue from out_dir's checkpoint when there is one
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda", "cuda:N", "mps"
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model's submodules in place (meant for CUDA)
    seed: int = 0  # seeds the batch order and the model's randomness
    threads: int = 0  # torch intra-op threads; 0: $GENTOOLS_THREADS or repro.DEFAULT_THREADS
    progress: bool = True  # show a tqdm progress bar

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> TrainConfig:
        """The config from a notebook's parameters: every field with a parameter of its name
        (steps, lr, seed, out_dir, resume, ...), then ``overrides``."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in params.items() if k in names}, **overrides})


@dataclass
class State:
    """Everything a callback may look at or change."""

    model: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    cfg: TrainConfig
    device: torch.device
    step: int = 0  # optimisation steps done
    metrics: dict[str, float] = field(default_factory=dict)  # last train step
    val: dict[str, float] = field(default_factory=dict)  # last evaluation
    history: list[dict] = field(default_factory=list)  # {"step","split","time",**metrics}
    stop: bool = False  # set True to end after the current step (checkpoint kept)
    elapsed: float = 0.0  # training seconds, summed over resumed segments
    checkpoint_path: Path | None = None  # last good checkpoint written


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/Inf; the last good checkpoint is kept."""


class _NonFinite(Exception):
    pass


def _signals_end_the_step(received: list[int]):
    """While training, SIGINT (a kernel interrupt) and SIGTERM (a scheduler's notice before
    it kills the job) are noted in ``received`` so the loop can stop after the current step
    with a checkpoint; a second signal interrupts at once."""

    def note(signum, frame):
        if received:
            raise KeyboardInterrupt(f"signal {signum} received twice")
        received.append(signum)

    return signals.handled(note)


class Callback:
    """Base for callbacks: every hook receives the State and may set `state.stop`."""

    def on_start(self, state: State) -> None: ...
    def on_step(self, state: State) -> None: ...
    def on_eval(self, state: State) -> None: ...
    def on_end(self, state: State) -> None: ...


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier on the peak lr at `step`: linear warm-up, then cosine or constant."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    # lr_t = lr * (r + (1 - r) * (1 + cos(pi t)) / 2)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """The example indices of training step `step` (drop-last epochs of a seeded permutation)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({n})")
    epoch, pos = divmod(step, per_epoch)
    return _epoch_order(n, seed, epoch)[pos * batch_size : (pos + 1) * batch_size].clone()


@functools.lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded permutation of one epoch, drawn once per epoch rather than every step."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def compile_in_place(model: torch.nn.Module) -> None:
    """torch.compile every module the model calls, in place (`nn.Module.compile`): its
    children, and the members of children that are ModuleLists or ModuleDicts (a container is
    never called). The model itself is not compiled: `fit` calls its `training_step`, never its
    `forward`.

    Each module keeps its place and its parameter names, so checkpoints stay the same; a copy
    (`copy.deepcopy`) runs its own weights, uncompiled.

    NOTE: in torch 2.13 `Module.compile` captures no graph for a module whose forward is one of
    torch's own (Linear, Embedding, a Sequential of torch layers: pytorch/pytorch#150915), and
    such a module runs as before. The gentools modules (Transformer and PixelCNN blocks, WaveNet
    layers, flow steps, the GAN's networks) compile; the VAE's Sequential encoder and decoder
    wait for that fix.
    """
    for child in model.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            compile_in_place(child)
        else:
            child.compile()


def take(dataset: Dataset, idx: torch.Tensor) -> Any:
    """A batch of `dataset` at `idx`: sliced directly for a TensorDataset."""
    if isinstance(dataset, TensorDataset):
        return tuple(t[idx] for t in dataset.tensors)
    return default_collate([dataset[int(i)] for i in idx])


def to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, cfg: TrainConfig, device) -> dict:
    """Mean of `model.loss` metrics over the val set (or its first `eval_batches`)."""
    totals: dict[str, float] = {}
    count = 0
    n_batches = math.ceil(len(dataset) / cfg.batch_size)
    if cfg.eval_batches:
        n_batches = min(n_batches, cfg.eval_batches)
    for b in range(n_batches):
        idx = torch.arange(b * cfg.batch_size, min(len(dataset), (b + 1) * cfg.batch_size))
        out = model.loss(to_device(take(dataset, idx), device))
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(idx)
        count += len(idx)
    return {k: v / count for k, v in totals.items()}


def fit(model, data, cfg: TrainConfig, callbacks: list | tuple = ()) -> State:
    """Train `model` on `data.train`, evaluating on `data.val`; returns the final State."""
    for state in _training(model, data, cfg, callbacks):  # noqa: B007 (the last is returned)
        pass
    return state


async def fit_async(model, data, cfg: TrainConfig, callbacks: list | tuple = ()) -> State:
    """`fit`, handing the event loop a turn after every step. In a notebook,
    ``state = await fit_async(...)`` keeps widgets live while it trains: ipykernel handles a
    widget's messages (the monitor's Stop button) whenever an awaiting cell yields, and
    queues the next cells behind this one as usual."""
    for state in _training(model, data, cfg, callbacks):  # noqa: B007 (the last is returned)
        await asyncio.sleep(0)
    return state


def _training(model, data, cfg: TrainConfig, callbacks: list | tuple):
    """`fit`'s loop as a generator: yields the State after every step, and once more at the
    end, after the final evaluation, checkpoint and callbacks."""
    repro.set_threads(cfg.threads)
    device = repro.resolve_device(cfg.device)
    model.to(device)
    if cfg.compile:
        compile_in_place(model)
    state = State(model, model.configure_optimizers(cfg.lr, cfg.weight_decay), cfg, device)
    for opt in state.optimizers.values():
        for group in opt.param_groups:
            group.setdefault("peak_lr", group["lr"])
    repro.seed_everything(cfg.seed)
    ckpt = Path(cfg.out_dir) / checkpoint.CHECKPOINT if cfg.out_dir else None
    if ckpt and cfg.resume and ckpt.exists():
        checkpoint.restore_state(state, ckpt)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.amp and device.type == "cuda"
        else contextlib.nullcontext()
    )

    def optimize(loss: torch.Tensor, name: str = "main") -> None:
        if not torch.isfinite(loss):
            raise _NonFinite(f"the loss is {loss.item()}")
        opt = state.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            params = [p for g in opt.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if not torch.isfinite(norm):
                raise _NonFinite(f"the gradient norm of {name!r} is {norm.item()}")
        opt.step()

    def run_eval() -> None:
        model.eval()
        # Evaluation and its callbacks draw from a forked RNG, so they never shift training's.
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        ):
            torch.manual_seed(cfg.seed + 1)
            state.val = evaluate(model, data.val, cfg, device)
            state.history.append(
                {"step": state.step, "split": "val", "time": state.elapsed, **state.val}
            )
            _call(callbacks, "on_eval", state)
        model.train()

    _call(callbacks, "on_start", state)
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not cfg.progress, desc="train")
    model.train()
    t0 = time.perf_counter() - state.elapsed
    saved_at = state.elapsed  # training seconds at the last checkpoint
    received: list[int] = []  # SIGINT / SIGTERM received while training
    try:
        with _signals_end_the_step(received):
            while state.step < cfg.steps and not state.stop and not received:
                for opt in state.optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = group["peak_lr"] * lr_factor(state.step, cfg)
                idx = batch_indices(len(data.train), cfg.batch_size, state.step, cfg.seed)
                batch = to_device(take(data.train, idx), device)
                with autocast:
                    out = model.training_step(batch, optimize)
                state.metrics = {k: float(v.detach()) for k, v in out.items()}
                state.step += 1
                state.elapsed = time.perf_counter() - t0
                state.history.append(
                    {"step": state.step, "split": "train", "time": state.elapsed, **state.metrics}
                )
                bar.update(1)
                bar.set_postfix(loss=f"{state.metrics['loss']:.4g}", refresh=False)
                _call(callbacks, "on_step", state)
                if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
                    run_eval()
                every_n = cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
                every_s = 0 < cfg.checkpoint_seconds <= state.elapsed - saved_at
                if ckpt and (every_n or every_s):
                    checkpoint.save_state(state, ckpt)
                    saved_at = state.elapsed
                yield state
    except _NonFinite as err:
        kept = (
            f"the last good checkpoint (step {checkpoint.saved_step(ckpt)}) is kept at {ckpt}"
            if ckpt and ckpt.exists()
            else "no checkpoint was written"
        )
        raise TrainingDiverged(
            f"training stopped at step {state.step + 1}: {err}. Nothing was saved from this "
            f"step; {kept}. Try a lower lr or a smaller grad_clip."
        ) from None
    finally:
        bar.close()
    if received:  # interrupted: keep this step's state for a resume, and stop the caller too
        if ckpt:
            checkpoint.save_state(state, ckpt)
        where = f"; checkpoint at {ckpt}" if ckpt else " (no out_dir, so no checkpoint)"
        raise KeyboardInterrupt(f"training interrupted by signal {received[0]} after step "
                                f"{state.step}{where}")
    if state.history and state.history[-1]["split"] != "val":
        run_eval()  # stopped early: evaluate where we are
    if ckpt:
        checkpoint.save_state(state, ckpt)
    _call(callbacks, "on_end", state)
    yield state


def _call(callbacks, hook: str, state: State) -> None:
    for cb in callbacks:
        getattr(cb, hook, lambda s: None)(state)
