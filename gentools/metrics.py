"""Metrics in the units the literature uses: nats per example, bits per dimension, and the
Frechet distance of samples in the feature space of a small digits classifier.

Nothing here imports a generative model: functions take the model's callables or its samples.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gentools.data.images import load_images, to_unit
from gentools.files import atomic_write


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


# --- sample quality: the Frechet distance in a small digits classifier's feature space ---------
# Inception features (the FID of Heusel et al. 2017, https://arxiv.org/abs/1706.08500) mean
# nothing on 8x8 digits, so gentools trains its own small classifier on the digits train split,
# deterministically, and caches it: in memory, and on disk as safetensors under $GENTOOLS_CACHE
# (default ~/.cache/gentools), keyed by a hash of its config and of the data.


@dataclass(frozen=True)
class ClassifierConfig:
    channels: int = 16  # channels of the first conv (the second has twice as many)
    features: int = 64  # size of the penultimate layer, the feature space of the distance
    steps: int = 600  # Adam steps on the 1000 training digits, each batch shifted by <= 1 pixel
    batch_size: int = 100  # images per step
    lr: float = 0.003  # Adam learning rate
    seed: int = 0  # seeds the initialisation and the batch order


class DigitsClassifier(nn.Module):
    """A tiny CNN for (N, 1, 8, 8) images in [0, 1]: `features` (N, F) and logits (N, 10)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        c = config.channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),  # (N, c, 8, 8)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),  # (N, 2c, 4, 4)
            nn.Flatten(),
            nn.Linear(2 * c * 16, config.features),
            nn.ReLU(),  # (N, F): the features
        )
        self.head = nn.Linear(config.features, 10)
        self.test_accuracy = math.nan  # set by digits_classifier
        self.levels = 0  # grey levels of the training digits, set by digits_classifier; 0: any

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"the digits classifier takes (N, 1, 8, 8) images, got {x.shape}")
        return self.body(2 * x.float() - 1)  # inputs centred to [-1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 10)


def cache_dir() -> Path:
    """$GENTOOLS_CACHE, else ~/.cache/gentools."""
    return Path(os.environ.get("GENTOOLS_CACHE") or Path.home() / ".cache" / "gentools")


def _digits_unit() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    data = load_images("digits")
    (xtr, ytr), (xte, yte) = data.train.tensors, data.test.tensors
    return to_unit(xtr, data.levels), ytr, to_unit(xte, data.levels), yte, data.levels


def _train_classifier(config: ClassifierConfig, x, y) -> DigitsClassifier:
    """Fixed seed, fixed steps, one thread, on a forked RNG: the same weights on every run.

    Each batch is shifted by up to one pixel (zero padding): without it the net memorised the
    1000 training digits (92% test accuracy); with it, 97%.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = DigitsClassifier(config)
            opt = torch.optim.Adam(model.parameters(), lr=config.lr)
            g = torch.Generator().manual_seed(config.seed)
            per_epoch = len(x) // config.batch_size
            for step in range(config.steps):
                if step % per_epoch == 0:
                    perm = torch.randperm(len(x), generator=g)
                idx = perm[(step % per_epoch) * config.batch_size :][: config.batch_size]
                dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()  # random shift
                xb = F.pad(x[idx], (1, 1, 1, 1))[:, :, dy : dy + 8, dx : dx + 8]  # (B, 1, 8, 8)
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@functools.lru_cache(maxsize=4)
def digits_classifier(config: ClassifierConfig = ClassifierConfig()) -> DigitsClassifier:
    """The trained classifier (eval mode, CPU, `.test_accuracy` and `.levels` set); trained
    once, then cached.

    The disk cache file is named by a hash of the config and the digits data, so a changed
    config or data set never reads stale weights.
    """
    xtr, ytr, xte, yte, levels = _digits_unit()
    key = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    for t in (xtr, ytr, xte, yte):
        key.update(t.numpy().tobytes())
    path = cache_dir() / f"digits-classifier-{key.hexdigest()[:16]}.safetensors"
    if path.is_file():
        model = DigitsClassifier(config)
        model.load_state_dict(safetensors.torch.load_file(str(path)))
        model.eval()
    else:
        model = _train_classifier(config, xtr, ytr)
        # atomic: a parallel run never reads half a file
        atomic_write(path, lambda tmp: safetensors.torch.save_file(model.state_dict(), str(tmp)))
    model.requires_grad_(False)
    model.levels = levels
    with torch.no_grad():
        model.test_accuracy = (model(xte).argmax(1) == yte).float().mean().item()
    return model


def classifier_features(images, classifier: DigitsClassifier | None = None) -> torch.Tensor:
    """Penultimate-layer features (N, F), float64, of images (N, 1, 8, 8) in [0, 1].

    The images are first put on the grey levels the classifier was trained on (`on_levels`),
    so every model's samples reach the distance and the coverage in the form of real digits.
    """
    classifier = digits_classifier() if classifier is None else classifier
    with torch.no_grad():
        x = torch.as_tensor(images).detach().cpu().float()
        if classifier.levels:
            x = on_levels(x, classifier.levels)  # (N, 1, 8, 8) on the data's levels
        return torch.cat(
            [classifier.features(x[i : i + 512]) for i in range(0, len(x), 512)]
        ).double()


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


def frechet_classifier_distance(images_a, images_b, classifier=None) -> float:
    """Frechet distance between two image sets (N, 1, 8, 8) in [0, 1] in the classifier's
    feature space. Like the FID it is biased upward for small sets: compare sets of equal sizes
    (e.g. 1000 samples against the 447 test images, as the train-vs-test reference does)."""
    stats_a = feature_statistics(classifier_features(images_a, classifier))
    stats_b = feature_statistics(classifier_features(images_b, classifier))
    return frechet_distance(*stats_a, *stats_b)


def heldout_reference_fcd(classifier: DigitsClassifier | None = None) -> float:
    """A reference for a model's Frechet classifier distance to the test digits: the distance
    between two sets of real digits that the classifier never saw, the validation split (350)
    against the test split (447).

    It is a reference, not a floor: a model's samples may come closer (the distance is biased
    upward for small sets, and 350 images are fewer than a model's 1000 samples), and the
    training digits are no fair stand-in, since the classifier learned them.
    """
    data = load_images("digits")
    val, test = (to_unit(split.tensors[0], data.levels) for split in (data.val, data.test))
    return frechet_classifier_distance(val, test, classifier)


def class_coverage(images, classifier=None) -> torch.Tensor:
    """Fraction of images (N, 1, 8, 8) in [0, 1] that the classifier puts in each class: (10,)."""
    classifier = digits_classifier() if classifier is None else classifier
    with torch.no_grad():
        pred = classifier.head(classifier_features(images, classifier).float()).argmax(1)
    return torch.bincount(pred, minlength=10).double() / len(pred)  # sums to 1
