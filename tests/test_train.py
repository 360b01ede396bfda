"""The training loop and checkpoints: resume, NaN guard, stop flag, schedule, batches."""

import math
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from gentools import checkpoint, train
from gentools.checkpoint import CHECKPOINT, load_model
from gentools.models.base import GenerativeModel
from gentools.train import TrainConfig, TrainingDiverged, batch_indices, fit, lr_factor


class Regressor(GenerativeModel):
    """A tiny model with dropout (it uses the RNG) and a loss that can be made NaN."""

    class Config:
        def __init__(self, nan_after: int = -1):
            self.nan_after = nan_after

    def __init__(self, config=None):
        super().__init__(config or self.Config())
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1)
        )
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def config_dict(self):
        return {"nan_after": self.config.nan_after}

    def loss(self, batch):
        x, y = batch
        mse = (self.net(x).squeeze(-1) - y).pow(2).mean()
        if self.training:
            self.calls += 1
            if 0 <= self.config.nan_after < self.calls:
                mse = mse * float("nan")
        return {"loss": mse, "mse": mse}


def make_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return SimpleNamespace(train=TensorDataset(x, y), val=TensorDataset(x[:16], y[:16]))


def cfg(tmp_path=None, **kw):
    base = dict(steps=30, batch_size=8, lr=1e-2, eval_every=10, progress=False, seed=3)
    return TrainConfig(**{**base, "out_dir": str(tmp_path) if tmp_path else None, **kw})


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_step(self, state):
        if state.step == self.step:
            state.stop = True


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_equals_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    straight = Regressor()
    s1 = fit(straight, make_data(), cfg(tmp_path / "a"))

    torch.manual_seed(0)
    first = Regressor()
    part = fit(first, make_data(), cfg(tmp_path / "b"), callbacks=[StopAt(13)])
    assert part.step == 13
    torch.manual_seed(123)  # a fresh process would not share our RNG: resume must restore it
    resumed = Regressor()
    s2 = fit(resumed, make_data(), cfg(tmp_path / "b"))

    assert s2.step == s1.step == 30
    for k, v in weights(straight).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    vals1 = [h for h in s1.history if h["split"] == "val"]
    vals2 = [h for h in s2.history if h["split"] == "val" and h["step"] % 10 == 0]
    assert [(h["step"], h["mse"]) for h in vals1] == [(h["step"], h["mse"]) for h in vals2]
    train1 = [h["mse"] for h in s1.history if h["split"] == "train"]
    train2 = [h["mse"] for h in s2.history if h["split"] == "train"]
    assert train1 == train2


class SignalAt:
    """Sends a signal to this process at one step, as a scheduler or a kernel interrupt would."""

    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_step(self, state):
        if state.step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_at_the_step_end_and_resume_is_exact(tmp_path, signum):
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    torch.manual_seed(0)
    straight = Regressor()
    fit(straight, make_data(), cfg(tmp_path / "a"))

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signum)} after step 12"):
        fit(Regressor(), make_data(), cfg(tmp_path / "b"), callbacks=[SignalAt(12, signum)])
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
    assert checkpoint.load(tmp_path / "b" / CHECKPOINT)[1]["step"] == 12
    resumed = Regressor()
    assert fit(resumed, make_data(), cfg(tmp_path / "b")).step == 30
    for k, v in weights(straight).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_checkpoints_by_the_clock(tmp_path, monkeypatch):
    clock = iter(0.25 * i for i in range(10_000))  # each reading of the clock: 0.25 s later
    monkeypatch.setattr(train.time, "perf_counter", lambda: next(clock))
    saved = []
    monkeypatch.setattr(checkpoint, "save_state", lambda state, path: saved.append(state.step))
    fit(Regressor(), make_data(), cfg(tmp_path, steps=13, checkpoint_seconds=1.0))
    assert saved == [4, 8, 12, 13]  # every 4 steps of 0.25 s, and at the end
    saved.clear()
    fit(Regressor(), make_data(), cfg(tmp_path / "off", steps=13, checkpoint_seconds=0))
    assert saved == [13]
    assert TrainConfig().checkpoint_seconds == 60.0


def test_config_from_notebook_parameters():
    params = {"steps": 5, "lr": 0.1, "seed": 2, "decoder": "gaussian", "out_dir": "x"}
    config = TrainConfig.from_params(params, progress=False, lr=0.2)
    assert (config.steps, config.lr, config.seed, config.out_dir) == (5, 0.2, 2, "x")
    assert config.progress is False and config.batch_size == TrainConfig().batch_size


def test_same_seed_same_weights_and_different_seed_differs():
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        model = Regressor()
        fit(model, make_data(), cfg(seed=seed))
        runs.append(weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    model = Regressor(Regressor.Config(nan_after=17))
    with pytest.raises(TrainingDiverged) as err:
        fit(model, make_data(), cfg(tmp_path, checkpoint_every=5))
    msg = str(err.value)
    assert "step 18" in msg and "nan" in msg and "step 15" in msg and str(tmp_path) in msg
    tensors, meta = checkpoint.load(tmp_path / CHECKPOINT)
    assert meta["step"] == 15
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))


def test_nan_guard_without_checkpoint_says_so():
    with pytest.raises(TrainingDiverged, match="no checkpoint was written"):
        fit(Regressor(Regressor.Config(nan_after=2)), make_data(), cfg())


def test_stop_flag_ends_cleanly_and_saves(tmp_path):
    state = fit(Regressor(), make_data(), cfg(tmp_path), callbacks=[StopAt(7)])
    assert state.step == 7
    assert state.history[-1]["split"] == "val" and state.history[-1]["step"] == 7
    assert checkpoint.load(tmp_path / CHECKPOINT)[1]["step"] == 7


def test_callbacks_see_every_step_and_eval():
    seen = []

    class Spy:
        def on_start(self, s):
            seen.append(("start", s.step))

        def on_step(self, s):
            seen.append(("step", s.step))

        def on_eval(self, s):
            assert not s.model.training and not torch.is_grad_enabled()
            seen.append(("eval", s.step))

        def on_end(self, s):
            seen.append(("end", s.step))

    fit(Regressor(), make_data(), cfg(steps=20), callbacks=[Spy()])
    assert seen[0] == ("start", 0) and seen[-1] == ("end", 20)
    assert [s for e, s in seen if e == "step"] == list(range(1, 21))
    assert [s for e, s in seen if e == "eval"] == [10, 20]


def test_checkpoint_round_trip_with_tied_weights(tmp_path):
    emb = torch.nn.Embedding(5, 3)
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = emb.weight  # tied, as in GPT
    tensors = {"emb": emb.weight, "head": head.weight, "step": torch.tensor(3)}
    path = checkpoint.save(tmp_path / "c.safetensors", tensors, {"a": [1, 2.5, "x"]})
    loaded, meta = checkpoint.load(path)
    assert meta == {"a": [1, 2.5, "x"]}
    assert torch.equal(loaded["emb"], emb.weight) and torch.equal(loaded["head"], emb.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left


def test_checkpoint_rejects_foreign_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a gentools checkpoint"):
        checkpoint.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.safetensors")


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = checkpoint.optimizer_to_flat("main", opt)
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.5)
    opt2.load_state_dict(checkpoint.optimizer_from_flat("main", tensors, meta))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            assert torch.equal(value, b["state"][pid][key])


def test_load_model_rebuilds_from_checkpoint(tmp_path):
    model = Regressor()
    fit(model, make_data(), cfg(tmp_path, steps=5))
    again = load_model(Regressor, tmp_path / CHECKPOINT)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_lr_schedule_warmup_and_cosine():
    c = TrainConfig(steps=110, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, c) == pytest.approx(0.1)
    assert lr_factor(9, c) == pytest.approx(1.0)
    assert lr_factor(10, c) == pytest.approx(1.0)
    assert lr_factor(60, c) == pytest.approx(0.55)
    assert lr_factor(110, c) == pytest.approx(0.1)
    assert lr_factor(50, TrainConfig(steps=100, schedule="constant")) == 1.0


def test_batches_cover_each_epoch_once_and_differ_between_epochs():
    epoch0 = torch.cat([batch_indices(20, 4, s, seed=1) for s in range(5)])
    epoch1 = torch.cat([batch_indices(20, 4, s, seed=1) for s in range(5, 10)])
    assert sorted(epoch0.tolist()) == list(range(20)) == sorted(epoch1.tolist())
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(batch_indices(20, 4, 7, seed=1), batch_indices(20, 4, 7, seed=1))
    with pytest.raises(ValueError, match="larger than the training set"):
        batch_indices(3, 4, 0, seed=1)


def test_lr_applied_to_optimizer():
    seen = []

    class LR:
        def on_step(self, s):
            seen.append(s.optimizers["main"].param_groups[0]["lr"])

    fit(Regressor(), make_data(), cfg(steps=10, lr=0.5, min_lr_ratio=0.0), callbacks=[LR()])
    assert seen[0] == pytest.approx(0.5)
    assert seen[5] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.5)))


class Line(torch.nn.Module):
    """A linear regression with the training contract fit() needs."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 1)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict:
        return {"main": torch.optim.SGD(self.parameters(), lr=lr)}

    def loss(self, batch) -> dict:
        x, y = batch
        return {"loss": (self.net(x).squeeze(-1) - y).pow(2).mean()}

    def training_step(self, batch, optimize) -> dict:
        out = self.loss(batch)
        optimize(out["loss"])
        return out


class Residual(torch.nn.Module):
    """x + tanh(W x): a block of the model's own, as the gentools blocks are."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.lin(x))


class Stack(Line):
    """Line's contract over blocks in a ModuleList, the way the Transformers hold theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(Residual() for _ in range(2))

    def loss(self, batch) -> dict:
        x, y = batch
        for block in self.blocks:
            x = block(x)
        return {"loss": (self.net(x).squeeze(-1) - y).pow(2).mean()}


def test_compile_option_compiles_every_called_module_in_place(monkeypatch, tmp_path) -> None:
    import copy
    from types import SimpleNamespace

    from torch.utils.data import TensorDataset

    compiled, graphs = [], []
    original = torch.compile

    def counting(graph, example_inputs):  # a torch.compile backend that runs the graph eagerly
        graphs.append(graph)
        return graph.forward

    def compile_eagerly(fn, **kwargs):  # the real torch.compile, without a C++ toolchain
        compiled.append(fn.__self__)  # Module.compile compiles the module's bound __call__
        return original(fn, backend=counting)

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    data = SimpleNamespace(train=TensorDataset(x, x.sum(1)), val=TensorDataset(x[:8], x[:8].sum(1)))
    weights = {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = Stack()
        cfg = TrainConfig(steps=5, batch_size=8, eval_every=5, progress=False, compile=flag,
                          out_dir=str(tmp_path / str(flag)))  # fmt: skip
        fit(model, data, cfg)
        weights[flag] = {k: v.clone() for k, v in model.state_dict().items()}
    # the ModuleList is never called, so its members are compiled, not the list
    assert compiled == [model.net, *model.blocks]
    assert graphs  # the blocks ran through the compiler (torch's own Linear may not: see NOTE)
    twin = copy.deepcopy(model)  # runs its own weights, not the original's
    for p in twin.parameters():
        p.data.zero_()
    assert torch.equal(twin.net(x), torch.zeros(64, 1)) and model.net(x).abs().sum() > 0
    assert torch.equal(twin.blocks[0](x), x)  # zero weights: x + tanh(0)
    assert list(weights[True]) == list(weights[False])
    assert list(weights[True])[:2] == ["net.weight", "net.bias"]
    assert all(torch.allclose(weights[True][k], weights[False][k]) for k in weights[True])


def test_fit_async_trains_exactly_as_fit_and_yields_after_every_step():
    """The same weights and history as `fit`, with the event loop getting a turn after each
    step: a task that counts its turns sees one per step (a notebook's widgets get theirs)."""
    import asyncio

    torch.manual_seed(0)
    sync_model = Regressor()
    async_model = Regressor()
    async_model.load_state_dict(sync_model.state_dict())
    done = fit(sync_model, make_data(), cfg())

    async def train_beside_a_counter():
        turns = []

        async def count():
            while True:
                turns.append(1)
                await asyncio.sleep(0)

        counter = asyncio.create_task(count())
        state = await train.fit_async(async_model, make_data(), cfg())
        counter.cancel()
        return state, len(turns)

    state, turns = asyncio.run(train_beside_a_counter())
    assert state.step == done.step == 30
    assert [{k: v for k, v in row.items() if k != "time"} for row in state.history] == \
        [{k: v for k, v in row.items() if k != "time"} for row in done.history]
    for a, b in zip(async_model.state_dict().values(), sync_model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert 30 <= turns <= 31
