"""Runs that fail cleanly, with real processes and real files: a full disk (a file-size limit
in the child), two resumes started together, a manifest or checkpoint edited behind the
run's back, bad data paths, and a sweep grid too large to plan."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from test_jobs import make_notebook, no_kernel  # noqa: F401

from gentools.files import sha256_file, write_json
from gentools.runner import cli, jobs

GENTOOLS = [sys.executable, "-m", "gentools"]
PARAMETERS = """\
seed = 0                # random seed [0..]
scale = 2.0             # multiplier [0..10]
mode = "fast"           # how to run [fast|slow]
chatter = 0             # characters the run prints [0..]
resume = False          # continue from the run folder's checkpoint
out_dir = "runs/tiny/interactive"  # run folder for the checkpoint and metrics
"""
VALIDATE = """\
from gentools.parameters import check_notebook
check_notebook(globals(), "tiny.ipynb")
"""
WORK = """\
import os, time
from gentools.record import record
if not resume and mode == "slow":
    raise KeyboardInterrupt("stopped by signal 15 after step 1")
print("x" * chatter)
time.sleep(0.5 if resume else 0)
os.makedirs(os.path.join(out_dir, "ckpt"), exist_ok=True)
record({"x": float(seed)}, out_dir)
"""


@pytest.fixture
def notebooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "tiny.ipynb", VALIDATE, WORK, parameters=PARAMETERS)
    monkeypatch.setenv("GENTOOLS_NOTEBOOKS", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


def gentools(*args: str, limit: int | None = None, **kw) -> subprocess.CompletedProcess:
    def file_size_limit() -> None:  # writes past `limit` bytes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([*GENTOOLS, *args, "--no-progress"], capture_output=True, text=True,
                          timeout=120, preexec_fn=file_size_limit if limit else None, **kw)


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def every_notebook_is_whole(run_dir: Path) -> bool:
    for path in run_dir.rglob("*.ipynb"):
        json.loads(path.read_text())  # raises on half a file
    return True


# --- a full disk -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_leaves_a_true_manifest_and_no_half_notebook(notebooks: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "runs"
    done = gentools("run", "tiny", "-p", "chatter", "400000", "--out", str(out), limit=300_000)
    (run_dir,) = (out / "tiny").iterdir()
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 4 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: run stopped: out of disk space with OSError: [Errno 27]")
    assert lines[-1] == f"free space on that disk, then resume it with: gentools run --resume " \
                        f"{run_dir}"
    assert manifest(run_dir)["status"] == "out of disk"
    assert every_notebook_is_whole(run_dir) and not (run_dir / "tiny.ipynb").exists()
    names = sorted(p.name for p in run_dir.iterdir())  # the cell ran; saving it failed
    assert names == [".lock", "ckpt", "manifest.json", "metrics.json"]

    done = gentools("run", "--resume", str(run_dir))  # with room again
    assert done.returncode == 0, done.stderr
    assert [a["status"] for a in manifest(run_dir)["attempts"]] == ["out of disk", "completed"]
    assert every_notebook_is_whole(run_dir) and (run_dir / "tiny.ipynb").is_file()


def test_an_unwritable_out_folder_is_one_sentence(notebooks: Path, tmp_path: Path) -> None:
    out = tmp_path / "read-only"
    out.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere, but not below /sys
        out = Path("/sys/gentools-test-runs")
    done = gentools("run", "tiny", "--out", str(out))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot write {out}") and "--out DIR" in done.stderr
    assert not out.exists() or not any(out.iterdir())


# --- one process per run folder --------------------------------------------------------


@pytest.mark.slow
def test_two_resumes_started_together_run_once(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(jobs.RunFailed) as info:
        jobs.run("tiny", {"mode": "slow"}, out=tmp_path / "runs", progress=False)
    run_dir = info.value.run_dir
    assert manifest(run_dir)["status"] == "interrupted"
    both = [subprocess.Popen([*GENTOOLS, "run", "--resume", str(run_dir), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcome = sorted((p.wait(timeout=120), p.communicate()[1]) for p in both)
    assert [code for code, _ in outcome] == [0, 2], outcome
    refused = outcome[1][1]
    assert f"{run_dir} is being run by another process (pid " in refused
    assert len(refused.splitlines()) == 1
    assert [a["status"] for a in manifest(run_dir)["attempts"]] == ["interrupted", "completed"]


# --- --resume checks what it reads -----------------------------------------------------


def broken_run(notebooks: Path, tmp_path: Path) -> Path:
    """A failed run's folder as `gentools run` leaves it, with a checkpoint, made by hand."""
    source = notebooks / "tiny.ipynb"
    params = {**jobs.check_run(source, {}), "out_dir": str(tmp_path / "run")}
    run_dir = tmp_path / "run"
    (run_dir / "ckpt").mkdir(parents=True)
    (run_dir / "ckpt" / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    write_json(run_dir / "manifest.json", {
        "notebook": str(source), "notebook_sha256": sha256_file(source),
        "executed_notebook": "tiny.ipynb", "status": "failed", "parameters": params,
        "attempts": [{"status": "failed"}],
        "outputs": {"ckpt/model.safetensors": sha256_file(run_dir / "ckpt/model.safetensors")}})
    return run_dir


def test_resume_checks_the_manifests_parameters_like_run(
    notebooks: Path, tmp_path: Path, no_kernel: None, capsys  # noqa: F811
) -> None:
    run_dir = broken_run(notebooks, tmp_path)
    data = manifest(run_dir)
    data["parameters"].update(scale=50, seed=-7)
    write_json(run_dir / "manifest.json", data)
    assert cli.main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: 2 parameter problems for tiny.ipynb:",
                                "  - parameter 'seed' must be >= 0 (got -7)",
                                "  - parameter 'scale' must be in 0..10 (got 50.0)"]


def test_resume_refuses_a_checkpoint_that_is_not_the_one_recorded(
    notebooks: Path, tmp_path: Path, no_kernel: None, capsys  # noqa: F811
) -> None:
    run_dir = broken_run(notebooks, tmp_path)
    checkpoint = run_dir / "ckpt" / "model.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1024])  # truncated to half
    assert cli.main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {checkpoint} differs from the file the run wrote" in err
    assert "start a new run of tiny" in err and "--resume" not in err
    checkpoint.unlink()
    assert cli.main(["run", "--resume", str(run_dir)]) == 2
    assert f"checkpoint {checkpoint} is missing" in capsys.readouterr().err
    assert manifest(run_dir)["status"] == "failed"


# --- data sets are opened before the kernel --------------------------------------------


def idx(path: Path, magic: int, dims: tuple[int, ...]) -> None:
    size = 1
    for d in dims:
        size *= d
    path.write_bytes(struct.pack(f">I{len(dims)}I", magic, *dims) + bytes(size))


@pytest.mark.parametrize(("case", "message"), [
    ("no data_dir", "data 'mnist' needs the folder of its files: give it with -p data_dir DIR"),
    ("missing folder", "MNIST: the folder {root} does not exist"),
    ("corrupt file", "{root}/t10k-labels-idx1-ubyte: wrong IDX magic number"),
    ("text file", "no text file at {root}/book.txt"),
    ("wav folder", "{root}/a.wav: not a readable PCM WAV file"),
])
def test_a_bad_data_set_is_refused_before_any_run_folder_or_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_kernel: None, capsys,  # noqa: F811
    case: str, message: str
) -> None:
    monkeypatch.delenv("GENTOOLS_NOTEBOOKS", raising=False)
    root = tmp_path / "data"
    notebook, params = "vae", ["-p", "data", "mnist", "-p", "data_dir", str(root)]
    if case == "no data_dir":
        params = params[:3]
    elif case == "corrupt file":
        root.mkdir()
        for part, n in (("train", 60), ("t10k", 10)):
            idx(root / f"{part}-images-idx3-ubyte", 0x803, (n, 28, 28))
            idx(root / f"{part}-labels-idx1-ubyte", 0x803 if part == "t10k" else 0x801, (n,))
    elif case == "text file":
        notebook, params = "gpt", ["-p", "data", str(root / "book.txt")]
    elif case == "wav folder":
        root.mkdir()
        (root / "a.wav").write_bytes(b"RIFF not a wave")
        notebook, params = "wavenet", ["-p", "data", str(root)]
    out = tmp_path / "runs"
    assert cli.main(["run", notebook, *params, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message.format(root=root) in err and len(err.splitlines()) == 1, err
    assert not out.exists()


# --- sweeps ------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory there")
def test_an_oversized_grid_is_refused_at_once_in_little_memory(tmp_path: Path) -> None:
    grid = {f"p{i}": list(range(10)) for i in range(8)}  # 10^8 points, times 10 seeds
    spec = tmp_path / "huge.yaml"
    spec.write_text(json.dumps({"notebooks": "vae", "grid": grid, "seeds": list(range(10))}))
    code = ("import sys, time; from gentools.runner import cli; t = time.perf_counter(); "
            f"code = cli.main(['sweep', {str(spec)!r}]); "
            "peak = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]; "
            "print(code, time.perf_counter() - t, int(peak.split()[1]) * 1024, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    message, numbers = done.stderr.splitlines()
    code, seconds, peak = numbers.split()
    assert code == "2" and float(seconds) < 1 and int(peak) < 200e6, done.stderr
    assert message.startswith(f"error: sweep spec {spec}: it makes 1,000,000,000 runs")
    assert "more than the limit of 5,000" in message and "--max-runs N" in message
    done = subprocess.run([*GENTOOLS, "sweep", str(spec), "--max-runs", "10"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "more than the limit of 10;" in done.stderr
