"""Denoising diffusion (Ho et al. 2020, https://arxiv.org/abs/2006.11239) and flow matching
(Lipman et al. 2023, https://arxiv.org/abs/2210.02747) on one denoising network, in parts that
read top to bottom:

- `networks.py`: the denoising networks (a residual MLP and a U-Net) and their conditioning on
  the time and the class label;
- `paths.py`: the noise paths x_t = a_t x_0 + s_t eps, DDPM's chain and flow matching's straight
  line, as two small objects with one interface (scales, the draw of t, the loss, the time grid);
- `bound.py`: the DDPM's variational bound on -log P(x) (prior, KL and decoder terms, the
  stratified estimate);
- `samplers.py`: DDIM (eta = 1: ancestral DDPM), Heun's and Euler's steps for flow, and DDIM
  inversion for `encode`;
- `model.py`: `DiffusionConfig` and `Diffusion`, which ties them together.
"""

from gentools.models.diffusion.bound import VariationalBound, gaussian_kl
from gentools.models.diffusion.model import Diffusion, DiffusionConfig
from gentools.models.diffusion.networks import DenoiserMLP, DenoiserUNet
from gentools.models.diffusion.paths import DDPMPath, FlowPath, alpha_bars, flow_matching_loss
from gentools.nn import discretized_gaussian_log_prob

__all__ = [
    "DDPMPath",
    "DenoiserMLP",
    "DenoiserUNet",
    "Diffusion",
    "DiffusionConfig",
    "FlowPath",
    "VariationalBound",
    "alpha_bars",
    "discretized_gaussian_log_prob",
    "flow_matching_loss",
    "gaussian_kl",
]
