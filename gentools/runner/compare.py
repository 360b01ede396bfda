"""One table across the image families: the same data split, the same units, several seeds.

`collect` finds, for each family and seed, the completed run of the family's notebook with
exactly the parameters asked for, in `<runs>/<notebook>/<digest>` as a sweep leaves it, or
runs it there with `jobs.run`; the digest covers the notebook's bytes and the parameters.

Each run gives one row of per-seed values, all read from the run itself:
- parameters: counted on the model rebuilt from the run's checkpoint (every network trained,
  so the GAN counts its discriminator and the flow its dequantizer; a weight average is not
  trained and not counted), with two facts of that model that weigh on a ranking: whether it
  trained with the digit labels, and whether it samples with averaged weights (EMA);
- training seconds and the test NLL (nats per image and bits/dim): the run's metrics.json, read
  back as the family's typed results (`gentools.results`), whose class says what the NLL is
  (exact or a bound, and how it was computed);
- the Frechet classifier distance of samples to the test images and the class coverage, in
  the feature space of the data set's classifier (`judge.sample_judge`): the run's
  metrics.json when the notebook records them from as many samples as asked, else computed
  here from the checkpoint, `model.sample(n, generator=Generator().manual_seed(seed))`.

`summarise` turns the rows into mean and sample standard deviation over the seeds, and
`markdown_table` into the table, with the two anchors of `anchors` (real images the classifier
never saw, and the per-pixel histogram) as rows of their own. Nothing here trains a model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from gentools import checkpoint, metrics, presets
from gentools import results as typed
from gentools.checkpoint import CHECKPOINT, load_model
from gentools.data import load_images
from gentools.files import read_json
from gentools.judge import Judge, sample_judge
from gentools.models.diffusion import Diffusion
from gentools.models.flow import Flow
from gentools.models.gan import GAN
from gentools.models.pixelcnn import PixelCNN
from gentools.models.vae import VAE
from gentools.parameters import Notebook, load_notebook
from gentools.record import METRICS
from gentools.results import Likelihood, Results, SampleQuality
from gentools.runner import folders, jobs
from gentools.runner.folders import MANIFEST
from gentools.runner.params import tiny_parameters


@dataclass(frozen=True)
class Family:
    name: str  # the row's label
    notebook: str  # the notebook's stem in notebooks/
    model: type  # the model class that checkpoint.load_model rebuilds from the run's checkpoint
    results: type[Results]  # what the notebook records, read back from the run's metrics.json
    part: str = ""  # a second model of a run: its field of `results` and checkpoint folder

    def __post_init__(self) -> None:
        if self.part and self.part not in {f.name for f in fields(self.results)}:
            raise ValueError(f"{self.results.__name__} has no part {self.part!r}")

    @property
    def figures(self) -> type[Results]:
        """The class of this family's own results (the part's, for a second model)."""
        if not self.part:
            return self.results
        return next(f for f in fields(self.results) if f.name == self.part).metadata["type"]

    @property
    def kind(self) -> str:
        """What its test NLL is: "exact", "bound", or "none" without a likelihood."""
        return self.figures.kind if issubclass(self.figures, Likelihood) else "none"

    @property
    def key(self) -> str:
        """The family's name in saved results: its notebook, plus the part if it has one."""
        return self.notebook + (f"-{self.part}" if self.part else "")

    def checkpoint(self, run: Path) -> Path:
        """The checkpoint of this family's model in a run folder."""
        return (run / self.part if self.part else run) / CHECKPOINT

    def read(self, run: Path) -> Results:
        """This family's results in a run folder's metrics.json."""
        results = self.results.from_metrics(read_json(run / METRICS))
        return getattr(results, self.part) if self.part else results


FAMILIES = (
    Family("VAE", "vae", VAE, typed.VAEResults),
    Family("GAN", "gan", GAN, typed.GANResults),
    Family("PixelCNN", "pixelcnn", PixelCNN, typed.PixelCNNResults),
    Family("Flow", "flow", Flow, typed.FlowResults),
    Family("Diffusion", "diffusion", Diffusion, typed.DiffusionResults),
    Family("Flow matching", "diffusion", Diffusion, typed.DiffusionResults, part="flow"),
)

# per-seed values of a row, in table order: (key, column title, decimals)
COLUMNS = (
    ("train_seconds", "training time (s)", 1),
    ("nll", "test NLL (nats/image)", 2),
    ("bpd", "bits/dim", 3),
    ("fcd", "Fréchet classifier distance", 2),
    ("coverage_min", "smallest class share", 3),
    ("coverage_max", "largest class share", 3),
)


@dataclass
class Result:
    family: Family  # which model
    seed: int  # the run's seed
    run: Path  # the run folder
    reused: bool  # True: found completed in the runs folder; False: run now
    parameters: int  # trainable numbers in the model
    labels_seen: bool  # trained with the class labels
    ema: bool  # evaluated and sampled with a moving average of its weights
    values: dict[str, float]  # COLUMNS keys -> this run's value (NaN where the family has none)
    quality_source: str  # "recorded by the notebook" or "computed from the checkpoint"
    n_samples: int  # samples behind fcd and the coverage
    kind: str  # the NLL's kind with its detail, e.g. "bound (IWAE, k=1000)"
    samples: torch.Tensor = field(repr=False)  # (32, 1, 8, 8) in [0, 1] for the sample grid


def family(name: str) -> Family:
    """The family whose notebook stem or label is `name` (case-insensitive)."""
    for f in FAMILIES:
        if name.lower() in (f.notebook, f.name.lower()):
            return f
    raise ValueError(f"unknown family {name!r}; known: {', '.join(f.notebook for f in FAMILIES)}")


def run_parameters(fam: Family, size: str, seed: int, device: str, n_samples: int,
                   data: str = "digits", data_dir: str = "",
                   notebook: Notebook | None = None) -> dict:
    """The full parameters (out_dir aside) of the run the comparison wants: size "tiny" takes
    the notebook's own test parameters, any other only sets `size`; the GAN draws
    `n_samples` samples for its recorded distance. ``notebook``: the family's, loaded."""
    notebook = notebook or load_notebook(fam.notebook)
    asked = tiny_parameters(notebook.path) if size == "tiny" else {"size": size}
    asked.update(seed=seed, device=device, data=data, data_dir=data_dir)
    if "n_samples" in notebook.params:
        asked["n_samples"] = n_samples
    return jobs.check_run(notebook, asked)


def sample_quality(model, n: int, seed: int, judge: Judge) -> dict:
    """FCD of n seeded samples to the test images, and the smallest and largest class share."""
    samples = model.sample(n, generator=torch.Generator().manual_seed(seed)).cpu()
    coverage = judge.coverage(samples)
    return {"fcd": judge.fcd(samples),
            "coverage_min": coverage.min().item(), "coverage_max": coverage.max().item()}


def anchors(data: str, data_dir: str, n_samples: int, seed: int) -> dict[str, dict]:
    """The table's two anchors on a data set: held-out real images (the reference distance of
    as many validation images, and no likelihood) and the per-pixel histogram (the distance of
    as many of its samples, and its exact test NLL)."""
    images = load_images(data, data_dir or None)
    judge = sample_judge(images, n_samples, seed)
    nll = metrics.pixel_histogram_nll(images.train.tensors[0], images.test.tensors[0],
                                      images.levels)
    dims = images.test.tensors[0][0].numel()
    n_real = min(n_samples, len(images.val))
    return {f"held-out real images ({n_real} val)": {"fcd": judge.reference},
            "per-pixel histogram": {"fcd": judge.baseline, "nll": nll,
                                    "bpd": metrics.bits_per_dim(nll, dims)}}


def read_result(fam: Family, run: Path, reused: bool, n_samples: int) -> Result:
    """One row from a completed run folder: metrics.json, the manifest and the checkpoint."""
    recorded = fam.read(run)
    params = presets.resolve(fam.notebook, read_json(run / MANIFEST)["parameters"])
    model = load_model(fam.model, fam.checkpoint(run))
    seed = params["seed"]
    drawn = params.get("n_samples", 1000)  # the VAE and diffusion notebooks always draw 1000
    if isinstance(recorded, SampleQuality) and drawn == n_samples:
        quality = {k: getattr(recorded, k) for k in ("fcd", "coverage_min", "coverage_max")}
        source = "recorded by the notebook"
    else:
        images = load_images(params["data"], params["data_dir"] or None)
        judge = sample_judge(images, n_samples, seed)  # a first use trains: no no_grad
        with torch.no_grad():
            quality = sample_quality(model, n_samples, seed, judge)
        source = "computed from the checkpoint"
    with torch.no_grad():
        grid = model.sample(32, generator=torch.Generator().manual_seed(seed)).cpu()
    likely = isinstance(recorded, Likelihood)
    values = {"train_seconds": recorded.train_seconds, **quality,
              "nll": recorded.nll if likely else math.nan,
              "bpd": recorded.bpd if likely else math.nan}
    kind = fam.kind + (f" ({recorded.detail})" if likely and recorded.detail else "")
    return Result(fam, seed, run, reused, model.num_parameters(), model.labels_seen,
                  model.averaged_weights, values, source, n_samples, kind, grid)


def collect(families: Sequence[Family], seeds: Sequence[int], size: str, runs_dir: str | Path,
            device: str = "auto", n_samples: int = 1000, data: str = "digits",
            data_dir: str = "", log: Callable[[str], None] = print) -> list[Result]:
    """Every (family, seed) row. Each run lives in ``<runs_dir>/<notebook>/<digest>``, its
    identity (``folders.run_digest``: the notebook's bytes and the parameters), as a sweep's
    runs do: a completed one is reused, any other is run now."""
    results = []
    for fam in families:
        notebook = load_notebook(fam.notebook)  # once per family, for its runs
        for seed in seeds:
            params = run_parameters(fam, size, seed, device, n_samples, data, data_dir, notebook)
            folder = folders.reuse_dir(notebook, params, runs_dir)
            reused = folders.run_status(folder) == "completed"
            run = jobs.run(notebook, params, out=runs_dir, progress=False, reuse=True)
            log(f"{fam.name} seed {seed}: {'reused' if reused else 'ran'} {run}")
            results.append(read_result(fam, run, reused, n_samples))
    return results


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value). NaN stays NaN."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_mean_std(mean: float, std: float, decimals: int, n: int) -> str:
    """ "86.42 ± 0.31"; the mean alone for one seed; "–" where there is no number."""
    if math.isnan(mean):
        return "–"
    if n < 2:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def summarise(results: Sequence[Result]) -> dict[str, dict]:
    """{family name: {"n", "parameters", "labels_seen", "ema", "kind", "quality_source",
    "n_samples", column: (mean, std)}}, in the order the families first appear."""
    out: dict[str, dict] = {}
    for fam in dict.fromkeys(r.family for r in results):
        rows = [r for r in results if r.family == fam]
        facts = {}
        for key, what in (("parameters", "parameter count"), ("labels_seen", "use of labels"),
                          ("ema", "use of EMA")):
            seen = {getattr(r, key) for r in rows}
            if len(seen) != 1:
                raise ValueError(f"{fam.name}: the seeds disagree on the {what} {seen}")
            facts[key] = seen.pop()
        out[fam.name] = {
            "n": len(rows),
            **facts,
            "kind": " / ".join(dict.fromkeys(r.kind for r in rows)),
            "quality_source": " / ".join(dict.fromkeys(r.quality_source for r in rows)),
            "n_samples": " / ".join(str(n) for n in dict.fromkeys(r.n_samples for r in rows)),
            **{key: mean_std([r.values[key] for r in rows]) for key, _, _ in COLUMNS},
        }
    return out


def markdown_table(summary: dict[str, dict], anchors: dict[str, dict] | None = None) -> str:
    """The comparison as a markdown table: one row per family, mean ± std over the seeds,
    then a row per anchor (`anchors`: name -> {column: value}), with "–" where it has none."""
    head = ["model", "trained parameters", "labels seen", "EMA",
            *(title for _, title, _ in COLUMNS), "kind of NLL", "samples", "seeds"]
    yes = lambda flag: "yes" if flag else "no"  # noqa: E731
    row = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    lines = [row(head), "|" + " --- |" * len(head)]
    for name, s in summary.items():
        cells = [format_mean_std(*s[key], decimals, s["n"]) for key, _, decimals in COLUMNS]
        lines.append(row([name, f"{s['parameters']:,}", yes(s["labels_seen"]), yes(s["ema"]),
                          *cells, s["kind"], s["n_samples"], str(s["n"])]))
    for name, values in (anchors or {}).items():
        cells = [format_mean_std(values.get(key, math.nan), 0.0, decimals, 1)
                 for key, _, decimals in COLUMNS]
        kind = "exact" if "nll" in values else "–"
        lines.append(row([f"*{name}*", "–", "–", "–", *cells, kind, "–", "–"]))
    return "\n".join(lines)


def flat_metrics(summary: dict[str, dict]) -> dict[str, float]:
    """{"<family>_<column>_mean": ..., "_std": ...} for gentools.record; families without the
    column (the GAN's NLL) are left out, since metrics must be finite."""
    flat = {}
    for name, s in summary.items():
        flat |= {f"{name.lower()}_parameters": s["parameters"], f"{name.lower()}_seeds": s["n"]}
        for key, _, _ in COLUMNS:
            if not math.isnan(s[key][0]):
                flat |= dict(zip([f"{name.lower()}_{key}_mean", f"{name.lower()}_{key}_std"],
                                 s[key], strict=True))
    return flat


def save(path: str | Path, results: Sequence[Result], table: str) -> Path:
    """The comparison's state as a gentools checkpoint: per-seed values and sample grids as
    tensors, the run folders, seeds and table in the metadata; `checkpoint.load` reads it."""
    tensors, runs = {}, {}
    for fam in dict.fromkeys(r.family for r in results):
        rows = [r for r in results if r.family == fam]
        for key, _, _ in COLUMNS:
            tensors[f"{fam.key}.{key}"] = torch.tensor([r.values[key] for r in rows],
                                                       dtype=torch.float64)
        tensors[f"{fam.key}.samples"] = torch.stack([r.samples for r in rows])
        runs[fam.key] = {str(r.seed): str(r.run) for r in rows}
    return checkpoint.save(path, tensors, {"runs": runs, "table": table})

