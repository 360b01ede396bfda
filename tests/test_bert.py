"""BERT: the masking statistics, bidirectional attention, padding, the metrics split by what the
input showed, fill-mask and mask-predict."""

import math

import pytest
import torch

from gentools.data.text import MASK, PAD, load_text
from gentools.models.bert import BERT
from gentools.train import TrainConfig, fit
from gentools.transformer import KVCache, SelfAttention, rotate

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
    seeded = [model.mask_tokens(x, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(seeded[0][0], seeded[1][0]) and torch.equal(seeded[0][1], seeded[1][1])


def test_output_at_t_depends_on_later_tokens(model):
    x = torch.randint(3, V, (1, 16))
    h = model.embed(x).detach().requires_grad_(True)
    logits = model.head(model.encode(h))
    for t in (0, 7):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), h, retain_graph=True)
        assert torch.all(grad[0].abs().sum(-1) > 0), t  # every position, later ones included


def test_rotary_positions_depend_on_the_offset_only():
    q, k = torch.randn(2, 3, 8, 16), torch.randn(2, 3, 8, 16)  # (B, nh, T, hs)
    scores = lambda start: rotate(q, start) @ rotate(k, start).transpose(-2, -1)
    assert (scores(0) - scores(5)).abs().max() < 1e-4  # the same offsets, the same scores
    assert (scores(0) - q @ k.transpose(-2, -1)).abs().max() > 1e-2  # but positions count
    assert torch.allclose(rotate(q).norm(dim=-1), q.norm(dim=-1), atol=1e-5)  # a rotation
    torch.manual_seed(0)
    attn = SelfAttention(32, 2, rope=True).eval()
    x = torch.randn(1, 10, 32)
    cache = KVCache(1, 1, 2, 10, 16)
    steps = [attn(x[:, :4], True, cache)]
    cache.length = 4
    steps.append(attn(x[:, 4:], True, cache))  # keys and queries at positions 4..9
    assert (torch.cat(steps, 1) - attn(x, True)).abs().max() < 1e-5


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
    assert set(out) == {"loss", "mask_acc"}
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    at_mask = inp[chosen] == MASK  # accuracy only where the input hid the answer
    hits = (logits.argmax(-1) == x[chosen])[at_mask].float().mean()
    assert out["mask_acc"].item() == pytest.approx(hits.item())


class CopyBERT(BERT):
    """Predicts the token the input shows, and the most frequent token at [MASK]."""

    frequent = 7

    def forward(self, idx):
        shown = idx.masked_fill(idx == MASK, self.frequent)  # (B, T)
        return torch.nn.functional.one_hot(shown, self.config.vocab_size).float() * 20.0


def test_a_copy_model_scores_the_baseline_at_mask_positions():
    torch.manual_seed(0)
    copy = CopyBERT.from_size("tiny", vocab_size=50, block_size=32)
    blocks = torch.randint(3, 50, (300, 32))
    blocks[blocks % 5 == 0] = CopyBERT.frequent  # the most frequent token, about 20%
    counts = torch.bincount(blocks.flatten(), minlength=50)
    m = copy.masked_lm_metrics(blocks, counts, seed=0)
    assert m["unchanged_acc"] == 1.0 and m["random_acc"] < 0.1
    assert m["mask_count"] > 1000 and m["mask_acc_baseline"] == pytest.approx(0.2, abs=0.03)
    assert m["mask_acc"] == m["mask_acc_baseline"]  # copying earns nothing where [MASK] hides
    every = (0.8 * m["mask_acc"] + 0.1 * m["random_acc"] + 0.1 * m["unchanged_acc"])
    assert every > m["mask_acc"] + 0.05  # what the accuracy over all chosen positions hides


def test_split_metrics_by_hand():
    torch.manual_seed(0)
    model = BERT.from_size("tiny", vocab_size=30, block_size=16).eval()
    blocks = torch.randint(3, 30, (20, 16))
    blocks[3, 10:] = PAD
    counts = torch.bincount(blocks.flatten(), minlength=30)
    m = model.masked_lm_metrics(blocks, counts, seed=5, batch_size=6)
    assert m == model.masked_lm_metrics(blocks, counts, seed=5, batch_size=6)  # reproducible
    gen = torch.Generator().manual_seed(5)  # the same draws, batch by batch
    inp, chosen = map(torch.cat, zip(*[model.mask_tokens(blocks[i : i + 6], gen)
                                       for i in range(0, 20, 6)], strict=True))
    logits, target = model(inp)[chosen], blocks[chosen]
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    at_mask = inp[chosen] == MASK
    kept = ~at_mask & (inp[chosen] == target)
    assert m["mask_count"] == int(at_mask.sum()) and m["unchanged_count"] == int(kept.sum())
    assert m["mask_acc"] == pytest.approx((logits.argmax(-1) == target)[at_mask].float().mean())
    assert m["mask_loss"] == pytest.approx(nll[at_mask].mean().item(), rel=1e-5)
    top5 = (logits.topk(5, -1).indices == target[:, None]).any(-1)[at_mask].float().mean()
    assert m["mask_top5"] == pytest.approx(top5.item())
    frequent = counts[3:].argmax() + 3
    assert m["mask_acc_baseline"] == pytest.approx((target[at_mask] == frequent).float().mean())
    p = (counts[3:] + 1) / (counts[3:] + 1).sum()  # add-one unigram over the real tokens
    assert m["mask_unigram_loss"] == pytest.approx(-p[target[at_mask] - 3].log().mean().item())
    # perplexity: exp of the mean loss per token, not the mean of per-batch exp(loss)
    assert m["ppl"] == pytest.approx(math.exp(nll.mean().item()), rel=1e-5)
    ends = [int(chosen[:i].sum()) for i in (0, 6, 12, 18, 20)]
    per_batch = [(math.exp(nll[a:b].mean().item()), n) for a, b, n in zip(
        ends[:-1], ends[1:], (6, 6, 6, 2), strict=True)]
    mean_of_exp = sum(q * n for q, n in per_batch) / 20  # what averaging batch metrics gives
    assert abs(mean_of_exp - m["ppl"]) > 1e-3 * m["ppl"]


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
    cfg = TrainConfig(steps=150, batch_size=16, lr=3e-3, eval_every=150, eval_batches=8,
                      progress=False)
    state = fit(model, data, cfg)
    assert state.val["loss"] < math.log(data.vocab_size) - 1
    counts = torch.bincount(data.train_ids, minlength=data.vocab_size)
    m = model.masked_lm_metrics(data.val.tensors[0], counts, seed=0)
    # only where [MASK] hid the answer: better than the most frequent token and the unigram
    assert m["mask_acc"] > 1.15 * m["mask_acc_baseline"]
    assert m["mask_loss"] < m["mask_unigram_loss"] - 0.1
