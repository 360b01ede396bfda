"""Normalizing flows: RealNVP (Dinh et al. 2017, https://arxiv.org/abs/1605.08803) and Glow
(Kingma & Dhariwal 2018, https://arxiv.org/abs/1807.03039), with uniform and variational
dequantization (Flow++, Ho et al. 2019, https://arxiv.org/abs/1902.00275), in parts that read
top to bottom:

- `layers.py`: the invertible layers, each with its log-determinant: squeeze, the logit
  pre-processing, actnorm, the LU-parametrised 1x1 convolution and the affine coupling;
- `dequantizers.py`: the noise u in [0, 1)^D added to the discrete data, uniform or a learned
  q(u|x) (a small conditional flow);
- `model.py`: `FlowConfig` and `Flow`, the multi-scale flow and its bounds on -log P(x).
"""

from gentools.models.flow.dequantizers import UniformDequantizer, VariationalDequantizer
from gentools.models.flow.layers import (
    ActNorm,
    Coupling,
    InvConv1x1,
    Logit,
    Squeeze,
    checkerboard,
    normal_log_prob,
    squeeze,
    unsqueeze,
)
from gentools.models.flow.model import Flow, FlowConfig, flow_step

__all__ = [
    "ActNorm",
    "Coupling",
    "Flow",
    "FlowConfig",
    "InvConv1x1",
    "Logit",
    "Squeeze",
    "UniformDequantizer",
    "VariationalDequantizer",
    "checkerboard",
    "flow_step",
    "normal_log_prob",
    "squeeze",
    "unsqueeze",
]
