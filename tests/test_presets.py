"""Settings chosen by the data: "auto" / 0 resolve per data set, and nothing else changes."""

import pytest

from gentools import presets
from gentools.parameters import find_notebook, notebook_parameters, validate

# the digits values the parameters cells held before the 8-bit defaults existed
DIGITS_BEFORE = {
    "vae": dict(size="default", decoder="categorical", steps=2000, iwae_k=1000),
    "pixelcnn": dict(size="default", steps=700, batch_size=64, lr=0.002, dropout=0.4,
                     eval_every=250),
    "flow": dict(size="default", steps=500, iw_k=64, eval_every=100),
    "gan": dict(size="default", loss="wgan-gp", steps=1500),
    "diffusion": dict(size="default", steps=1500, flow_steps=1500, batch_size=128,
                      sample_steps=50, nll_draws=32, curve_samples=400, eval_every=250),
    "compare": dict(n_samples=1000),
}


@pytest.mark.parametrize("notebook", sorted(presets.AUTO))
def test_the_defaults_resolve_on_the_digits_to_what_they_always_were(notebook):
    defaults = validate(notebook_parameters(find_notebook(notebook)), {})
    resolved = presets.resolve(notebook, defaults)
    assert {k: resolved[k] for k in DIGITS_BEFORE[notebook]} == DIGITS_BEFORE[notebook]


@pytest.mark.parametrize("notebook", sorted(presets.AUTO))
def test_every_auto_parameter_defaults_to_auto_in_its_notebook(notebook):
    spec = notebook_parameters(find_notebook(notebook))
    for kind, chosen in presets.AUTO[notebook].items():
        assert set(chosen) == set(presets.AUTO[notebook]["digits"]), kind
        for name, value in chosen.items():
            assert presets.is_auto(spec[name].default, name), name
            assert not presets.is_auto(value, name) and spec[name].coerce(value) == value


def test_eight_bit_data_gets_its_own_settings_and_the_user_keeps_theirs():
    spec = notebook_parameters(find_notebook("pixelcnn"))
    chosen = presets.resolve("pixelcnn.ipynb", validate(spec, {"data": "fashion-mnist"}))
    assert chosen["size"] == "medium" and chosen["dropout"] == 0.0
    assert chosen["steps"] == presets.AUTO["pixelcnn"]["8-bit"]["steps"]
    mine = validate(spec, {"data": "mnist", "steps": 3, "size": "tiny", "dropout": 0.0})
    kept = presets.resolve("pixelcnn", mine)
    assert (kept["steps"], kept["size"], kept["dropout"]) == (3, "tiny", 0.0)
    on_digits = presets.resolve("pixelcnn", validate(spec, {"dropout": 0.0}))
    assert on_digits["dropout"] == 0.0  # a float 0 is a value, not "auto"


def test_what_counts_as_auto():
    assert [presets.is_auto(v) for v in ("auto", "default", 0, 5, -1.0, 0.0, False)] == [
        True, False, True, False, True, False, False]
    assert presets.resolve("gpt", {"steps": 0}) == {"steps": 0}  # no table: unchanged
    assert presets.is_auto(-1, "flow_steps") and not presets.is_auto(0, "flow_steps")
