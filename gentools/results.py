"""Typed results: the figures each notebook reports, named, typed and with their units.

A notebook's evaluation ends in one of these dataclasses:

    results = PixelCNNResults(test_nll=nll, test_bpd=bpd, val_nll=..., ...)
    print(results)            # one line per figure, with its unit
    record(results, out_dir)  # metrics.json, a flat {name: number}

A misspelt or missing figure is a TypeError where the dataclass is built, and a figure that
is not a finite number a ValueError that names it, so nothing reaches metrics.json unchecked.
`<Class>.from_metrics` reads a run's metrics.json back, and refuses missing and unknown
names the same way. The comparison then asks a result by type: a `Likelihood` has a test NLL
(`nll` nats per image, `bpd` bits/dim, exact or a bound), a `SampleQuality` the Fréchet
classifier distance of its samples and the class coverage.

metrics.json stays flat. A per-class tuple is written as ``coverage_0``, ``coverage_1``, ...;
a mapping (the GAN's last validation losses) as ``val_<name>``; a nested part (the
flow-matching model of the diffusion run) with its field's name as a prefix: ``flow_fcd``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Results")


def figure(unit: str, optional: bool = False) -> Any:
    """A field holding one number in `unit`; optional ones may be None (then not recorded)."""
    return field(default=None if optional else MISSING, metadata={"form": "number", "unit": unit})


def per_class(unit: str) -> Any:
    """A field holding one number per class, recorded as ``<name>_0``, ``<name>_1``, ..."""
    return field(metadata={"form": "tuple", "unit": unit})


def named(unit: str) -> Any:
    """A field holding named numbers, recorded as ``<name>_<key>``."""
    return field(metadata={"form": "mapping", "unit": unit})


def part(cls: type[Results]) -> Any:
    """A field holding the results of a second model, or None; recorded as ``<name>_<figure>``."""
    return field(default=None, metadata={"form": "part", "type": cls})


def number(name: str, value: object) -> float:
    """`value` as a float; ValueError naming `name` unless it is a finite real number."""
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # a 0-d numpy array or torch tensor
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"figure {name!r} must be a number (got {type(value).__name__} {value!r})")
    if not math.isfinite(value := float(value)):
        raise ValueError(f"figure {name!r} must be finite (got {value})")
    return value


@dataclass(frozen=True, kw_only=True)
class Results:
    """The base of every family's results: checks, flattening, printing and reading back."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value, form = getattr(self, f.name), f.metadata.get("form")
            if form is None:
                raise TypeError(f"{type(self).__name__}.{f.name} is not declared with "
                                "figure(), per_class(), named() or part()")
            if value is None and f.default is MISSING:
                raise ValueError(f"figure {f.name!r} is required (got None)")
            if value is None:
                continue
            if form == "number":
                value = number(f.name, value)
            elif form == "tuple":
                value = tuple(number(f"{f.name}_{i}", v) for i, v in enumerate(value))
            elif form == "mapping":
                value = {k: number(f"{f.name}_{k}", v) for k, v in value.items()}
            elif not isinstance(value, f.metadata["type"]):
                raise TypeError(f"{f.name} must be {f.metadata['type'].__name__} or None")
            object.__setattr__(self, f.name, value)

    def items(self) -> Iterator[tuple[str, float, str]]:
        """(name in metrics.json, value, unit) of every recorded figure, in field order."""
        for f in fields(self):
            value, form = getattr(self, f.name), f.metadata["form"]
            if value is None:
                continue
            if form == "number":
                yield f.name, value, f.metadata["unit"]
            elif form == "part":
                yield from ((f"{f.name}_{n}", v, u) for n, v, u in value.items())
            else:
                named_values = value.items() if form == "mapping" else enumerate(value)
                yield from ((f"{f.name}_{k}", v, f.metadata["unit"]) for k, v in named_values)

    def metrics(self) -> dict[str, float]:
        """The flat {name: number} that metrics.json holds."""
        return {name: value for name, value, _ in self.items()}

    def __str__(self) -> str:
        width = max((len(name) for name, _, _ in self.items()), default=0)
        return "\n".join(f"{name:>{width}}: {value:.6g} {unit}".rstrip()
                         for name, value, unit in self.items())

    @classmethod
    def from_metrics(cls: type[R], metrics: Mapping[str, float]) -> R:
        """The results that `metrics` (a run's metrics.json) holds; ValueError for a missing
        figure or a name that is none of this class's."""
        left, kwargs = dict(metrics), {}
        order = {"number": 0, "tuple": 1, "part": 2, "mapping": 3}  # exact names first
        for f in sorted(fields(cls), key=lambda f: order[f.metadata["form"]]):
            form, prefix = f.metadata["form"], f"{f.name}_"
            if form == "number" and f.name in left:
                kwargs[f.name] = left.pop(f.name)
            elif form == "number" and f.default is MISSING:
                raise ValueError(f"{cls.__name__}: figure {f.name!r} is missing")
            elif form == "tuple":
                kwargs[f.name] = []
                while f"{prefix}{len(kwargs[f.name])}" in left:
                    kwargs[f.name].append(left.pop(f"{prefix}{len(kwargs[f.name])}"))
            elif form in ("part", "mapping"):
                mine = {k[len(prefix):]: left.pop(k) for k in list(left) if k.startswith(prefix)}
                if form == "mapping":
                    kwargs[f.name] = mine
                elif mine:
                    kwargs[f.name] = f.metadata["type"].from_metrics(mine)
        if left:
            raise ValueError(f"{cls.__name__} has no figure named {', '.join(sorted(left))}")
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class Training(Results):
    train_seconds: float = figure("s")  # wall time of `train.fit`, evaluations included
    steps: int = figure("")  # optimisation steps taken


@dataclass(frozen=True, kw_only=True)
class Likelihood(Results):
    """A test NLL: `nll` nats per image and `bpd` bits/dim, `kind` "exact" or "bound"."""

    test_nll: float = figure("nats/image")
    test_bpd: float = figure("bits/dim")
    kind: ClassVar[str] = "exact"

    @property
    def nll(self) -> float:
        return self.test_nll

    @property
    def bpd(self) -> float:
        return self.test_bpd

    @property
    def detail(self) -> str:
        """How the number is computed, for a bound; "" for an exact NLL."""
        return ""


@dataclass(frozen=True, kw_only=True)
class SampleQuality(Results):
    """The samples judged by the data set's classifier (`judge.sample_judge`)."""

    fcd: float = figure("")  # Fréchet classifier distance of the samples to the test images
    coverage_min: float = figure("share")  # of the samples in the rarest class
    coverage_max: float = figure("share")  # ... and in the most frequent one


@dataclass(frozen=True, kw_only=True)
class Anchors(Results):
    fcd_heldout_reference: float = figure("")  # held-out real images to the test images
    fcd_histogram_baseline: float = figure("")  # per-pixel histogram samples to the test images


@dataclass(frozen=True, kw_only=True)
class HistogramBaseline(Results):
    baseline_histogram_nll: float = figure("nats/image")  # the per-pixel histogram's exact NLL


@dataclass(frozen=True, kw_only=True)
class VAEResults(Training, HistogramBaseline, Anchors, SampleQuality, Likelihood):
    kind: ClassVar[str] = "bound"
    test_nelbo: float = figure("nats/image")
    test_kl: float = figure("nats/image")
    val_nelbo: float = figure("nats/image")
    test_nelbo_bpd: float = figure("bits/dim")
    iwae_k: int = figure("samples")  # importance samples of the test bound `test_nll`
    baseline_histogram_bpd: float = figure("bits/dim")
    fcd_decoder_mean: float = figure("")  # the decoder means instead of draws

    @property
    def detail(self) -> str:
        return f"IWAE, k={self.iwae_k:g}"


@dataclass(frozen=True, kw_only=True)
class GANResults(Training, Anchors, SampleQuality):
    classifier_test_accuracy: float = figure("share")  # of the judge's classifier
    coverage: tuple[float, ...] = per_class("share")  # class shares of the samples
    val: Mapping[str, float] = named("")  # the last validation losses


@dataclass(frozen=True, kw_only=True)
class PixelCNNResults(Training, HistogramBaseline, Likelihood):
    val_nll: float = figure("nats/image")
    baseline_histogram_bpd: float = figure("bits/dim")


@dataclass(frozen=True, kw_only=True)
class FlowResults(Training, HistogramBaseline, Likelihood):
    """`test_nll` is the bound with one dequantization draw, `test_nll_iw` with `iw_k`."""

    kind: ClassVar[str] = "bound"
    test_nll_iw: float = figure("nats/image")
    test_bpd_iw: float = figure("bits/dim")
    val_nll: float = figure("nats/image")
    baseline_histogram_bpd: float = figure("bits/dim")
    baseline_uniform_nll: float = figure("nats/image")
    iw_k: int = figure("samples")

    @property
    def nll(self) -> float:
        return self.test_nll_iw

    @property
    def bpd(self) -> float:
        return self.test_bpd_iw

    @property
    def detail(self) -> str:
        return f"importance-weighted, K={self.iw_k:g}"


@dataclass(frozen=True, kw_only=True)
class FlowMatchingResults(SampleQuality):
    train_seconds: float = figure("s")
    fcd_guided: float = figure("")  # guided samples, as many of each class
    guided_accuracy: float = figure("share")  # of guided samples in the class asked for


@dataclass(frozen=True, kw_only=True)
class DiffusionResults(Training, HistogramBaseline, Anchors, SampleQuality, Likelihood):
    kind: ClassVar[str] = "bound"
    test_nll_se: float = figure("nats/image")  # standard error of `test_nll`
    test_nll_via_class: float | None = figure("nats/image", optional=True)
    nll_draws: int = figure("terms")  # KL terms drawn per test image; 0: all of them
    val_mse: float = figure("")
    fcd_guided: float = figure("")
    guided_accuracy: float = figure("share")
    flow: FlowMatchingResults | None = part(FlowMatchingResults)  # None: flow_steps 0

    @property
    def detail(self) -> str:
        return f"variational, {self.nll_draws:g} KL terms drawn per image"


@dataclass(frozen=True, kw_only=True)
class WaveNetResults(Training):
    test_bps: float = figure("bits/sample")
    val_bps: float = figure("bits/sample")
    uniform_bps: float = figure("bits/sample")
    histogram_bps: float = figure("bits/sample")
    noise_floor_bps: float | None = figure("bits/sample", optional=True)  # synth data only
    pitch_temperature: float = figure("")
    pitch_within_semitone: float = figure("share")
    pitch_median_abs_cents: float = figure("cents")
    pitch_within_semitone_t1: float = figure("share")  # at temperature 1
    pitch_median_abs_cents_t1: float = figure("cents")
    envelope: Mapping[str, float] = named("")  # generated, and `<name>_real` for real clips
    generation_seconds: float = figure("s")


@dataclass(frozen=True, kw_only=True)
class GPTResults(Training):
    val_loss: float = figure("nats/token")
    val_ppl: float = figure("")
    val_bpc: float = figure("bits/char")
    unigram_loss: float = figure("nats/token")
    uniform_loss: float = figure("nats/token")
    gen_cached_seconds: float = figure("s")
    gen_uncached_seconds: float = figure("s")
    gen_same_tokens: float = figure("")  # 1.0: the KV cache gave the same tokens


@dataclass(frozen=True, kw_only=True)
class BERTResults(Training):
    mask_acc: float = figure("share")  # at [MASK] inputs
    mask_acc_baseline: float = figure("share")  # the most frequent training token there
    mask_acc_over_baseline: float = figure("")
    mask_top5: float = figure("share")
    mask_loss: float = figure("nats/token")
    mask_unigram_loss: float = figure("nats/token")
    random_acc: float = figure("share")  # at random-token inputs
    unchanged_acc: float = figure("share")  # at unchanged inputs
    val_loss: float = figure("nats/token")
    val_ppl: float = figure("")
