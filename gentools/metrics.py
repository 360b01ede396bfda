"""Likelihood figures in the units the literature uses, nats per example and bits per dimension;
images put on the data's grey levels; the maths of the Frechet distance between two Gaussians.

Nothing here imports a generative model: functions take the model's callables or its samples.
The sample judge that scores images in a classifier's feature space is `gentools.judge`.
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


def on_levels(images, levels: int) -> torch.Tensor:
    """Images in [0, 1] put on the data's `levels` grey levels: round((L-1) x) / (L-1).

    Real digits are on 17 levels (0, 1/16, ..., 1), and so are the samples of the likelihood
    models; a GAN's sigmoid outputs are not. The sample-quality metrics put every image set
    through this first, so all of them are compared in the data's own form. Images already on
    the levels come back unchanged, bit for bit.
    """
    x = torch.as_tensor(images).detach().cpu().float()
    return (x.clamp(0, 1) * (levels - 1)).round() / (levels - 1)  # x -> nearest k / (L-1)


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


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, S1) and N(mu2, S2), in float64:

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), where Tr (S1 S2)^(1/2) is computed
    as Tr (S1^(1/2) S2 S1^(1/2))^(1/2): the same eigenvalues, but of a symmetric PSD matrix, so
    `eigh` is stable where the general matrix square root of S1 S2 is not.
    """
    mu1, mu2, s1, s2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    w, v = torch.linalg.eigh(s1)  # S1 = V diag(w) V^T
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T  # S1^(1/2)
    inner = root1 @ s2 @ root1
    inner = (inner + inner.T) / 2  # symmetric up to rounding
    tr_sqrt = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum()  # Tr (S1 S2)^(1/2)
    d2 = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_sqrt
    return max(d2.item(), 0.0)


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64."""
    f = torch.as_tensor(features, dtype=torch.float64)
    return f.mean(0), torch.cov(f.T)
