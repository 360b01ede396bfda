"""Reproducibility: seeding, device choice, torch thread count and environment capture.

Every run in gentools goes through these functions, so that the same parameters with
the same seed on the same CPU give identical numbers; ``set_deterministic`` extends that
to GPUs, where the fast kernels are not deterministic by default.
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata

import numpy as np
import torch

# On 2-core machines, two intra-op threads next to another busy process (a Jupyter
# server, a second run) made small models many times slower than one thread; see
# BENCHMARKS.md ("torch threads") for the measurement behind this default.
DEFAULT_THREADS = 1
# the packages whose versions a run's environment records
PACKAGES = ("torch", "numpy", "scikit-learn", "ipywidgets", "plotly", "papermill", "nbval",
            "safetensors", "jupyterlab", "gentools")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch.Generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs to be deterministic (CUDA >= 10.2)


def set_deterministic(enabled: bool = True) -> None:
    """Make torch use only deterministic algorithms (CPU and CUDA), or stop doing so.

    Turning it on also sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set) and cuDNN's
    deterministic mode without autotuning. Call it before any CUDA work: cuBLAS reads
    the variable when it starts. An operation that has no deterministic version then
    raises instead of running.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count and return it.

    `threads` wins when it is a positive number; None or 0 mean $GENTOOLS_THREADS when
    set, else DEFAULT_THREADS.
    """
    if not threads:
        threads = int(os.environ.get("GENTOOLS_THREADS", DEFAULT_THREADS))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def resolve_device(device: str = "auto") -> torch.device:
    """Turn "auto" | "cpu" | "cuda" | "cuda:N" | "mps" into a torch.device that exists here."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available here")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) exist"
            )
        return torch.device(device)
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was asked for, but MPS is not available here")
        return torch.device("mps")
    raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")


def _output(cmd: list[str], cwd: str | os.PathLike | None = None) -> str | None:
    """The stdout of ``cmd``, or None when it cannot start, fails or runs over 30 s."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def nvidia_smi(fields: str) -> list[list[str]]:
    """``nvidia-smi --query-gpu=FIELDS`` as one row of fields per GPU; [] without a GPU."""
    smi = shutil.which("nvidia-smi")
    out = _output([smi, f"--query-gpu={fields}", "--format=csv,noheader"]) if smi else None
    return [[f.strip() for f in line.split(",")] for line in (out or "").splitlines() if line]


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set (up to a -1), else
    every GPU nvidia-smi lists. Needs no CUDA context, so a sweep can ask before forking."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [row[0] for row in nvidia_smi("index")]
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return ids[: ids.index("-1")] if "-1" in ids else ids


def git_state(folder: str | os.PathLike | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding ``folder``."""
    commit = _output(["git", "--no-optional-locks", "rev-parse", "HEAD"], folder)
    status = _output(["git", "--no-optional-locks", "status", "--porcelain"], folder)
    return {"commit": commit.strip() if commit else None,
            "dirty": None if status is None else bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None when missing)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str | None = None) -> dict:
    """What ran and where: the device (CUDA, cuDNN and driver versions on a GPU), thread
    count and determinism, package versions, the platform, and the git state of the
    current folder. A run records it as ``environment.json``; its manifest copies it."""
    device = torch.device(device) if device is not None else resolve_device("auto")
    env = {
        "device": str(device),
        "device_name": cpu_name(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cuda": torch.version.cuda,
        "cudnn": None,
        "driver": None,
        "packages": package_versions(),
        "platform": {"platform": platform.platform(), "machine": platform.machine(),
                     "cpu_count": os.cpu_count(), "python_executable": sys.executable},
        "git": git_state(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cudnn"] = torch.backends.cudnn.version()
        drivers = nvidia_smi("driver_version")
        env["driver"] = drivers[0][0] if drivers else None
    return env
