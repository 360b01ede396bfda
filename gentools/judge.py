"""The sample judge: the Frechet distance of samples in the feature space of a small classifier
of the data set, its held-out reference and histogram baseline, and class coverage.

Inception features (the FID of Heusel et al. 2017, https://arxiv.org/abs/1706.08500) mean
nothing on 8x8 digits and cost minutes per set on a CPU, so gentools trains its own small
classifier on each data set's training split, deterministically, and caches it: in memory,
and on disk as safetensors under $GENTOOLS_CACHE (default ~/.cache/gentools), keyed by a hash
of its config and of the data. Nothing here imports a generative model: functions take the
model's samples.

NOTE: unlike the FID's inputs, every image set is first put on the data's grey levels
(`gentools.metrics.on_levels`), so the samples of every model are scored in the form of real
images.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gentools.data.images import ImageData, load_images, to_unit
from gentools.files import atomic_write
from gentools.metrics import feature_statistics, frechet_distance, on_levels
from gentools.presets import data_kind


@dataclass(frozen=True)
class ClassifierConfig:
    channels: int = 16  # channels of the first conv (the later ones have twice as many)
    features: int = 64  # size of the penultimate layer, the feature space of the distance
    steps: int = 600  # Adam steps (at most 60 epochs), each batch shifted by <= 1 pixel
    batch_size: int = 100  # images per step
    lr: float = 0.003  # Adam learning rate
    seed: int = 0  # seeds the initialisation and the batch order


# the judge of each kind of data (gentools.presets.data_kind): a tiny CNN for the 8x8 digits,
# a small one (about 0.5M weights, 91% test accuracy on Fashion-MNIST) for 28x28 and 32x32
CLASSIFIERS = {
    "digits": ClassifierConfig(),
    "8-bit": ClassifierConfig(channels=32, features=128, steps=1500, batch_size=128, lr=0.002),
}


class ImageClassifier(nn.Module):
    """A small CNN for (N, C, H, W) images in [0, 1]: `features` (N, F) and logits (N, 10).

    Two convolutions (the second of stride 2) for 8x8 images, one more of stride 2 for larger
    ones, then the feature layer.
    """

    def __init__(self, config: ClassifierConfig = ClassifierConfig(),
                 shape: tuple[int, int, int] = (1, 8, 8)):
        super().__init__()
        c, (C, H, W) = config.channels, shape
        layers = [nn.Conv2d(C, c, 3, padding=1), nn.ReLU(),  # (N, c, H, W)
                  nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU()]  # (N, 2c, H/2, W/2)
        h, w = (H + 1) // 2, (W + 1) // 2
        if H > 8:
            layers += [nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.ReLU()]  # H/4, W/4
            h, w = (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(2 * c * h * w, config.features), nn.ReLU()
        )  # (N, F): the features
        self.head = nn.Linear(config.features, 10)
        self.shape = tuple(shape)
        self.test_accuracy = math.nan  # set by image_classifier
        self.levels = 0  # grey levels of the training images, set by image_classifier; 0: any

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"this classifier takes (N, {', '.join(map(str, self.shape))}) "
                             f"images, got {tuple(x.shape)}")
        return self.body(2 * x.float() - 1)  # inputs centred to [-1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 10)


def cache_dir() -> Path:
    """$GENTOOLS_CACHE, else ~/.cache/gentools."""
    return Path(os.environ.get("GENTOOLS_CACHE") or Path.home() / ".cache" / "gentools")


def _train_classifier(config: ClassifierConfig, x, y) -> ImageClassifier:
    """Fixed seed, fixed steps, one thread, on a forked RNG: the same weights on every run.

    Each batch is shifted by up to one pixel (zero padding): without it the net memorised the
    1000 training digits (92% test accuracy); with it, 97%.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    H, W = x.shape[2:]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = ImageClassifier(config, tuple(x.shape[1:]))
            opt = torch.optim.Adam(model.parameters(), lr=config.lr)
            g = torch.Generator().manual_seed(config.seed)
            per_epoch = max(1, len(x) // config.batch_size)
            steps = min(config.steps, 60 * per_epoch)  # at most 60 epochs of a small set
            for step in tqdm(range(steps), desc="training the judge's classifier",
                             disable=len(x) < 10_000, leave=False):
                if step % per_epoch == 0:
                    perm = torch.randperm(len(x), generator=g)
                idx = perm[(step % per_epoch) * config.batch_size :][: config.batch_size]
                dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()  # random shift
                xb = F.pad(x[idx].float(), (1, 1, 1, 1))[:, :, dy : dy + H, dx : dx + W]
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


_classifiers: dict[str, ImageClassifier] = {}  # the in-memory cache, by the disk file's name


def image_classifier(images: ImageData | None = None,
                     config: ClassifierConfig | None = None) -> ImageClassifier:
    """The trained classifier of a data set (eval mode, CPU, `.test_accuracy` and `.levels`
    set), trained on its training split once, then cached; `images` defaults to the digits,
    `config` to the data's entry of :data:`CLASSIFIERS`.

    The cache file is named by a hash of the config and the data, so a changed config or data
    set never reads stale weights.
    """
    images = load_images("digits") if images is None else images
    config = CLASSIFIERS[data_kind(images.name)] if config is None else config
    (xtr, ytr), (xte, yte) = images.train.tensors, images.test.tensors
    key = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    for t in (to_unit(xtr, images.levels), ytr, to_unit(xte, images.levels), yte):
        key.update(t.numpy().tobytes())
    name = f"{images.name}-classifier-{key.hexdigest()[:16]}.safetensors"
    if name in _classifiers:
        return _classifiers[name]
    path = cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:  # parallel runs train it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            model = ImageClassifier(config, images.shape)
            model.load_state_dict(safetensors.torch.load_file(str(path)))
            model.eval()
        else:
            model = _train_classifier(config, to_unit(xtr, images.levels), ytr)
            atomic_write(path, lambda tmp: safetensors.torch.save_file(model.state_dict(),
                                                                       str(tmp)))
    model.requires_grad_(False)
    model.levels = images.levels
    with torch.no_grad():
        test = to_unit(xte, images.levels)
        pred = torch.cat([model(test[i : i + 1024]).argmax(1) for i in range(0, len(test), 1024)])
        model.test_accuracy = (pred == yte).float().mean().item()
    _classifiers[name] = model
    return model


def digits_classifier(config: ClassifierConfig = ClassifierConfig()) -> ImageClassifier:
    """The digits' classifier: `image_classifier` of the 8x8 digits."""
    return image_classifier(load_images("digits"), config)


def clear_classifier_cache() -> None:
    """Forget the classifiers held in memory (the disk cache stays)."""
    _classifiers.clear()


def classifier_features(images, classifier: ImageClassifier | None = None) -> torch.Tensor:
    """Penultimate-layer features (N, F), float64, of images (N, C, H, W) in [0, 1].

    The images are first put on the grey levels the classifier was trained on (`on_levels`),
    so every model's samples reach the distance and the coverage in the form of real images.
    """
    classifier = digits_classifier() if classifier is None else classifier
    with torch.no_grad():
        x = torch.as_tensor(images).detach().cpu().float()
        if classifier.levels:
            x = on_levels(x, classifier.levels)  # (N, C, H, W) on the data's levels
        return torch.cat(
            [classifier.features(x[i : i + 512]) for i in range(0, len(x), 512)]
        ).double()


def frechet_classifier_distance(images_a, images_b, classifier=None) -> float:
    """Frechet distance between two image sets (N, C, H, W) in [0, 1] in the classifier's
    feature space. Like the FID it is biased upward for small sets: compare a model's samples
    with the reference of as many real images (`heldout_reference_fcd`)."""
    stats_a = feature_statistics(classifier_features(images_a, classifier))
    stats_b = feature_statistics(classifier_features(images_b, classifier))
    return frechet_distance(*stats_a, *stats_b)


def heldout_reference_fcd(classifier: ImageClassifier | None = None,
                          images: ImageData | None = None, n: int | None = None) -> float:
    """A reference for a model's Frechet classifier distance to the test images: the distance
    between two sets of real images that the classifier never saw, the first `n` images of the
    validation split (all of it when `n` is None or larger) against the test split. `images`
    defaults to the digits: their 350 validation digits against the 447 test digits.

    It is a reference, not a floor: a model's samples may come closer (the distance is biased
    upward for small sets, and 350 digits are fewer than a model's 1000 samples), and the
    training images are no fair stand-in, since the classifier learned them. Give `n` the
    number of samples a model is judged on, so that both sets have the same size.
    """
    data = load_images("digits") if images is None else images
    val, test = (to_unit(split.tensors[0], data.levels) for split in (data.val, data.test))
    return frechet_classifier_distance(val[:n], test, classifier)


def histogram_samples(images: ImageData, n: int, generator: torch.Generator | None = None,
                      alpha: float = 1.0) -> torch.Tensor:
    """n images (n, C, H, W) in [0, 1] drawn pixel by pixel from the per-pixel histograms of
    the training split, the model of `pixel_histogram_nll`: every pixel right, no structure.

    Their Frechet distance shows where "no structure" lies on a data set's scale.
    """
    train = images.train.tensors[0].flatten(1).long()  # (N, D)
    counts = torch.zeros(train.shape[1], images.levels).scatter_add_(
        1, train.T, torch.ones(train.T.shape)
    )  # (D, L)
    p = (counts + alpha) / (len(train) + alpha * images.levels)  # (D, L), add-alpha smoothing
    levels = torch.multinomial(p, n, replacement=True, generator=generator)  # (D, n)
    return to_unit(levels.T.reshape(n, *images.shape), images.levels)


def predicted_classes(images, classifier=None) -> torch.Tensor:
    """The classifier's class (N,) of each image (N, C, H, W) in [0, 1], on the data's levels."""
    classifier = digits_classifier() if classifier is None else classifier
    with torch.no_grad():
        return classifier.head(classifier_features(images, classifier).float()).argmax(1)


def class_coverage(images, classifier=None) -> torch.Tensor:
    """Fraction of images (N, C, H, W) in [0, 1] that the classifier puts in each class: (10,)."""
    pred = predicted_classes(images, classifier)
    return torch.bincount(pred, minlength=10).double() / len(pred)  # sums to 1


@dataclass
class Judge:
    """What a sample-quality figure is measured against, for one data set: the classifier, the
    test images in [0, 1], the held-out reference and the histogram baseline's distance."""

    classifier: ImageClassifier
    test: torch.Tensor  # (M, C, H, W) in [0, 1]
    reference: float  # heldout_reference_fcd with as many validation images as samples
    baseline: float  # the distance of as many histogram_samples

    def fcd(self, samples: torch.Tensor) -> float:
        return frechet_classifier_distance(samples, self.test, self.classifier)

    def coverage(self, samples: torch.Tensor) -> torch.Tensor:
        return class_coverage(samples, self.classifier)

    def accuracy(self, samples: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of samples the classifier puts in the class they were asked for."""
        return (predicted_classes(samples, self.classifier) == labels.cpu()).float().mean().item()


def sample_judge(images: ImageData, n: int = 1000, seed: int = 0) -> Judge:
    """The judge of `n` samples on `images`: its classifier (trained on a first use), test
    images, reference and histogram baseline (n draws from a generator seeded with `seed`)."""
    classifier = image_classifier(images)
    test = to_unit(images.test.tensors[0], images.levels)
    noise = histogram_samples(images, n, torch.Generator().manual_seed(seed))
    return Judge(classifier, test, heldout_reference_fcd(classifier, images, n),
                 frechet_classifier_distance(noise, test, classifier))
