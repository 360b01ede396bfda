"""Sweeps on Dask (gentools.runner.sweep and sweep_spec, `gentools sweep`) and the
GPU-reproducibility helpers.

The slow tests share one local cluster of 2 worker processes and run a small notebook
written here (a papermill run of about a second), so that six runs stay cheap.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from gentools.runner import cli, folders, jobs, sweep, sweep_spec

pytestmark = pytest.mark.long  # a minute or more in one worker: started early (conftest.py)

PARAMETERS = """\
seed = 0  # random seed [0..]
lr = 0.1  # learning rate [0..1]
device = "cpu"  # where to run [auto|cpu|cuda|cuda:N]
sleep = 0.0  # seconds to wait before recording [0..60]
fail = False  # raise instead of recording
fail_once = ""  # a file; when it does not exist yet, create it and raise
log = ""  # a file that every start of this notebook appends a line to
resume = False  # continue the run in out_dir
out_dir = "runs/toy/interactive"  # run folder
"""
BODY = """\
import os
import time

from gentools.record import record

if log:
    with open(log, "a") as handle:
        handle.write(f"{seed} {lr}\\n")
time.sleep(sleep)
if fail:
    raise RuntimeError("deliberate failure")
if fail_once and not os.path.exists(fail_once):
    open(fail_once, "w").close()
    raise RuntimeError("fails the first time")
gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or "-1"
record({"loss": lr * 10 + seed, "gpu": float(gpu), "resumed": float(resume)}, out_dir)
"""


def make_toy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kernelspec"] = kernel
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(BODY),
    ]
    nbformat.write(nb, folder / "toy.ipynb")
    return folder / "toy.ipynb"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_toy(tmp_path_factory.mktemp("notebooks"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENTOOLS_NOTEBOOKS", str(folder.parent))
        yield folder


@pytest.fixture(scope="module")
def client(toy: Path):
    """A local cluster of 2 worker processes (the CPU path of sweep.local_cluster)."""
    from distributed import Client

    with sweep.local_cluster(workers=2, gpus=[]) as cluster, Client(cluster) as c:
        c.wait_for_workers(2, timeout=120)
        yield c


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def rows_of(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def manifests(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("toy/*/manifest.json"))]


# --- the spec (no cluster, no kernel) ------------------------------------------------------


def test_spec_expands_grid_sets_and_seeds(toy: Path) -> None:
    spec = sweep_spec.parse_spec(
        {
            "notebooks": ["toy"],
            "base": {"sleep": 0.5},
            "grid": {"lr": ["1e-3", 0.2]},  # YAML reads 1e-3 as text, as `-p lr 1e-3` is
            "sets": [{"lr": 0.3, "fail": True}],
            "seeds": [0, 1],
            "retries": 2,
        },
        name="demo",
    )
    assert spec.name == "demo" and spec.retries == 2 and len(spec.jobs) == 6
    assert [(j.parameters["lr"], j.parameters["seed"]) for j in spec.jobs] == [
        (0.001, 0), (0.001, 1), (0.2, 0), (0.2, 1), (0.3, 0), (0.3, 1),
    ]  # fmt: skip
    assert all(j.parameters["sleep"] == 0.5 and "out_dir" not in j.parameters for j in spec.jobs)
    assert spec.jobs[4].entry == "sets[0], seed 0" and spec.jobs[4].parameters["fail"] is True
    assert spec.jobs[0].entry == "grid point {lr: '1e-3'}, seed 0"
    assert spec.swept == ["seed", "lr", "fail"]
    assert len({j.digest for j in spec.jobs}) == 6
    checked = jobs.check_run(toy, spec.jobs[0].parameters)
    assert spec.jobs[0].digest == folders.run_digest(toy, checked)


def test_spec_without_grid_is_one_run_per_seed(toy: Path) -> None:
    spec = sweep_spec.parse_spec({"notebooks": "toy", "seeds": 3})
    assert [j.parameters for j in spec.jobs] == [jobs.check_run(toy, {"seed": 3})]
    assert spec.swept == [] and spec.retries == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"grid": {"lr": [0.1]}}, "notebooks: missing"),
        ({"notebooks": ["nope"]}, "notebooks.nope: notebook 'nope' not found"),
        (
            {"notebooks": ["toy"], "grid": {"lrr": [0.1]}},
            "grid point {lrr: 0.1} (toy): unknown "
            "parameter 'lrr' for toy.ipynb; did you mean 'lr'?",
        ),
        (
            {"notebooks": ["toy"], "sets": [{"lr": 0.1}, {"lr": 5.0}]},
            "sets[1] (toy): parameter 'lr' must be in 0..1 (got 5.0)",
        ),
        (
            {"notebooks": ["toy"], "base": {"device": "tpu"}},
            "base (toy): parameter 'device' must be one of auto, cpu, cuda, cuda:N (got 'tpu')",
        ),
        (
            {"notebooks": ["toy"], "base": {"out_dir": "x"}},
            "base (toy): parameter 'out_dir' is set by gentools",
        ),
        ({"notebooks": ["toy"], "seeds": [0, "one"]}, "seeds[1]: expected an integer"),
        ({"notebooks": ["toy"], "seeds": [0, 0]}, "seeds: [0, 0] repeats a seed"),
        (
            {"notebooks": ["toy"], "seeds": [1], "grid": {"seed": [1, 2]}},
            "grid point {seed: 1}: sets 'seed', which the spec's seeds already vary",
        ),
        ({"notebooks": ["toy"], "retries": -1}, "retries: expected an integer >= 0 (got -1)"),
        ({"notebooks": ["toy"], "grid": {"lr": 0.1}}, "grid.lr: expected a non-empty list"),
        (
            {"notebooks": ["toy"], "sets": [{"lr": 0.1}, {"lr": 0.1}]},
            "sets[1] (toy) repeats the run of sets[0]",
        ),
        ({"notebooks": ["toy"], "base": {"device": "cuda:1"}}, "each sweep worker owns one GPU"),
        ({"notebooks": ["toy"], "seed": [1]}, "unknown key(s) ['seed']"),
    ],
)
def test_bad_spec_is_refused_naming_the_entry(toy: Path, spec: dict, message: str) -> None:
    with pytest.raises(sweep_spec.SpecError) as info:
        sweep_spec.parse_spec(spec)
    assert message in str(info.value)


def test_cli_refuses_a_bad_spec_before_anything_runs(
    toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(sweep, "local_cluster", refuse)
    spec = write_spec(
        tmp_path / "bad.yaml",
        {"notebooks": ["toy"], "grid": {"lr": [0.1, 2.0]}, "sets": [{"sleeep": 1.0}]},
    )
    code = cli.main(["sweep", str(spec), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"sweep spec {spec} is invalid" in err
    assert "grid point {lr: 2.0} (toy): parameter 'lr' must be in 0..1 (got 2.0)" in err
    assert "sets[0] (toy): unknown parameter 'sleeep' for toy.ipynb; did you mean 'sleep'?" in err
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_a_spec_that_is_not_yaml(toy: Path, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("notebooks: [toy\n")
    assert cli.main(["sweep", str(spec)]) == 2
    assert f"sweep spec {spec}: not valid YAML" in capsys.readouterr().err


# --- GPUs: worker resources and CUDA_VISIBLE_DEVICES (no GPU needed) -----------------------


IN_FLIGHT = {"now": 0, "most": 0}  # runs of the fake below: at once, and at most
IN_FLIGHT_LOCK = threading.Lock()


def fake_run(notebook, parameters, out, retries):
    """A sweep run that takes 20 ms and counts how many run at once (module level: the
    in-process cluster pickles it by reference)."""
    with IN_FLIGHT_LOCK:
        IN_FLIGHT["now"] += 1
        IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    time.sleep(0.02)
    with IN_FLIGHT_LOCK:
        IN_FLIGHT["now"] -= 1
    return {"status": "completed", "attempts": 1, "error": None}


def test_a_sweep_keeps_two_runs_per_worker_in_flight(toy: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler never holds the whole sweep: runs are submitted as others finish."""
    from distributed import Client

    spec = sweep_spec.parse_spec({"notebooks": ["toy"], "seeds": list(range(12))})
    monkeypatch.setattr(sweep, "execute_job", fake_run)
    submitted = []
    with Client(processes=False, n_workers=1, threads_per_worker=4) as c:
        real_submit = c.submit

        def submit(*args, **kwargs):
            submitted.append(real_submit(*args, **kwargs))
            assert sum(not f.done() for f in submitted) <= 2  # 2 x 1 worker
            return submitted[-1]

        monkeypatch.setattr(c, "submit", submit)
        sweep.run_sweep(spec, tmp_path, client=c, progress=False)
        assert len(submitted) == 12 and all(f.status == "finished" for f in submitted)
    assert 1 <= IN_FLIGHT["most"] <= 2  # the worker's 4 threads could run 4 at once


def test_worker_specs_give_each_worker_one_gpu() -> None:
    specs = sweep.worker_specs(["0", "1"], workers=3)
    assert list(specs) == ["gpu-0", "gpu-1", "cpu-2"]
    options = {name: spec["options"] for name, spec in specs.items()}
    assert options["gpu-0"] == {
        "nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": "0"}, "resources": {"GPU": 1},
    }  # fmt: skip
    assert options["gpu-1"]["env"] == {"CUDA_VISIBLE_DEVICES": "1"}
    assert options["cpu-2"] == {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": ""}, "resources": {}}
    assert list(sweep.worker_specs(["3", "5"])) == ["gpu-3", "gpu-5"]


def test_a_cuda_run_asks_for_a_gpu() -> None:
    assert sweep.needs_gpu("cuda", cluster_has_gpus=False)
    assert sweep.needs_gpu("cuda:0", cluster_has_gpus=True)
    assert sweep.needs_gpu("auto", cluster_has_gpus=True)
    assert not sweep.needs_gpu("auto", cluster_has_gpus=False)
    assert not sweep.needs_gpu("cpu", cluster_has_gpus=True)


# --- sweeps on a local cluster of 2 worker processes ----------------------------------------

GRID = {"notebooks": ["toy"], "grid": {"lr": [0.1, 0.2, 0.3]}, "seeds": [0, 1]}


@pytest.fixture(scope="module")
def first_sweep(client, toy: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sweep")
    spec = sweep_spec.parse_spec({**GRID, "base": {"log": str(root / "starts.log")}}, name="grid")
    folder = sweep.run_sweep(spec, root / "runs", client=client, progress=False)
    return spec, root, folder


@pytest.mark.slow
def test_six_run_sweep_completes_with_a_row_of_metrics_per_run(first_sweep) -> None:
    spec, root, folder = first_sweep
    assert folder == root / "runs" / "sweeps" / "grid"
    rows = rows_of(folder)
    assert len(rows) == 6
    assert [r["status"] for r in rows] == ["completed"] * 6
    assert [r["attempts"] for r in rows] == ["1"] * 6
    for row, job in zip(rows, spec.jobs, strict=True):
        assert row["run_id"] == job.digest and row["notebook"] == "toy"
        expected = float(row["params.lr"]) * 10 + int(row["params.seed"])
        assert float(row["metrics.loss"]) == pytest.approx(expected)
        manifest = json.loads((Path(row["run_dir"]) / "manifest.json").read_text())
        assert manifest["run_id"] == manifest["digest"] == job.digest
        assert manifest["status"] == "completed"
        assert float(row["wall_time_s"]) == manifest["wall_time_s"] > 0
        assert Path(row["run_dir"]) == root / "runs" / "toy" / job.digest
        assert (Path(row["run_dir"]) / "toy.ipynb").is_file()
    assert list(rows[0])[:6] == ["notebook", "run_id", "status", "attempts", "wall_time_s", "entry"]
    assert len((root / "starts.log").read_text().splitlines()) == 6


@pytest.mark.slow
def test_sweep_figure(first_sweep) -> None:
    spec, root, folder = first_sweep
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv", "summary.html"]
    figure = sweep.summary_figure(sweep.results_table(spec, {}, root / "runs"), spec.swept)
    assert [a.text for a in figure.layout.annotations] == ["seed", "lr"]
    assert figure.layout.yaxis.title.text == "gpu"  # the first metric by name
    lr_panel = [t for t in figure.data if t.xaxis == "x2"]
    assert sorted(lr_panel[0].x) == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
    assert sorted(lr_panel[0].text) == sorted(f"toy/{job.digest}" for job in spec.jobs)
    assert "plotly" in (folder / "summary.html").read_text()[:5000].lower()


@pytest.mark.slow
def test_the_same_sweep_again_runs_nothing_new(first_sweep, client) -> None:
    spec, root, folder = first_sweep
    before = {m["digest"]: m["started_at"] for m in manifests(root / "runs")}
    again = sweep_spec.parse_spec({**GRID, "base": {"log": str(root / "starts.log")}}, name="grid")
    sweep.run_sweep(again, root / "runs", client=client, progress=False)
    rows = rows_of(folder)
    assert [r["status"] for r in rows] == ["completed"] * 6
    assert [r["attempts"] for r in rows] == ["0"] * 6
    assert {m["digest"]: m["started_at"] for m in manifests(root / "runs")} == before
    assert len((root / "starts.log").read_text().splitlines()) == 6


@pytest.mark.slow
def test_killing_a_worker_mid_sweep_completes_every_run_once(client, tmp_path: Path) -> None:
    log = tmp_path / "starts.log"
    spec = sweep_spec.parse_spec({**GRID, "base": {"log": str(log), "sleep": 3.0}}, name="kill")
    outcome: dict = {}

    def go() -> None:
        try:
            outcome["folder"] = sweep.run_sweep(spec, tmp_path / "runs", client=client,
                                                progress=False)  # fmt: skip
        except BaseException as exc:  # handed to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline, "the first two runs never started"
        time.sleep(0.05)
    busy = [addr for addr, keys in client.processing().items() if keys]
    pids = client.run(os.getpid, workers=busy[:1])
    os.kill(pids[busy[0]], signal.SIGKILL)  # both workers are inside a run's 3 s sleep
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in outcome
    rows = rows_of(outcome["folder"])
    assert [r["status"] for r in rows] == ["completed"] * 6
    found = manifests(tmp_path / "runs")
    assert sorted(m["digest"] for m in found) == sorted(j.digest for j in spec.jobs)
    assert [m["status"] for m in found] == ["completed"] * 6
    starts = log.read_text().splitlines()
    assert len(starts) == 7  # the killed run started twice, and completed once
    assert len(set(starts)) == 6
    killed = [m for m in found if len(m["attempts"]) == 2]  # resumed in place, not started over
    assert len(killed) == 1 and [a["status"] for a in killed[0]["attempts"]] == [
        "lost", "completed"]
    assert sorted(float(r["metrics.resumed"]) for r in rows) == [0.0] * 5 + [1.0]


@pytest.mark.slow
def test_a_failing_run_is_retried_recorded_and_the_rest_finish(
    client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path / "failing.yaml",
        {
            "notebooks": ["toy"],
            "sets": [
                {"lr": 0.1},
                {"lr": 0.2, "fail": True},
                {"lr": 0.3, "fail_once": str(tmp_path / "failed-once")},
                {"lr": 0.4},
            ],
            "retries": 1,
        },  # fmt: skip
    )
    address = client.scheduler.address
    argv = ["sweep", str(spec), "--scheduler", address, "--out", str(tmp_path / "runs")]
    assert cli.main([*argv, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "4 runs: 4 ran now, 0 had completed before, 1 failed" in out
    rows = rows_of(tmp_path / "runs" / "sweeps" / "failing")
    assert [r["status"] for r in rows] == ["completed", "failed", "completed", "completed"]
    assert [r["attempts"] for r in rows] == ["1", "2", "2", "1"]
    retried = json.loads((Path(rows[2]["run_dir"]) / "manifest.json").read_text())
    assert [a["status"] for a in retried["attempts"]] == ["failed", "completed"]
    assert float(rows[2]["metrics.resumed"]) == 1.0  # the retry resumed the run in its folder
    assert rows[1]["error"] == "RuntimeError: deliberate failure"
    assert rows[1]["metrics.loss"] == "" and float(rows[3]["metrics.loss"]) == pytest.approx(4.0)
    failed = Path(rows[1]["run_dir"])
    assert json.loads((failed / "manifest.json").read_text())["error"] == {
        "ename": "RuntimeError", "evalue": "deliberate failure",
    }  # fmt: skip
    executed = nbformat.read(failed / "toy.ipynb", as_version=4)
    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    assert any(o.get("ename") == "RuntimeError" for o in outputs)
    assert f"failed: {failed} (RuntimeError: deliberate failure)" in out


@pytest.mark.slow
def test_a_sweep_run_again_resumes_its_unfinished_runs(client, tmp_path: Path) -> None:
    spec = sweep_spec.parse_spec({"notebooks": ["toy"], "sets": [
        {"lr": 0.1}, {"lr": 0.2, "fail_once": str(tmp_path / "failed-once")}], "retries": 0},
        name="again")
    sweep.run_sweep(spec, tmp_path / "runs", client=client, progress=False)
    assert [r["status"] for r in rows_of(tmp_path / "runs" / "sweeps" / "again")] == [
        "completed", "failed"]
    sweep.run_sweep(spec, tmp_path / "runs", client=client, progress=False)
    rows = rows_of(tmp_path / "runs" / "sweeps" / "again")
    assert [(r["status"], r["attempts"]) for r in rows] == [("completed", "0"), ("completed", "1")]
    manifest = json.loads((Path(rows[1]["run_dir"]) / "manifest.json").read_text())
    assert [a["status"] for a in manifest["attempts"]] == ["failed", "completed"]
    assert float(rows[1]["metrics.resumed"]) == 1.0


@pytest.mark.slow
def test_a_cuda_run_is_refused_without_gpu_workers(client, tmp_path: Path) -> None:
    spec = sweep_spec.parse_spec({"notebooks": ["toy"], "base": {"device": "cuda"}})
    with pytest.raises(sweep_spec.SpecError, match="no worker offers a GPU resource"):
        sweep.run_sweep(spec, tmp_path / "runs", client=client, progress=False)
    assert not (tmp_path / "runs" / "toy").exists()


@pytest.mark.slow
def test_gpu_workers_each_see_their_own_gpu(toy: Path, tmp_path: Path) -> None:
    """The GPU path of local_cluster with two pretend GPUs: runs on cuda get one each."""
    from distributed import Client

    spec = sweep_spec.parse_spec(
        {"notebooks": ["toy"], "base": {"device": "cuda", "sleep": 1.0}, "seeds": [0, 1, 2, 3]}
    )
    with sweep.local_cluster(gpus=["0", "1"]) as cluster, Client(cluster) as c:
        c.wait_for_workers(2, timeout=120)
        env = c.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
        assert sorted(env.values()) == ["0", "1"]
        folder = sweep.run_sweep(spec, tmp_path / "runs", client=c, progress=False)
    rows = rows_of(folder)
    assert [r["status"] for r in rows] == ["completed"] * 4
    assert {r["metrics.gpu"] for r in rows} <= {"0.0", "1.0"}
