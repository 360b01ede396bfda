"""Benchmark: the wall-clock overhead of gentools.monitor.Monitor on a small training loop.

A small MLP trains on random data for a fixed number of steps in a plain loop that calls the
callback methods the way gentools.train.fit does (on_start, on_step, on_eval under no_grad,
on_end) and keeps the same history rows. Runs with and without a headless Monitor alternate,
and the script prints the median times and the overhead ratio. Stand-alone: it does not
import gentools.train.

    python benchmarks/monitor_overhead.py [--steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import types

import torch
from torch import nn

from gentools.monitor import Monitor


def train(steps: int, eval_every: int, callbacks: list, seed: int = 0) -> float:
    """Train a fresh MLP for `steps` steps; return the loop's wall-clock seconds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4096, 64, generator=g)  # (N, 64) random "images"
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = types.SimpleNamespace(
        model=model,
        optimizers={"model": opt},
        device="cpu",
        step=0,
        metrics={},
        history=[],
        stop=False,
        elapsed=0.0,
        cfg=types.SimpleNamespace(steps=steps, eval_every=eval_every),
    )

    def call(name):
        for cb in callbacks:
            getattr(cb, name)(state)

    t0 = time.perf_counter()
    call("on_start")
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (128,), generator=g)
        batch = x[idx]  # (128, 64)
        loss = ((model(batch) - batch) ** 2).mean()  # an autoencoder's reconstruction loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step, state.elapsed = step, time.perf_counter() - t0
        state.metrics = {"loss": loss.item()}
        state.history.append(
            {"step": step, "split": "train", "time": state.elapsed, **state.metrics}
        )
        call("on_step")
        if state.stop:
            break
        if step % eval_every == 0:
            model.eval()
            with torch.no_grad():
                val = ((model(x[:512]) - x[:512]) ** 2).mean().item()
                state.history.append(
                    {"step": step, "split": "val", "time": state.elapsed, "loss": val}
                )
                call("on_eval")
            model.train()
    call("on_end")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def run_with_monitor() -> float:
        model_out = torch.rand(16, 1, 8, 8)
        mon = Monitor(sample=lambda: model_out, metrics=("loss",), redraw_every=1.0)
        with contextlib.redirect_stdout(io.StringIO()):  # on_end's summary line
            return train(args.steps, args.eval_every, [mon])

    train(200, args.eval_every, [])  # warm-up
    plain, monitored = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        plain.append(train(args.steps, args.eval_every, []))
        monitored.append(run_with_monitor())
    p, m = statistics.median(plain), statistics.median(monitored)
    print(f"steps {args.steps}, eval every {args.eval_every}, repeats {args.repeats}, 1 thread")
    print(f"plain loop   median {p:.3f} s  ({args.steps / p:.0f} steps/s)  runs {plain}")
    print(f"with Monitor median {m:.3f} s  ({args.steps / m:.0f} steps/s)  runs {monitored}")
    print(f"overhead {100 * (m / p - 1):+.2f}%  (ratio {m / p:.4f})")


if __name__ == "__main__":
    main()
