"""The benchmark suite (benchmarks/suite.py): its registry, its records and BENCHMARKS.md."""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_suite_registers_each_benchmark_once_and_renders_every_record(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import suite
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    names = [b.name for b in suite.BENCHMARKS]
    assert len(names) == len(set(names)) and "compare" in names
    for bench in suite.BENCHMARKS:
        assert (ROOT / bench.args[0]).is_file(), bench.args[0]
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    (results / "compare.json").write_text(json.dumps({
        "name": "compare", "command": "python benchmarks/compare.py --seeds 3",
        "date": "2026-11-28", "started_at": "2026-11-28T04:05:02+00:00", "wall_seconds": 1234.0,
        "load_before": [2.83, 2.17, 1.34], "load_after": [3.0, 2.9, 2.5],
        "machine": {"cpu": "Some CPU", "cores": 2}, "git": {"commit": "abcdef0123", "dirty": True},
        "returncode": 0, "markdown": "| model |\n| --- |\n| VAE |",
    }))
    (results / "threads.json").unlink()
    monkeypatch.setattr(suite, "RESULTS", results)
    text = suite.render()
    compare_section = text.split("### All image families")[1].split("###")[0]
    assert "`python benchmarks/compare.py --seeds 3`, 2026-11-28T04:05:02+00:00 UTC" in text
    assert "load 2.83/2.17/1.34 before, 3.00/2.90/2.50 after" in compare_section
    assert "commit abcdef01 (dirty)" in compare_section and "| VAE |" in compare_section
    threads_section = text.split("### Torch threads")[1].split("###")[0]
    assert "Not yet measured with the suite" in threads_section


def test_suite_records_a_benchmark_and_keeps_the_last_good_record_on_failure(
    tmp_path, monkeypatch
):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import suite
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setattr(suite, "RESULTS", tmp_path / "results")
    script = tmp_path / "demo.py"
    script.write_text('print("| rate |\\n| --- |\\n| 42 |")\n')
    bench = suite.Benchmark("demo", "Speed", "Demo", (str(script),))
    record = suite.run(bench)
    stored = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert stored == record and record["returncode"] == 0
    assert record["markdown"] == "| rate |\n| --- |\n| 42 |"
    assert record["command"] == f"python {script}" and record["machine"]["cores"]
    assert len(record["load_before"]) == 3 and record["load_peak"] >= 0
    script.write_text("raise SystemExit('broken')\n")
    failed = suite.run(bench)
    assert failed["returncode"] == 1 and "broken" in failed["stderr_tail"]
    assert json.loads((tmp_path / "results" / "demo.json").read_text()) == record
    assert (tmp_path / "results" / "demo.failed.json").is_file()
