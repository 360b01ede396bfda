"""BERT: the masking statistics, bidirectional attention, padding, fill-mask and mask-predict."""

import math

import pytest
import torch

from gentools.data.text import MASK, PAD, load_text
from gentools.models.bert import BERT
from gentools.train import TrainConfig, fit

V = 1000


@pytest.fixture
def model():
    torch.manual_seed(0)
    return BERT.from_size("tiny", vocab_size=V, block_size=16).eval()


def test_masking_statistics(model):
    torch.manual_seed(0)
    x = torch.randint(3, V, (512, 128))
    x[:, -16:] = PAD  # padding and the other specials must never be chosen
    x[::7, 3] = 1
    x[::5, 4] = MASK
    inp, chosen = model.mask_tokens(x)
    special = x < 3
    assert not chosen[special].any()
    eligible = (~special).sum()
    assert chosen.sum() / eligible == pytest.approx(0.15, abs=0.003)
    n = chosen.sum()
    masked = (inp == MASK) & chosen
    kept = (inp == x) & chosen
    randomised = chosen & ~masked & ~kept
    assert masked.sum() / n == pytest.approx(0.8, abs=0.01)
    assert randomised.sum() / n == pytest.approx(0.1, abs=0.01)
    assert kept.sum() / n == pytest.approx(0.1 + 0.1 / (V - 3), abs=0.01)
    assert torch.equal(inp[~chosen], x[~chosen])  # the rest is untouched
    assert int(inp[randomised].min()) >= 3  # random tokens are never special
    again, chosen2 = model.mask_tokens(x)
    assert not torch.equal(chosen, chosen2)  # new masks at every call


def test_output_at_t_depends_on_later_tokens(model):
    x = torch.randint(3, V, (1, 16))
    h = model.embed(x).detach().requires_grad_(True)
    logits = model.head(model.encode(h))
    for t in (0, 7):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), h, retain_graph=True)
        assert torch.all(grad[0].abs().sum(-1) > 0), t  # every position, later ones included


def test_padding_changes_nothing_for_the_real_tokens(model):
    x = torch.randint(3, V, (2, 10))
    padded = torch.cat([x, torch.full((2, 6), PAD)], 1)
    assert (model(padded)[:, :10] - model(x)).abs().max() < 1e-5


def test_loss_is_over_the_chosen_tokens():
    torch.manual_seed(0)
    model = BERT.from_size("tiny", vocab_size=50, block_size=16)
    x = torch.randint(3, 50, (8, 16))
    torch.manual_seed(1)
    out = model.loss((x,))
    torch.manual_seed(1)
    inp, chosen = model.mask_tokens(x)
    logits = model(inp)[chosen]
    expected = torch.nn.functional.cross_entropy(logits, x[chosen])
    assert set(out) == {"loss", "acc", "ppl"}
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["ppl"].item() == pytest.approx(math.exp(expected.item()), rel=1e-5)
    assert 0 <= out["acc"].item() <= 1


def test_fill_mask(model):
    x = torch.randint(3, V, (12,))
    x[[2, 9]] = MASK
    pos, probs, ids = model.fill_mask(x, top_k=5)
    assert pos.tolist() == [2, 9] and probs.shape == ids.shape == (2, 5)
    assert torch.all(probs[:, :-1] >= probs[:, 1:]) and torch.all(probs.sum(1) <= 1 + 1e-6)
    assert int(ids.min()) >= 3
    full = model(x[None])[0, 2].softmax(-1)
    assert probs[0, 0].item() == pytest.approx(full[3:].max().item(), rel=1e-5)


def test_mask_predict_fills_the_most_confident_first(model):
    x = torch.randint(3, V, (16,))
    span = torch.arange(4, 11)
    x[span] = MASK
    states = model.mask_predict(x, per_step=2)
    assert len(states) == 4  # ceil(7 / 2)
    filled = [int((s == MASK).sum()) for s in states]
    assert filled == [5, 3, 1, 0]
    final = states[-1][0]
    keep = torch.ones(16, dtype=torch.bool)
    keep[span] = False
    assert torch.equal(final[keep], x[keep]) and int(final.min()) >= 3
    probs = model(x[None])[0].softmax(-1)[:, 3:].max(-1).values  # confidence per position
    first = (states[0][0] != MASK) & (x == MASK)
    most_confident = span[probs[span].topk(2).indices]
    assert set(first.nonzero().flatten().tolist()) == set(most_confident.tolist())
    gen = lambda: torch.Generator().manual_seed(0)
    s1, s2 = model.sample(2, gen(), length=10), model.sample(2, gen(), length=10)
    assert s1.shape == (2, 10) and torch.equal(s1, s2) and int(s1.min()) >= 3


def test_tiny_training_beats_the_untrained_model():
    data = load_text(tokenizer="char", block_size=32, shift=False, stride=32)
    torch.manual_seed(0)
    model = BERT.from_size("tiny", vocab_size=data.vocab_size)
    cfg = TrainConfig(steps=60, batch_size=16, lr=3e-3, eval_every=60, eval_batches=8,
                      progress=False)
    state = fit(model, data, cfg)
    assert state.val["loss"] < math.log(data.vocab_size) - 1
    assert state.val["acc"] > 0.15
