"""Reproducibility helpers (gentools.repro): deterministic mode and the environment record."""

import os
import subprocess
from pathlib import Path

import papermill
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


def test_environment_names_the_packages_the_platform_and_the_commit() -> None:
    env = repro.environment("cpu")
    assert env["device"] == "cpu" and env["threads"] == torch.get_num_threads()
    packages = env["packages"]
    assert packages["gentools"] == "0.1.0" and packages["papermill"] == papermill.__version__
    assert packages["torch"] == torch.__version__
    assert set(env["platform"]) >= {"platform", "machine", "cpu_count", "python_executable"}
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent, check=False).stdout.strip()
    if head:  # a checkout of the repository (an unpacked archive has no commit)
        assert env["git"]["commit"] == head and isinstance(env["git"]["dirty"], bool)


def test_git_state_outside_a_repository(tmp_path: Path) -> None:
    assert repro.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_gpus_are_read_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"  # answers like nvidia-smi on a machine with two GPUs
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --query-gpu=index) printf '0\\n1\\n' ;;\n"
        "  *) printf '550.54\\n550.54\\n' ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert repro.visible_gpus({}) == ["0", "1"]
    assert repro.nvidia_smi("driver_version") == [["550.54"], ["550.54"]]
    fake.write_text("#!/bin/sh\nexit 9\n")  # a broken driver
    assert repro.visible_gpus({}) == [] and repro.nvidia_smi("index") == []


def test_visible_gpus_reads_cuda_visible_devices() -> None:
    assert repro.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert repro.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert repro.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
