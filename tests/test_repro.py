"""Reproducibility helpers (gentools.repro): deterministic mode and the environment record."""

import os

import pytest
import torch

from gentools import repro


def test_deterministic_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        repro.set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        env = repro.environment("cpu")
        assert env["deterministic"] is True and env["cublas_workspace_config"] == ":4096:8"
        assert env["cudnn"] is None and env["driver"] is None  # no CUDA device here
    finally:
        repro.set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert repro.environment("cpu")["deterministic"] is False
