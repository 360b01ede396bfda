"""WaveNet: causality and receptive field from gradients, cached generation against the full
forward pass, fast equals reference sampling, smoke."""

import math

import numpy as np
import pytest
import torch

from gentools import checkpoint, repro
from gentools.checkpoint import load_model
from gentools.data.audio import load_audio
from gentools.files import read_json
from gentools.models.wavenet import WaveNet, draw
from gentools.parameters import find_notebook
from gentools.record import METRICS
from gentools.runner import jobs
from gentools.runner.params import tiny_parameters
from gentools.train import TrainConfig, fit


@pytest.fixture(scope="module")
def tiny():
    repro.set_threads()  # the gentools default; two threads next to busy jobs crawl
    torch.manual_seed(0)
    return WaveNet.from_size("tiny").double().eval()


def test_receptive_field_is_computed_and_the_default_covers_1024():
    assert WaveNet.from_size("tiny").receptive_field == 2 + 2 * (1 + 2 + 4 + 8)
    default = WaveNet.from_size("default")
    assert default.dilations == [2**i for i in range(10)]  # 1 .. 512
    assert default.receptive_field == 1025
    assert WaveNet.from_size("gpu").receptive_field == 2 + 3 * 1023


def test_causality_and_receptive_field_from_gradients(tiny):
    """d logits_t / d e_s is nonzero exactly for t - R <= s <= t - 1 (R the receptive field)."""
    T, R = 80, tiny.receptive_field
    e = torch.randn(2, tiny.config.residual_channels, T, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([0, 1])
    for t in (0, 5, 40, 79):
        e.grad = None
        tiny.logits_from_embedded(e, idx, idx)[:, :, t].pow(2).sum().backward()
        seen = (e.grad.abs().sum((0, 1)) > 0).nonzero().flatten().tolist()
        assert seen == list(range(max(0, t - R), t)), (t, seen)


@pytest.mark.parametrize("harmonics", [2, 0])
def test_reference_steps_equal_the_teacher_forced_pass_and_fast_draws_the_same_codes(harmonics):
    """Drive the reference sampler by hand past the receptive field (32), so every queue wraps:
    its per-step logits equal the full forward pass on the codes it drew, `sample` draws the
    same codes from the same seed with either sampler, and the fast logits match to rounding."""
    torch.manual_seed(0)
    model = WaveNet.from_size("tiny", harmonics=harmonics).double().eval()
    n, T, temp = 3, 70, 0.7
    inst, pit = torch.tensor([2, 0, 1]), torch.tensor([0, 5, 24])
    u = torch.rand(T, n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    codes, steps = torch.zeros(n, T, dtype=torch.int64), []
    for t, logits in enumerate(model.reference_steps(codes, inst, pit)):
        steps.append(logits)
        codes[:, t] = torch.from_numpy(draw(logits, u[t], temp))
    with torch.no_grad():
        full = model(codes, inst, pit)  # (n, levels, T), phase level 0 as in generation
    assert torch.allclose(torch.stack(steps, 2), full, rtol=0, atol=1e-10)
    fast_logits = torch.from_numpy(np.stack(list(model.fast_steps(codes, inst, pit)), 2))
    assert torch.allclose(fast_logits, full, rtol=0, atol=1e-10)
    g = lambda: torch.Generator().manual_seed(7)
    for sampler in ("reference", "fast"):
        drawn = model.sample(n, g(), length=T, instrument=inst, pitch=pit, temperature=temp,
                             sampler=sampler)
        assert drawn.dtype == torch.int64 and torch.equal(drawn, codes), sampler
    other = model.sample(n, torch.Generator().manual_seed(8), length=T, instrument=inst,
                         pitch=pit, temperature=temp)
    assert not torch.equal(other, codes)


def test_fast_and_reference_draw_the_same_codes_in_float32():
    """float32 (the default dtype): the logits differ by rounding only, draws still agree."""
    torch.manual_seed(1)
    model = WaveNet.from_size("tiny", stacks=1, cycle=5).eval()
    g = lambda: torch.Generator().manual_seed(3)
    kw = dict(length=50, instrument=0, pitch=3, temperature=1.3)
    fast = model.sample(2, g(), **kw)
    reference = model.sample(2, g(), sampler="reference", **kw)
    assert torch.equal(fast, reference)


def test_draw_is_the_inverse_cdf():
    logits = torch.log(torch.tensor([[0.25, 0.5, 0.25]], dtype=torch.float64))
    u = torch.tensor([0.0, 0.2499, 0.2501, 0.7499, 0.7501, 0.9999], dtype=torch.float64)
    assert draw(logits.expand(6, 3), u).tolist() == [0, 0, 1, 1, 2, 2]
    cold = draw(logits.expand(5, 3), u[1:], temperature=0.01)  # T -> 0: the argmax
    assert cold.tolist() == [1] * 5


def test_loss_nll_and_bits_agree(tiny):
    codes = torch.randint(0, 256, (3, 40))
    idx = torch.tensor([0, 1, 2])
    out = tiny.loss((codes, idx, idx))
    nll = tiny.nll((codes, idx, idx))
    assert nll.shape == (3,)
    assert out["loss"].item() == pytest.approx(nll.mean().item() / 40, rel=1e-9)
    assert out["bps"].item() == pytest.approx(out["loss"].item() / math.log(2))


def test_conditioning_changes_the_prediction(tiny):
    codes = torch.randint(0, 256, (1, 40))
    a = tiny(codes, torch.tensor([0]), torch.tensor([0]))
    b = tiny(codes, torch.tensor([1]), torch.tensor([0]))
    c = tiny(codes, torch.tensor([0]), torch.tensor([7]))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_tiny_train_and_sample_smoke():
    data = load_audio(n_clips=24, duration=0.05)
    torch.manual_seed(0)
    model = WaveNet.from_size("tiny")
    state = fit(model, data, TrainConfig(steps=3, batch_size=4, progress=False, lr=3e-3))
    assert set(state.val) == {"loss", "bps"} and all(math.isfinite(v) for v in state.val.values())
    assert state.history[0]["bps"] == pytest.approx(8.0, abs=0.5)  # untrained: near uniform
    calls = []
    progress = lambda s, n: calls.append((s, n))
    codes = model.eval().sample(2, length=30, instrument=1, pitch=4, progress=progress)
    assert codes.shape == (2, 30) and 0 <= codes.min() and codes.max() <= 255
    assert calls[0] == (1, 30) and calls[-1] == (30, 30) and len(calls) == 30
    plain = model.sample(2, generator=torch.Generator().manual_seed(0))  # the base contract
    assert plain.shape == (2, model.receptive_field)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(1, length=5, temperature=0)


def test_clip_phase_finds_the_phase_of_the_note_and_the_sinusoids_follow_it():
    """phi from a clip at the pitch's f0 is its phase; l_t at that phi lines up with the clip."""
    from gentools.data.audio import midi_to_hz, mu_law_encode

    model = WaveNet.from_size("tiny", sample_rate=4000)
    pitch = torch.tensor([0, 10, 24])
    t = torch.arange(1000, dtype=torch.float64) / 4000
    f0 = torch.as_tensor(midi_to_hz(np.array(model.config.pitch_midi)[pitch.numpy()]))
    levels = torch.tensor([5, 40, 63])
    phi = 2 * math.pi * levels.double() / model.config.phase_levels
    x = 0.6 * torch.cos(2 * math.pi * f0[:, None] * t + phi[:, None])  # (3, 1000)
    found = model.clip_phase(mu_law_encode(x), pitch)
    assert ((found - levels) % model.config.phase_levels).tolist() == [0, 0, 0]
    cos1 = model.sinusoids(pitch, found, 0, 1000)[:, model.config.harmonics]  # cos(theta_t)
    assert torch.allclose(cos1.double(), x / 0.6, atol=0.05)


def test_nll_is_the_two_part_code_phase_then_samples(tiny):
    """nll = -log p(x | c, phi) + log(phase_levels): an upper bound on -log p(x | c)."""
    codes, idx = torch.randint(0, 256, (2, 40)), torch.tensor([0, 2])
    logits = tiny(codes, idx, idx, tiny.clip_phase(codes, idx))
    given_phi = torch.nn.functional.cross_entropy(logits, codes, reduction="none").sum(1)
    expect = given_phi + math.log(tiny.config.phase_levels)
    assert torch.allclose(tiny.nll((codes, idx, idx)), expect)
    plain = WaveNet.from_size("tiny", harmonics=0).double()
    assert plain.phase_nats(40) == 0.0 and not hasattr(plain, "local")


def test_the_pitch_sinusoids_change_the_prediction_but_not_causality(tiny):
    codes, idx = torch.randint(0, 256, (1, 40)), torch.tensor([2])
    a = tiny(codes, idx, idx, torch.tensor([0]))
    b = tiny(codes, idx, idx, torch.tensor([16]))
    assert not torch.allclose(a, b)
    later = tiny(codes[:, 10:], idx, idx, torch.tensor([0]), start=10)  # same clip time
    assert torch.allclose(later[:, :, tiny.receptive_field :], a[:, :, 10 + tiny.receptive_field :])


@pytest.mark.slow
def test_job_checks_the_pitch_at_temperature_one_and_runs_without_the_clock(tmp_path):
    """The pitch is judged at the default temperature and at 1.0 (the model's own notes), both
    recorded with the notes; `clock false` trains the same network without the clock."""
    params = {**tiny_parameters(find_notebook("wavenet")), "clock": False}
    run = jobs.run("wavenet", params, out=tmp_path, progress=False)
    m = read_json(run / METRICS)
    assert m["pitch_temperature"] == 0.2
    assert 0 <= m["pitch_within_semitone_t1"] <= 1 and "pitch_median_abs_cents_t1" in m
    notes, meta = checkpoint.load(run / "notes.safetensors")
    assert set(notes) == {"T0.2", "T1.0"} and len(meta["midi"]) == params["pitch_notes"]
    assert not torch.equal(notes["T0.2"], notes["T1.0"])  # two temperatures, two draws
    assert load_model(WaveNet, run / "checkpoint.safetensors").config.harmonics == 0
