"""Resuming runs that were killed, with real processes: `kill -9` of a run's kernel and
SIGTERM to `gentools run` (what SLURM and Kubernetes send before they kill a job).

Three tiny VAE runs with the same parameters start side by side: one is left alone, one
loses its kernel to SIGKILL after its first checkpoint, one gets SIGTERM. The two broken
runs are resumed with `gentools run --resume` and must end with the uninterrupted run's
metrics, value for value.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gentools import checkpoint

pytestmark = pytest.mark.long  # a minute or more in one worker: started early (conftest.py)

GENTOOLS = [sys.executable, "-m", "gentools"]
STEPS = 1500
PARAMS = ["-p", "size", "tiny", "-p", "steps", str(STEPS), "-p", "eval_every", "500",
          "-p", "iwae_k", "8"]


def start(out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([*GENTOOLS, "run", "vae", *PARAMS, "--out", str(out), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_dir(out: Path) -> Path:
    return wait_for(lambda: next((out / "vae").glob("*"), None) if (out / "vae").is_dir()
                    else None, f"a run folder in {out}")


def checkpoint_step(folder: Path) -> int:
    return checkpoint.load(folder / "checkpoint.safetensors")[1]["step"]


def kernel_of(pid: int) -> int:
    """The pid of the ipykernel process that `gentools run` (pid) started."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"ipykernel" in cmdline:
            return int(proc.name)
    raise AssertionError(f"no kernel process under {pid}")


def metrics(folder: Path) -> dict:
    values = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in values.items() if "seconds" not in k}  # wall time differs


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the kernel in /proc")
def test_killed_and_terminated_runs_resume_to_the_uninterrupted_metrics(tmp_path):
    env = {**os.environ, "GENTOOLS_CHECKPOINT_SECONDS": "0.5", "TQDM_DISABLE": "1"}
    runs = {name: start(tmp_path / name, env) for name in ("whole", "killed", "terminated")}
    folders = {name: run_dir(tmp_path / name) for name in runs}
    for name in ("killed", "terminated"):
        wait_for(lambda n=name: (folders[n] / "checkpoint.safetensors").is_file(),
                 f"the first checkpoint of the {name} run")
    os.kill(kernel_of(runs["killed"].pid), signal.SIGKILL)
    runs["terminated"].send_signal(signal.SIGTERM)
    outcome = {name: (p.wait(timeout=300), *p.communicate()) for name, p in runs.items()}

    assert outcome["whole"][0] == 0, outcome["whole"][2]
    code, _, err = outcome["killed"]
    assert code == 1 and manifest(folders["killed"])["status"] == "failed"
    assert "DeadKernelError" in err and "Traceback" not in err and len(err.splitlines()) <= 6
    assert f"resume it with: gentools run --resume {folders['killed']}" in err
    code, _, err = outcome["terminated"]
    assert code == 128 + signal.SIGTERM, err
    assert manifest(folders["terminated"])["status"] == "interrupted"
    assert f"resume it with: gentools run --resume {folders['terminated']}" in err
    for name in ("killed", "terminated"):  # stopped mid-training, after a checkpoint
        assert 0 < checkpoint_step(folders[name]) < STEPS, name
        assert not (folders[name] / "metrics.json").exists()

    resumed = {name: subprocess.Popen([*GENTOOLS, "run", "--resume", str(folders[name]),
                                       "--no-progress"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name in ("killed", "terminated")}
    for name, proc in resumed.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert metrics(folders[name]) == metrics(folders["whole"]), name
        attempts = manifest(folders[name])["attempts"]
        assert [a["status"] for a in attempts] == [
            "failed" if name == "killed" else "interrupted", "completed"]
        assert manifest(folders[name])["status"] == "completed"
        assert checkpoint_step(folders[name]) == STEPS

    # A completed run, or a folder that holds no run, is refused before any kernel starts.
    for folder, message in ((folders["whole"], "completed run"), (tmp_path, "not a run folder")):
        done = subprocess.run([*GENTOOLS, "run", "--resume", str(folder)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
