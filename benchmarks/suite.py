"""The benchmark suite: runs the speed and quality benchmarks and rewrites BENCHMARKS.md.

    python benchmarks/suite.py                 # every benchmark (over an hour on 2 cores)
    python benchmarks/suite.py --only compare --only monitor_overhead
    python benchmarks/suite.py --render        # rewrite BENCHMARKS.md from the stored results
    python benchmarks/suite.py --list

Each benchmark is a script in this folder that prints markdown. The suite runs it with this
Python from the repository root (with `TQDM_DISABLE=1`), and stores one JSON record per
benchmark in `benchmarks/results/<name>.json`: the command, the date, the machine, the git
commit, the wall time, the load averages before and after, and the script's output. Then it
renders BENCHMARKS.md from all the records, so every figure there sits under the machine,
command and date that produced it. A failing script leaves its previous record in place and
writes `<name>.failed.json`.

To add a benchmark: write `benchmarks/NAME.py` that prints its tables (medians of repeated
runs for timings; ratios measured in the same run), and add one `Benchmark(...)` line to
BENCHMARKS below.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class Benchmark:
    name: str  # --only NAME, and results/NAME.json
    section: str  # "Speed" or "Quality": where BENCHMARKS.md lists it
    title: str  # its heading in BENCHMARKS.md
    args: tuple[str, ...]  # the script and its arguments, run from the repository root
    note: str = ""  # what is measured and against what target, shown above the figures


# The one list of benchmarks, in the order they run and appear in BENCHMARKS.md.
BENCHMARKS = [
    Benchmark("threads", "Speed", "Torch threads", ("benchmarks/threads.py",),
              "VAE default size, 300 steps of 64 images, 1 against 2 intra-op threads, alone "
              "and next to a second training process; medians, settings interleaved."),
    Benchmark("throughput", "Speed", "Training throughput of every model",
              ("benchmarks/throughput.py",),
              "Every model at its default size and its notebook's batch size, in `train.fit`, "
              "1 torch thread; the models take turns, 3 rounds of 40 steps, median step time."),
    Benchmark("monitor_overhead", "Speed", "Monitor overhead", ("benchmarks/monitor_overhead.py",),
              "VAE default size, 1000 steps, evaluation every 250 with a 32-sample grid, runs "
              "with and without a headless monitor alternated; medians. Target: at most 5%."),
    Benchmark("sweep_overhead", "Speed", "Sweep overhead", ("benchmarks/sweep_overhead.py",),
              "6 tiny VAE runs through `gentools sweep` on the local Dask cluster against the "
              "same runs one after another with `gentools run`."),
    Benchmark("pixelcnn", "Speed", "PixelCNN training throughput and default job",
              ("benchmarks/pixelcnn.py",),
              "Gated PixelCNN against our re-implementation of the book's causal-conv ARM, "
              "300 steps each in alternating blocks of 10 in one process (ratio target >= 2x), "
              "then one `gentools run pixelcnn` at default parameters (target <= 82 nats)."),
    Benchmark("wavenet", "Speed", "WaveNet generation and default job (synthesised notes)",
              ("benchmarks/wavenet.py",),
              "Fast (numpy) against reference (torch) cached sampling, both with per-layer "
              "queues, alternated in one process, median of 5 rates each, for 1 and 48 clips; "
              "then `gentools run wavenet` on the synthesised notes, at default parameters and "
              "without the pitch clock (`-p clock false`, the control), and the generated notes "
              "judged again by pYIN where librosa is installed. Targets: the same codes from "
              "both samplers, <= 120 s, >= 90% of notes within a semitone of the pitch asked "
              "for at temperature 1.0 (the model's own notes; the default temperature 0.2 is "
              "reported beside it); test bits/sample beside the uniform, histogram and "
              "noise-floor baselines."),
    Benchmark("gpt_kv", "Speed", "GPT generation with and without the KV cache",
              ("benchmarks/transformers.py", "--parts", "kv"),
              "256 new tokens, context 256, with and without the cache, alternated; median of "
              "5 each (target >= 3x, aim 5x)."),
    Benchmark("gpt", "Speed", "GPT training step against nanoGPT's",
              ("benchmarks/transformers.py", "--parts", "gpt"),
              "nanoGPT's CPU configuration for 2000 iterations (val loss target <= 1.42), then "
              "the training step alternated with a nanoGPT-style step and with the same step "
              "under torch.compile (target 1.15x over nanoGPT-style)."),
    Benchmark("vae", "Quality", "VAE default job", ("benchmarks/vae.py",),
              "`gentools run vae` at default parameters, 3 runs (median wall time; the metrics "
              "must be identical). Targets: <= 90 nats (aim 86), <= 120 s."),
    Benchmark("gan", "Quality", "GAN against VAE samples", ("benchmarks/gan.py",),
              "Default GAN (WGAN-GP) and VAE jobs on the digits, one run each: Fréchet "
              "classifier distance of 1000 samples to the test digits and class coverage, "
              "beside a reference: real validation digits against the test digits, both unseen "
              "by the classifier (a reference, not a floor: the record of 2026-12-03 gives the "
              "training digits, which the classifier learned, instead). Targets: GAN run "
              "<= 120 s, every class >= 5%, GAN distance below the VAE's."),
    Benchmark("flow", "Quality", "Flow default job", ("benchmarks/flow.py",),
              "`gentools run flow` at default parameters, one run per dequantization. Targets: "
              "K=1 bound <= 95 nats (aim 90), <= 120 s."),
    Benchmark("diffusion", "Quality", "Diffusion default job", ("benchmarks/diffusion.py",),
              "`gentools run diffusion` on the digits at default parameters, one run (DDPM and "
              "flow matching on the same network, 1500 steps each). The last column is a "
              "reference, real digits against the test digits: in the record of 2026-12-03 the "
              "training digits, which the classifier learned; from now on the validation "
              "digits, which it never saw (a reference, not a floor). Targets: <= 120 s; "
              "Fréchet classifier distance of 1000 samples below the GAN's in the comparison "
              "(aim <= 25); >= 90% of guided samples classified as the class asked for; NLL "
              "bound below the per-pixel histogram (aim <= 95). `python benchmarks/diffusion.py "
              "--designs --no-job` re-measures the design table in the notebook."),
    Benchmark("compare", "Quality", "All image families on the digits test split",
              ("benchmarks/compare.py", "--seeds", "3", "--at-once", "2"),
              "`notebooks/compare.ipynb` with 3 seeds at each notebook's size for the digits, "
              "every model trained afresh, two runs at a time (target: <= 25 min). NLL in nats "
              "per image: exact for PixelCNN, upper bounds for the VAE, the flow and the "
              "diffusion model (each test image draws its own t); Fréchet classifier distance "
              "and class shares of 1000 samples (lower distance is better; 0.1 per class is a "
              "perfect spread), beside the table's two anchor rows: held-out real digits (the "
              "350 validation digits, unseen by the classifier) and the per-pixel histogram's "
              "samples. The parameters are the trained ones (a weight average is not counted); "
              "the table says which models saw the labels and sample with EMA weights."),
    Benchmark("fashion_compare", "Quality", "All image families on 28x28 Fashion-MNIST",
              ("benchmarks/compare.py", "--data", "fashion-mnist", "--seeds", "1",
               "--at-once", "2"),
              "Each image notebook with nothing but `-p data fashion-mnist`, two at a time (one "
              "torch thread each), then `notebooks/compare.ipynb` on those runs: test bits/dim "
              "over 256 levels on the 10,000 test images, and the Fréchet classifier distance "
              "of 250 samples per model in the feature space of a classifier trained on the "
              "Fashion-MNIST training images, beside 250 held-out real images (the reference) "
              "and 250 samples of the per-pixel histogram (the baseline). Targets: each job "
              "<= 15 min; every family's distance below the histogram's; the best <= 2x the "
              "reference (aim 1.5x); >= 85% of the diffusion model's guided samples in the "
              "class asked for (its notebook's figure, 1000 samples); its bound below the "
              "histogram's 4.59 bits/dim (aim 3.8). Context, not comparable: FIDs in Inception "
              "features of 21.5 to 30.7 for GANs (Lucic et al. 2018) and 29.3 for the two-stage "
              "VAE (Dai & Wipf 2019). One seed: a run of 3 seeds takes about three hours."),
    Benchmark("fashion", "Quality", "VAE, PixelCNN and flow on 28x28 Fashion-MNIST",
              ("benchmarks/fashion.py",),
              "Test bits/dim over 256 levels on the 10,000 test images with nothing but "
              "`-p data fashion-mnist` (Debian's dataset-fashion-mnist). Targets: each job <= 15 "
              "min of wall time, evaluation included; PixelCNN <= 2.95 (aim 2.8); the flow's and "
              "the VAE's bounds <= 3.8 (aim 3.5); all below the per-pixel histogram (4.59). "
              "First the PixelCNN's training rate against a straightforward gated PixelCNN of "
              "about the same size (target >= 1.5x). Anchors: Glow 3.14 bits/dim on 8-bit "
              "Fashion-MNIST (Kirichenko et al. 2020, a 2-scale Glow on a GPU); on MNIST gated "
              "PixelCNN 0.808 (UvA DL tutorial 12), multiscale flow 1.02 (UvA tutorial 11), Glow "
              "1.05, RealNVP 1.06. `python benchmarks/fashion.py --designs --no-jobs "
              "--no-throughput` re-measures the design tables. The first run of this benchmark "
              "(2026-12-06) stopped on printing its flow row, after its three jobs completed; "
              "the README gives its throughput figure, and the record above "
              "(fashion_compare) holds the three jobs, run again with the GAN and diffusion "
              "jobs."),
    Benchmark("bert", "Quality", "BERT where the input hides the answer (pydoc text)",
              ("benchmarks/transformers.py", "--parts", "bert"),
              "The BERT notebook's defaults trained in `train.fit`; val scored with one seeded "
              "15% masking, split by what the input showed (`[MASK]`, a random token, the token "
              "unchanged), beside the most frequent training token and the unigram at the same "
              "`[MASK]` positions. Target: accuracy at `[MASK]` >= 3x that baseline."),
    Benchmark("transformer_notebooks", "Quality",
              "GPT and BERT default jobs: val loss, masked-token accuracy",
              ("benchmarks/transformers.py", "--parts", "notebooks"),
              "`gentools run gpt` and `gentools run bert` at default parameters, one run each. "
              "Targets: <= 120 s each, BERT accuracy at `[MASK]` inputs >= 3x always guessing "
              "the most frequent token at the same positions. "
              "GPT's default is 1200 steps; the val loss target (<= 1.42 nats/char) is for "
              "nanoGPT's 2000 iterations, measured under \"GPT training step against "
              "nanoGPT's\". NOTE: the record of 2026-12-03 ran BERT's earlier default of 1000 "
              "steps; the default is now 850, for margin under 120 s."),
]


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    from gentools import repro

    mem = ""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        kb = next(int(line.split()[1]) for line in lines if line.startswith("MemTotal"))
        mem = f"{kb / 2**20:.0f} GB"
    except (OSError, StopIteration):
        pass
    return {
        "cpu": repro.cpu_name(),
        "cores": os.cpu_count(),
        "memory": mem,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": int(os.environ.get("GENTOOLS_THREADS", repro.DEFAULT_THREADS)),
        "platform": platform.platform(),
    }


def git_commit() -> dict:
    from gentools.repro import git_state

    return git_state(ROOT)


def run(bench: Benchmark) -> dict:
    """Run one benchmark script and return its record (also written to results/)."""
    command = "python " + " ".join(bench.args)
    print(f"== {bench.name}: {command}", flush=True)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    clock = time.perf_counter()
    peak = load_before[0]
    with subprocess.Popen([sys.executable, *bench.args], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        reader = ThreadPoolExecutor(1).submit(proc.communicate)  # drains both pipes
        while not reader.done():
            peak = max(peak, os.getloadavg()[0])  # the 1-minute load, sampled while it runs
            time.sleep(5)
        stdout, stderr = reader.result()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    record = {
        "name": bench.name,
        "command": command,
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - clock, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "load_peak": round(peak, 2),
        "machine": machine(),
        "git": git_commit(),
        "returncode": done.returncode,
        "markdown": done.stdout.strip(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    if done.returncode != 0:
        record["stderr_tail"] = done.stderr[-4000:]
        (RESULTS / f"{bench.name}.failed.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"   FAILED (exit {done.returncode}); previous record kept\n{done.stderr[-2000:]}")
    else:
        (RESULTS / f"{bench.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        (RESULTS / f"{bench.name}.failed.json").unlink(missing_ok=True)
        print(f"   done in {record['wall_seconds']:.0f} s, load {record['load_before']} -> "
              f"{record['load_after']}", flush=True)
    return record


# --- BENCHMARKS.md --------------------------------------------------------------------------

HEADER = """# Benchmarks

Written by `python benchmarks/suite.py` (`make benchmarks`) from the records in
`benchmarks/results/`; do not edit by hand. Each section names the command that produced
its figures, the date, the machine and the load average (1, 5 and 15 minutes) before and
after it ran: CPU timings on a shared machine move with the load, so compare timings only
within one section, where ratios come from the same run. Timings are medians of repeated
runs unless a section says "one run". `python benchmarks/suite.py --only NAME` re-runs one
benchmark; `--render` rewrites this file from the stored records.

Every likelihood is on the digits test split (447 images, 64 pixels, 17 levels) unless
said otherwise. The anchors (an independent per-pixel 17-way histogram fitted on the train
split, uniform, real training digits against the test digits) are the values the runs of
each section recorded, printed in that section; none is typed in here.
"""


def describe_machine(m: dict) -> str:
    gpu = m.get("gpu") or "no GPU"
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory', '?')}, {gpu}, "
            f"Python {m.get('python', '?')}, torch {m.get('torch', '?')}, "
            f"{m.get('torch_threads', '?')} torch thread(s)")


def provenance(record: dict) -> str:
    load = lambda xs: "/".join(f"{x:.2f}" for x in xs)  # noqa: E731
    git = record.get("git") or {}
    commit = (git.get("commit") or "?")[:8] + (" (dirty)" if git.get("dirty") else "")
    return (f"`{record['command']}`, {record['started_at']} UTC, {record['wall_seconds']:.0f} s, "
            f"commit {commit}; {describe_machine(record['machine'])}; load "
            f"{load(record['load_before'])} before, {load(record['load_after'])} after"
            + (f", 1-minute load up to {record['load_peak']:.2f} while it ran." if "load_peak" in
               record else "."))


def render() -> str:
    parts = [HEADER]
    for section in dict.fromkeys(b.section for b in BENCHMARKS):
        parts.append(f"\n## {section}\n")
        for bench in (b for b in BENCHMARKS if b.section == section):
            parts.append(f"\n### {bench.title}\n")
            if bench.note:
                parts.append(f"\n{bench.note}\n")
            path = RESULTS / f"{bench.name}.json"
            if not path.is_file():
                parts.append(f"\nNot yet measured with the suite (`python benchmarks/suite.py "
                             f"--only {bench.name}`).\n")
                continue
            record = json.loads(path.read_text())
            parts.append(f"\n{provenance(record)}\n\n{record['markdown']}\n")
    return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this benchmark (repeatable)")
    ap.add_argument("--render", action="store_true", help="only rewrite BENCHMARKS.md")
    ap.add_argument("--list", action="store_true", help="list the benchmarks")
    args = ap.parse_args()
    names = [b.name for b in BENCHMARKS]
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.name:<22} {b.section:<8} python {' '.join(b.args)}")
        return
    unknown = [n for n in args.only if n not in names]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
    failed = []
    if not args.render:
        for bench in BENCHMARKS:
            if not args.only or bench.name in args.only:
                failed += [bench.name] if run(bench)["returncode"] else []
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
