"""Settings that follow the data: what "auto" and 0 mean in an image notebook's parameters.

The 8x8 digits (17 levels) train in a minute or two. The 8-bit data sets (28x28 MNIST and
Fashion-MNIST, 32x32 CIFAR-10) need another model size, more steps and a cheaper evaluation
to finish in about 15 minutes on 2 CPU cores. A parameter left at "auto" (a string), 0 (a
count; -1 where 0 has a meaning of its own) or -1 (a rate) takes its value from the table
below, by notebook and by data; any other value is the user's own and is kept. Each notebook
holds the measured designs behind its 8-bit row.
"""

from __future__ import annotations

from collections.abc import Mapping

AUTO = {  # notebook -> "digits" or "8-bit" -> {parameter: value}
    "vae": {
        "digits": dict(size="default", decoder="categorical", steps=2000, iwae_k=1000),
        "8-bit": dict(size="medium", decoder="logistic", steps=2500, iwae_k=8),
    },
    "pixelcnn": {
        "digits": dict(size="default", steps=700, batch_size=64, lr=0.002, dropout=0.4,
                       eval_every=250),
        "8-bit": dict(size="medium", steps=2400, batch_size=16, lr=0.005, dropout=0.0,
                      eval_every=1200),
    },
    "gan": {
        "digits": dict(size="default", loss="wgan-gp", steps=1500),
        "8-bit": dict(size="medium", loss="nonsaturating", steps=2500),
    },
    "diffusion": {
        "digits": dict(size="default", steps=1500, flow_steps=1500, batch_size=128,
                       sample_steps=50, nll_draws=32, curve_samples=400, eval_every=250),
        "8-bit": dict(size="medium", steps=2500, flow_steps=2500, batch_size=32,
                      sample_steps=20, nll_draws=2, curve_samples=100, eval_every=1250),
    },
    "compare": {"digits": dict(n_samples=1000), "8-bit": dict(n_samples=250)},
    "flow": {
        "digits": dict(size="default", steps=500, iw_k=64, eval_every=100),
        "8-bit": dict(size="medium", steps=1100, iw_k=4, eval_every=550),
    },
}


def data_kind(data: str) -> str:
    """"digits" for the embedded 8x8 digits, "8-bit" for every 256-level data set."""
    return "digits" if data == "digits" else "8-bit"


# parameters whose 0 means something of its own (skip the model, take every term): auto is -1
ZERO_IS_A_VALUE = frozenset({"flow_steps", "nll_draws"})


def is_auto(value: object, name: str = "") -> bool:
    """True for the values that mean "choose for me": "auto", a negative number, and the int 0
    unless the parameter `name` is one of :data:`ZERO_IS_A_VALUE`."""
    if isinstance(value, str):
        return value == "auto"
    if isinstance(value, bool):
        return False
    zero = isinstance(value, int) and value == 0 and name not in ZERO_IS_A_VALUE
    return value < 0 or zero


def resolve(notebook: str, params: Mapping[str, object]) -> dict[str, object]:
    """``params`` with each "auto" / 0 parameter of ``notebook`` ("vae" or "vae.ipynb") set
    from :data:`AUTO` for its ``data``; notebooks without a table come back unchanged."""
    table = AUTO.get(notebook.removesuffix(".ipynb"))
    if table is None:
        return dict(params)
    chosen = table[data_kind(str(params.get("data", "digits")))]
    return {k: chosen[k] if k in chosen and is_auto(v, k) else v for k, v in params.items()}
