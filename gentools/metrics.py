"""Metrics in the units the literature uses: nats per example, bits per dimension.

Nothing here imports a generative model: functions take the model's callables.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm


def bits_per_dim(nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Convert nats per example to bits per dimension: bpd = nats / (D ln 2)."""
    return nats / (dims * math.log(2))


def dataset_nll(
    nll: Callable[..., torch.Tensor],
    dataset: Dataset,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = True,
    **kw,
) -> torch.Tensor:
    """Per-example NLL in nats over a whole (x, y) tensor dataset, in order: shape (N,).

    `nll` is a model's `nll(batch, **kw)`; the batches are tuples of tensors on `device`.
    """
    tensors = dataset.tensors
    out = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="test NLL", disable=not progress):
        batch = tuple(t[start : start + batch_size].to(device) for t in tensors)
        out.append(nll(batch, **kw).cpu())
    return torch.cat(out)


def pixel_histogram_nll(
    train_x: torch.Tensor, test_x: torch.Tensor, levels: int, alpha: float = 1.0
) -> float:
    """Mean test NLL in nats of independent per-pixel histograms fitted on `train_x`.

    The baseline every likelihood model must beat: p(x) = prod_d p_d(x_d), with
    p_d(l) = (count_d(l) + alpha) / (N + alpha * levels) (add-alpha smoothing).
    """
    train, test = train_x.flatten(1).long(), test_x.flatten(1).long()  # (N, D), (M, D)
    counts = torch.zeros(train.shape[1], levels).scatter_add_(
        1, train.T, torch.ones(train.T.shape)
    )  # (D, L)
    log_p = ((counts + alpha) / (len(train) + alpha * levels)).log()  # (D, L)
    return -log_p.gather(1, test.T).sum(0).mean().item()
