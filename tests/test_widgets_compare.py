"""The comparison's pictures (gentools.widgets.compare): quality against training time."""

import base64
import math
import re
import struct

import pytest
import torch
from test_compare import fake_result

from gentools.runner import compare
from gentools.widgets import compare as pictures


def test_quality_chart_switches_the_measure_and_hides_missing_numbers():
    vae, gan = compare.family("vae"), compare.family("GAN")
    results = [fake_result(vae, s, nll, 30.0 + s) for s, nll in enumerate((86.0, 87.0, 88.0))]
    results += [fake_result(gan, s, math.nan, 29.0) for s in range(3)]
    summary = compare.summarise(results)
    static = pictures.quality_vs_time(summary)
    assert [t.y for t in static.data] == [(31.0,), (29.0,)]
    assert [t.x for t in static.data] == [(1.0,), (1.0,)]  # train_seconds: the seeds 0, 1, 2
    chart = pictures.QualityChart(summary)
    assert chart.measure.value == "bits/dim"
    vae_trace, gan_trace = chart.fig.data
    assert vae_trace.y == (87.0,) and vae_trace.error_y.array == (1.0,) and vae_trace.visible
    assert gan_trace.y == (None,) and gan_trace.visible is False
    chart.measure.value = "Fréchet distance"  # what a click on the button does
    assert [t.y for t in chart.fig.data] == [(31.0,), (29.0,)]
    assert chart.fig.data[1].visible is True
    assert "Fréchet" in chart.fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="unknown quality measure"):
        pictures.quality_vs_time(summary, "sharpness")


def test_samples_side_by_side_draws_every_data_set_at_a_readable_size():
    """Digits and 28x28 images alike: each model's grid of 8 columns is 400 px wide or more."""
    grids = {"digits": torch.rand(16, 1, 8, 8), "fashion": torch.rand(16, 1, 28, 28)}
    html = pictures.samples_side_by_side(grids)
    pngs = [base64.b64decode(m) for m in re.findall(r"base64,([A-Za-z0-9+/=]+)", html)]
    widths = [struct.unpack(">I", png[16:20])[0] for png in pngs]
    assert len(widths) == 2 and min(widths) >= 400, widths
    assert "<figcaption>fashion</figcaption>" in html
