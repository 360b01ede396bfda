"""Tests for gentools.monitor: curves, samples, throttling, Stop, headless output, and (slow)
a Stop click that reaches a real ipykernel while a training cell is still running."""

import math
import queue
import time
import types
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import gentools.monitor as monitor
from gentools.monitor import Monitor

REPO = Path(__file__).resolve().parents[1]


def make_state(steps: int = 100):
    return types.SimpleNamespace(
        model=None,
        optimizers={},
        cfg=types.SimpleNamespace(steps=steps, eval_every=10),
        device="cpu",
        step=0,
        metrics={},
        history=[],
        stop=False,
        elapsed=0.0,
    )


def train_step(mon, state, **metrics):
    state.step += 1
    state.metrics = metrics
    state.history.append({"step": state.step, "split": "train", "time": 0.0, **metrics})
    mon.on_step(state)


def evaluate(mon, state, **metrics):
    state.history.append({"step": state.step, "split": "val", "time": 0.0, **metrics})
    mon.on_eval(state)


@pytest.fixture
def shown(monkeypatch):
    """Record what the monitor displays (it displays nothing outside IPython)."""
    objs = []
    monkeypatch.setattr(monitor, "_show", objs.append)
    return objs


def run(mon, state, n_steps=20, eval_every=10):
    mon.on_start(state)
    for i in range(1, n_steps + 1):
        train_step(mon, state, loss=1.0 / i, kl=float(i))
        if i % eval_every == 0:
            evaluate(mon, state, loss=2.0 / i, kl=-float(i))
    state.elapsed = 2.0
    mon.on_end(state)


def test_curves_hold_train_and_val_values(shown):
    mon, state = Monitor(metrics=("loss", "kl"), redraw_every=0.0), make_state()
    run(mon, state)
    names = [(t.name, t.xaxis) for t in mon.fig.data]
    assert names == [("train", "x"), ("val", "x"), ("train", "x2"), ("val", "x2")]
    train_loss, val_loss, train_kl, val_kl = mon.fig.data
    assert list(train_loss.x) == list(range(1, 21))
    assert np.allclose(train_loss.y, [1.0 / i for i in range(1, 21)])
    assert list(val_loss.x) == [10, 20] and np.allclose(val_loss.y, [0.2, 0.1])
    assert np.allclose(train_kl.y, np.arange(1, 21)) and np.allclose(val_kl.y, [-10, -20])


def test_on_start_shows_the_widget_unless_already_displayed(shown, monkeypatch):
    mon = Monitor()
    mon.on_start(make_state())
    assert shown == [mon.widget]
    shown.clear()
    monkeypatch.setattr(monitor, "display", lambda obj: None)
    mon2 = Monitor()
    mon2._ipython_display_()
    mon2.on_start(make_state())
    assert shown == []


def test_sample_grid_updates_at_each_eval(shown):
    calls = []

    def sample():
        calls.append(1)
        return torch.full((4, 1, 8, 8), len(calls) / 10)

    mon, state = Monitor(sample=sample, redraw_every=1e9), make_state()
    mon.on_start(state)
    assert mon.samples.value == b"" and not calls
    train_step(mon, state, loss=1.0)
    evaluate(mon, state, loss=1.0)
    first = bytes(mon.samples.value)
    assert len(calls) == 1 and first[:4] == b"\x89PNG"
    train_step(mon, state, loss=1.0)
    assert bytes(mon.samples.value) == first  # steps do not call sample
    evaluate(mon, state, loss=1.0)
    assert len(calls) == 2 and bytes(mon.samples.value) != first


def test_stop_button_sets_state_stop_and_disables_itself(shown, capsys):
    mon, state = Monitor(), make_state()
    mon.on_start(state)
    assert not mon.stop_button.disabled
    train_step(mon, state, loss=1.0)
    mon.stop_button.click()
    assert state.stop is True and mon.stop_button.disabled
    assert "ETA" in mon.status_text(state)
    mon.on_end(state)
    assert mon.stop_button.description == "Stopped"
    assert "stopped at step 1" in capsys.readouterr().out
    assert "step 1/" in mon.status.value and "ETA" not in mon.status.value  # over: no ETA


def test_redraw_is_throttled(shown):
    mon, state = Monitor(redraw_every=1e9), make_state(1000)
    mon.on_start(state)
    assert mon.redraws == 1
    for i in range(200):
        train_step(mon, state, loss=float(i))
    assert mon.redraws == 1 and len(mon.fig.data[0].x) == 0  # on_step never redrew
    evaluate(mon, state, loss=0.5)
    assert mon.redraws == 2 and len(mon.fig.data[0].x) == 200 and len(mon.fig.data[1].x) == 1
    train_step(mon, state, loss=0.0)
    mon.on_end(state)
    assert mon.redraws == 3 and len(mon.fig.data[0].x) == 201


def test_redraw_every_zero_redraws_each_step(shown):
    mon, state = Monitor(redraw_every=0.0), make_state()
    mon.on_start(state)
    for i in range(5):
        train_step(mon, state, loss=float(i))
    assert mon.redraws == 1 + 5 and len(mon.fig.data[0].x) == 5


def test_on_end_displays_a_small_static_figure_and_prints_a_summary(shown, capsys):
    mon, state = Monitor(redraw_every=1e9), make_state(5000)
    mon.on_start(state)
    for i in range(5000):
        train_step(mon, state, loss=float(i))
    evaluate(mon, state, loss=1.5)
    state.elapsed = 10.0
    mon.on_end(state)
    assert len(mon.fig.data[0].x) == monitor.LIVE_POINTS  # the live curve is binned too
    static = [o for o in shown if isinstance(o, go.Figure)]
    assert len(static) == 1 and not isinstance(static[0], go.FigureWidget)
    train = static[0].data[0]
    assert len(train.x) == monitor.STATIC_POINTS
    assert np.mean(train.y) == pytest.approx(np.mean(np.arange(5000.0)))  # bin means, equal bins
    assert train.x[0] == pytest.approx(5.5) and train.x[-1] == pytest.approx(4995.5)
    assert list(static[0].data[1].y) == [1.5]
    out = capsys.readouterr().out
    assert "finished at step 5000" in out and "500.0 steps/s" in out
    assert "train loss 4999" in out and "val loss 1.5" in out
    assert mon.stop_button.disabled and mon.stop_button.description == "Finished"


def test_status_line_has_rate_eta_and_metrics(shown, monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.1))  # 10 steps per second
    fake_time = types.SimpleNamespace(perf_counter=lambda: float(next(clock)))
    monkeypatch.setattr(monitor, "time", fake_time)
    mon, state = Monitor(redraw_every=0.0), make_state(100)
    mon.on_start(state)
    for _ in range(20):
        train_step(mon, state, loss=0.25)
    assert mon.steps_per_second() == pytest.approx(10.0)
    text = mon.status.value
    assert "step 20/100" in text and "10.0 steps/s" in text and "ETA 0:08" in text
    assert "train loss 0.25" in text


def test_bin_mean_keeps_short_curves_and_averages_long_ones():
    x, y = monitor._bin_mean([1, 2, 3], [4.0, 5.0, 6.0], 10)
    assert list(x) == [1, 2, 3] and list(y) == [4, 5, 6]
    x, y = monitor._bin_mean(list(range(10)), list(range(10)), 5)
    assert list(x) == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert math.isfinite(monitor.Monitor().steps_per_second()) is False


# ---- a real kernel: the Stop click must arrive while the training cell still runs ------------
TRAIN_CELL = r"""
import time
import torch
from torch.utils.data import TensorDataset
from types import SimpleNamespace
from gentools.models.base import GenerativeModel
from gentools.monitor import Monitor
from gentools.train import TrainConfig, fit_async

class Line(GenerativeModel):  # y = w x, fitted by least squares; each step sleeps a little
    def __init__(self):
        super().__init__(None)
        self.w = torch.nn.Parameter(torch.zeros(1))
    def loss(self, batch):
        (x,) = batch
        time.sleep(0.002)
        return {"loss": ((self.w * x - 2 * x) ** 2).mean()}

data = SimpleNamespace(train=TensorDataset(torch.randn(256)), val=TensorDataset(torch.randn(64)))
mon = Monitor(redraw_every=0.05)
print("MODEL_ID", mon.stop_button.model_id, flush=True)
t0 = time.perf_counter()
state = await fit_async(Line(), data, TrainConfig(steps=10**6, batch_size=8, eval_every=10**6,
                                                  progress=False), callbacks=[mon])
print("RESULT", state.stop, mon.stop_button.disabled, round(time.perf_counter() - t0, 2),
      state.step, flush=True)
"""


@pytest.mark.slow
def test_stop_click_is_handled_while_the_cell_runs():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(REPO))
    try:
        train_id = kc.execute(TRAIN_CELL)
        queued_id = clicked_at = None
        text = {}  # parent msg_id -> stdout
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            parent = msg["parent_header"].get("msg_id")
            content = msg["content"]
            if msg["msg_type"] == "error":
                pytest.fail("\n".join(content["traceback"]))
            if msg["msg_type"] == "stream":
                text[parent] = text.get(parent, "") + content["text"]
                if queued_id is None and "MODEL_ID" in text.get(train_id, ""):
                    model_id = text[train_id].split("MODEL_ID")[1].split()[0]
                    # a cell queued behind the running one must still run, after it
                    queued_id = kc.execute("print('QUEUED', state.stop, state.step)")
                    time.sleep(1.0)  # let training run a while before clicking
                    click = {"method": "custom", "content": {"event": "click"}}
                    kc.shell_channel.send(
                        kc.session.msg("comm_msg", {"comm_id": model_id, "data": click})
                    )
                    clicked_at = time.monotonic()
            if (
                msg["msg_type"] == "status"
                and content["execution_state"] == "idle"
                and parent == queued_id
            ):
                break
        assert clicked_at is not None, text
        result = text[train_id].split("RESULT")[1].split()
        assert result[:2] == ["True", "True"], text[train_id]  # state.stop set, button disabled
        assert 0.9 < float(result[2]) < 10.0  # ended soon after the click
        assert 0 < int(result[3]) < 10**6  # after some steps, long before the last
        assert text.get(queued_id, "").startswith("QUEUED True"), text
        replies = []  # a late kernel_info_reply from the start-up handshake may come first
        while len(replies) < 2:
            msg = kc.get_shell_msg(timeout=10)
            if msg["msg_type"] != "kernel_info_reply":
                replies.append(msg)
        assert [r["parent_header"]["msg_id"] for r in replies] == [train_id, queued_id]
        assert all(r["content"]["status"] == "ok" for r in replies)
        reply = kc.execute_interactive("x = 1 + 1", timeout=10)  # the kernel is still responsive
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_on_end_leaves_the_last_sample_grid_as_a_static_png(shown):
    from IPython.display import Image

    mon, state = (
        Monitor(sample=lambda: torch.full((4, 1, 8, 8), 0.25), redraw_every=1e9),
        make_state(),
    )
    run(mon, state)
    pictures = [o for o in shown if isinstance(o, Image)]
    assert len(pictures) == 1 and pictures[0].data == bytes(mon.samples.value)
    mon2 = Monitor(redraw_every=1e9)  # no sample callable: no picture
    shown.clear()
    run(mon2, make_state())
    assert not [o for o in shown if isinstance(o, Image)]


def test_the_live_pictures_give_way_to_their_static_copies_at_the_end(shown):
    mon = Monitor(sample=lambda: torch.full((4, 1, 8, 8), 0.25), redraw_every=1e9)
    state = make_state()
    mon.on_start(state)
    assert mon.fig in mon.live.children and mon.samples in mon.live.children
    assert mon.live in mon.widget.children
    run(mon, state)
    assert mon.live not in mon.widget.children  # one figure and one grid: the static ones
    assert len([o for o in shown if isinstance(o, go.Figure)]) == 1
    mon.on_start(state)  # training again shows the live pictures again
    assert mon.live in mon.widget.children


def test_no_sample_callable_no_empty_image():
    mon = Monitor()
    assert mon.samples not in mon.live.children and mon.fig in mon.live.children
