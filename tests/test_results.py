"""Typed results (`gentools.results`): each family's figures are checked where the notebook
writes them, flattened into metrics.json, and read back into the same class by the comparison."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from gentools import results
from gentools.record import record
from gentools.runner import compare

CLASSES = [cls for cls in vars(results).values() if isinstance(cls, type)
           and issubclass(cls, results.Results) and cls.__name__.endswith("Results")
           and cls is not results.Results]


def example(cls, start=1.0):
    """An instance of `cls` with every field filled, each number different."""
    kwargs = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        form, value = f.metadata["form"], start + i
        kwargs[f.name] = {"number": value, "tuple": (value, value + 0.5, value + 0.25),
                          "mapping": {"a": value, "b_real": -value},
                          "part": example(f.metadata.get("type"), 100.0) if form == "part"
                          else None}[form]
    return cls(**kwargs)


def test_every_notebook_family_has_a_class():
    names = {cls.__name__ for cls in CLASSES}
    assert names == {"VAEResults", "GANResults", "PixelCNNResults", "FlowResults",
                     "FlowMatchingResults", "DiffusionResults", "WaveNetResults", "GPTResults",
                     "BERTResults"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_results_round_trip_through_metrics_json(cls, tmp_path: Path):
    written = example(cls)
    flat = record(written, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == flat
    assert all(type(v) is float for v in flat.values())
    assert cls.from_metrics(flat) == written
    assert len(str(written).splitlines()) == len(flat)  # one printed line per figure


def test_the_flat_names():
    """Tuples, mappings and parts take their field's name as a prefix."""
    gan = example(results.GANResults)
    flat = gan.metrics()
    assert [flat[f"coverage_{i}"] for i in range(3)] == list(gan.coverage)
    assert flat["val_a"] == gan.val["a"] and flat["val_b_real"] == gan.val["b_real"]
    assert flat["coverage_min"] == gan.coverage_min  # a figure of its own, not a class share
    diffusion = example(results.DiffusionResults)
    flat = diffusion.metrics()
    assert flat["flow_fcd"] == diffusion.flow.fcd and flat["fcd"] == diffusion.fcd
    without = dataclasses.replace(diffusion, flow=None, test_nll_via_class=None)
    assert not any(k.startswith("flow_") for k in without.metrics())
    assert "test_nll_via_class" not in without.metrics()
    assert results.DiffusionResults.from_metrics(without.metrics()) == without


def test_a_misspelt_or_missing_figure_fails_where_it_is_written():
    figures = example(results.PixelCNNResults).metrics()
    with pytest.raises(TypeError, match="val_nl"):
        results.PixelCNNResults(**{k: v for k, v in figures.items() if k != "val_nll"},
                                val_nl=1.0)
    with pytest.raises(TypeError, match="val_nll"):
        results.PixelCNNResults(**{k: v for k, v in figures.items() if k != "val_nll"})
    with pytest.raises(ValueError, match="figure 'val_nll' must be finite"):
        results.PixelCNNResults(**{**figures, "val_nll": math.nan})
    with pytest.raises(ValueError, match="figure 'val_nll' is required"):
        results.PixelCNNResults(**{**figures, "val_nll": None})
    with pytest.raises(ValueError, match="figure 'coverage_1' must be a number"):
        results.GANResults(**{**vars(example(results.GANResults)), "coverage": (0.1, "x")})


def test_reading_back_refuses_missing_and_unknown_names():
    flat = example(results.FlowResults).metrics()
    with pytest.raises(ValueError, match="figure 'iw_k' is missing"):
        results.FlowResults.from_metrics({k: v for k, v in flat.items() if k != "iw_k"})
    with pytest.raises(ValueError, match="no figure named test_nll_iww"):
        results.FlowResults.from_metrics({**flat, "test_nll_iww": 1.0})
    diffusion = example(results.DiffusionResults).metrics()
    with pytest.raises(ValueError, match="FlowMatchingResults: figure 'fcd_guided' is missing"):
        results.DiffusionResults.from_metrics({k: v for k, v in diffusion.items()
                                               if k != "flow_fcd_guided"})


def test_a_field_must_say_what_it_holds():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Plain(results.Results):
        loss: float = 0.0

    with pytest.raises(TypeError, match="Plain.loss is not declared"):
        Plain()


def test_likelihoods_say_what_their_nll_is():
    flow = example(results.FlowResults)
    assert (flow.nll, flow.bpd) == (flow.test_nll_iw, flow.test_bpd_iw)
    assert flow.kind == "bound" and flow.detail == f"importance-weighted, K={flow.iw_k:g}"
    pixelcnn = example(results.PixelCNNResults)
    assert (pixelcnn.nll, pixelcnn.kind, pixelcnn.detail) == (pixelcnn.test_nll, "exact", "")
    vae = dataclasses.replace(example(results.VAEResults), iwae_k=1000)
    assert vae.detail == "IWAE, k=1000"
    assert not issubclass(results.GANResults, results.Likelihood)
    assert not issubclass(results.FlowMatchingResults, results.Likelihood)


def test_the_comparison_reads_each_family_by_its_class(tmp_path: Path):
    """What a notebook records is what the family reads back, the flow-matching model
    from its part of the diffusion run."""
    for fam in compare.FAMILIES:
        run = tmp_path / fam.key
        written = example(fam.results)
        record(written, run)
        read = fam.read(run)
        assert read == (getattr(written, fam.part) if fam.part else written)
        assert isinstance(read, fam.figures)
        assert fam.kind == ("none" if fam.name in ("GAN", "Flow matching") else read.kind)
    assert compare.family("flow matching").checkpoint(tmp_path) == tmp_path / "flow" / \
        "checkpoint.safetensors"
    with pytest.raises(ValueError, match="has no part 'flw'"):
        compare.Family("x", "diffusion", object, results.DiffusionResults, part="flw")
