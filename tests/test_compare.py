"""The comparison across image families: mean ± std formatting, the table, and agreement of
the table with each run's own metrics.json (real tiny runs of the notebooks)."""

import json
import math
from pathlib import Path

import pytest
import torch

from gentools import checkpoint, presets
from gentools.checkpoint import load_model
from gentools.data import load_images
from gentools.judge import sample_judge
from gentools.parameters import find_notebook
from gentools.runner import compare, folders

ROOT = Path(__file__).resolve().parents[1]


def test_mean_std_is_the_sample_standard_deviation():
    assert compare.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert compare.mean_std([5.0]) == (5.0, 0.0)
    mean, std = compare.mean_std([1.0, math.nan])
    assert math.isnan(mean) and math.isnan(std)


def test_format_mean_std():
    assert compare.format_mean_std(86.4213, 0.3149, 2, 3) == "86.42 ± 0.31"
    assert compare.format_mean_std(1.94849, 0.0071, 3, 2) == "1.948 ± 0.007"
    assert compare.format_mean_std(86.4213, 0.0, 2, 1) == "86.42"  # one seed: no spread
    assert compare.format_mean_std(math.nan, math.nan, 2, 3) == "–"  # the GAN's NLL


def fake_result(fam, seed, nll, fcd, parameters=100, labels=False, ema=False):
    values = {key: float(seed) for key, _, _ in compare.COLUMNS}
    values.update(nll=nll, bpd=nll, fcd=fcd)
    return compare.Result(fam, seed, Path(f"/runs/{fam.notebook}/{seed}"), True, parameters,
                          labels, ema, values, "recorded by the notebook", 1000, fam.kind,
                          torch.zeros(32, 1, 8, 8))


def test_table_shows_mean_and_std_over_seeds_per_family():
    vae, gan = compare.family("vae"), compare.family("GAN")
    results = [fake_result(vae, s, nll, 30.0 + s) for s, nll in enumerate((86.0, 87.0, 88.0))]
    results += [fake_result(gan, s, math.nan, 29.0, 2000, labels=True, ema=True) for s in range(3)]
    summary = compare.summarise(results)
    assert summary["VAE"]["nll"] == (87.0, 1.0) and summary["VAE"]["n"] == 3
    table = compare.markdown_table(summary)
    vae_row = next(line for line in table.splitlines() if line.startswith("| VAE |"))
    gan_row = next(line for line in table.splitlines() if line.startswith("| GAN |"))
    assert "| 87.00 ± 1.00 |" in vae_row and "| 31.00 ± 1.00 |" in vae_row
    assert "| – | – |" in gan_row and "| 29.00 ± 0.00 |" in gan_row
    head = table.splitlines()[0]
    assert head.startswith("| model | trained parameters | labels seen | EMA |")
    assert vae_row.startswith("| VAE | 100 | no | no |")
    assert gan_row.startswith("| GAN | 2,000 | yes | yes |")
    flat = compare.flat_metrics(summary)
    assert flat["vae_nll_mean"] == 87.0 and "gan_nll_mean" not in flat


def test_the_anchors_are_rows_of_their_own_from_the_data():
    """Held-out real digits and the per-pixel histogram, each with the numbers it has: the
    reference distance alone, and the baseline's distance with its exact NLL."""
    anchors = compare.anchors("digits", "", 1000, 0)
    real, histogram = anchors
    assert real == "held-out real images (350 val)" and histogram == "per-pixel histogram"
    judge = sample_judge(load_images("digits"), 1000, 0)
    assert anchors[real] == {"fcd": judge.reference}
    assert anchors[histogram]["fcd"] == judge.baseline
    assert round(anchors[histogram]["nll"], 1) == 106.5  # the baseline the README quotes
    vae = compare.family("vae")
    summary = compare.summarise([fake_result(vae, 0, 86.0, 30.0)])
    lines = compare.markdown_table(summary, anchors).splitlines()
    assert len(lines) == 5 and lines[2].startswith("| VAE |")
    assert lines[3].startswith(f"| *{real}* | – | – | – | – | – | – | {judge.reference:.2f} |")
    assert lines[4].startswith(f"| *{histogram}* | – | – | – | – | {anchors[histogram]['nll']:.2f}")


def test_seeds_must_agree_on_the_parameter_count():
    vae = compare.family("vae")
    results = [fake_result(vae, 0, 86.0, 30.0, 100), fake_result(vae, 1, 86.0, 30.0, 101)]
    with pytest.raises(ValueError, match="parameter count"):
        compare.summarise(results)
    results = [fake_result(vae, 0, 86.0, 30.0, ema=True), fake_result(vae, 1, 86.0, 30.0)]
    with pytest.raises(ValueError, match="use of EMA"):
        compare.summarise(results)


def test_run_parameters_follow_the_notebook_and_the_size():
    gan = compare.family("gan")
    default = compare.run_parameters(gan, "default", 2, "auto", 1000)
    assert default["size"] == "default" and default["seed"] == 2 and default["steps"] == 0
    assert presets.resolve("gan", default)["steps"] == 1500  # 0: chosen for the digits
    fashion = compare.run_parameters(gan, "auto", 0, "auto", 250, "fashion-mnist", "/data")
    assert (fashion["data"], fashion["data_dir"], fashion["n_samples"]) == (
        "fashion-mnist", "/data", 250)
    assert "out_dir" not in default
    tiny = compare.run_parameters(gan, "tiny", 0, "auto", 200)
    assert tiny["size"] == "tiny" and tiny["steps"] == 20 and tiny["n_samples"] == 200


@pytest.mark.slow
def test_table_equals_each_runs_metrics_and_runs_are_reused(tmp_path):
    fams = [compare.family("pixelcnn"), compare.family("vae")]
    results = compare.collect(fams, [0], "tiny", tmp_path, n_samples=1000, log=lambda _: None)
    summary = compare.summarise(results)
    for r in results:
        recorded = json.loads((r.run / "metrics.json").read_text())
        assert not r.reused and r.seed == 0
        # exactly the run's numbers, in the per-seed values and in the one-seed summary
        assert r.values["nll"] == recorded["test_nll"] == summary[r.family.name]["nll"][0]
        assert r.values["bpd"] == recorded["test_bpd"]
        assert r.values["train_seconds"] == recorded["train_seconds"]
        cell = compare.format_mean_std(recorded["test_nll"], 0.0, 2, 1)
        assert f"| {cell} |" in compare.markdown_table(summary)
    pixel, vae = results
    assert pixel.quality_source == "computed from the checkpoint" and pixel.n_samples == 1000
    assert vae.quality_source == "recorded by the notebook"
    assert vae.values["fcd"] == json.loads((vae.run / "metrics.json").read_text())["fcd"]

    # fewer samples than the VAE notebook records: its distance is computed afresh, like the
    # PixelCNN's, from as many samples as the other rows
    fewer = compare.read_result(vae.family, vae.run, True, 200)
    assert fewer.quality_source == "computed from the checkpoint" and fewer.n_samples == 200

    # the recipe used for the PixelCNN and the flow reproduces what the VAE notebook records,
    # up to float rounding (the reloaded model's samples go through the same classifier)
    model = load_model(vae.family.model, vae.run / "checkpoint.safetensors")
    judge = sample_judge(load_images("digits"), 1000, 0)
    again = compare.sample_quality(model, 1000, 0, judge)
    assert again["fcd"] == pytest.approx(vae.values["fcd"], rel=1e-6)

    # a second comparison reuses the completed runs instead of training again
    before = sorted(tmp_path.glob("*/*"))
    second = compare.collect(fams, [0], "tiny", tmp_path, n_samples=1000, log=lambda _: None)
    assert [r.run for r in second] == [r.run for r in results] and all(r.reused for r in second)
    assert sorted(tmp_path.glob("*/*")) == before
    assert [r.values for r in second] == [r.values for r in results]

    # a run is found by its identity, the digest of the notebook and the parameters
    pixel_params = compare.run_parameters(fams[0], "tiny", 0, "auto", 200)
    notebook = find_notebook("pixelcnn")
    assert pixel.run == tmp_path.resolve() / "pixelcnn" / folders.run_digest(notebook, pixel_params)
    assert folders.run_digest(notebook, {**pixel_params, "seed": 1}) != pixel.run.name

    # the saved comparison holds the per-seed values and the run folders
    path = compare.save(tmp_path / "checkpoint.safetensors", results, "table")
    tensors, meta = checkpoint.load(path)
    assert tensors["pixelcnn.nll"].tolist() == [pixel.values["nll"]]
    assert meta["runs"]["vae"] == {"0": str(vae.run)} and meta["table"] == "table"
