"""GPT: KV-cache exactness, causality, sampling filters, and a tiny train/save/load run."""

import math
from pathlib import Path

import pytest
import torch

from gentools.checkpoint import load_model
from gentools.data import text
from gentools.data.text import load_text
from gentools.models.gpt import GPT, sample_logits
from gentools.train import TrainConfig, fit

V = 40


@pytest.fixture(params=[False, True], ids=["learned-positions", "rotary-positions"])
def model(request):
    torch.manual_seed(0)
    return GPT.from_size("tiny", vocab_size=V, block_size=16, rope=request.param).eval()


def test_kv_cached_logits_equal_the_full_forward_pass(model):
    x = torch.randint(3, V, (2, 16))
    full = model(x)  # (2, 16, V)
    cache = model.new_cache(2)
    steps = [model(x[:, :4], cache), model(x[:, 4:7], cache)]  # a prefill, then a chunk
    steps += [model(x[:, t : t + 1], cache) for t in range(7, 16)]  # then one token at a time
    assert cache.length == 16
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5
    with pytest.raises(ValueError, match="block_size"):
        model(x[:, :1], cache)


def test_output_at_t_does_not_depend_on_later_tokens(model):
    x = torch.randint(3, V, (1, 16))
    h = model.embed(x).detach().requires_grad_(True)  # input embeddings (1, T, C)
    logits = model.logits(h)
    for t in (0, 5, 15):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), h, retain_graph=True)
        per_position = grad[0].abs().sum(-1)  # (T,)
        assert torch.all(per_position[t + 1 :] == 0), t
        assert torch.all(per_position[: t + 1] > 0), t


def test_cached_and_uncached_generation_give_the_same_tokens(model):
    prompt = torch.randint(3, V, (3, 5))
    kw = dict(max_new_tokens=30, temperature=0.9, top_k=20, top_p=0.95)  # 35 > block_size 16
    runs = [
        model.generate(prompt, generator=torch.Generator().manual_seed(7), use_cache=c, **kw)
        for c in (True, False)
    ]
    assert runs[0].shape == (3, 35) and torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :5], prompt)
    greedy = model.generate(prompt, 4, temperature=0)
    assert torch.equal(greedy[:, 5], model(prompt)[:, -1].argmax(-1))


def test_stream_sees_every_token_and_can_stop(model):
    seen = []
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 20, stream=lambda t: seen.append(t))
    assert out.shape == (1, 21) and torch.equal(torch.cat(seen), out[0, 1:])
    calls = []
    stop_at_3 = lambda t: calls.append(t) or len(calls) == 3  # True on the third token
    stopped = model.generate(torch.zeros(1, 1, dtype=torch.long), 20, stream=stop_at_3)
    assert stopped.shape == (1, 4) and len(calls) == 3


def test_top_k_and_top_p_filtering():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(4000, -1)
    draw = lambda **kw: sample_logits(logits, generator=torch.Generator().manual_seed(0), **kw)
    assert set(draw(top_k=2).tolist()) == {0, 1}
    assert set(draw(top_p=0.7).tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3
    assert set(draw(top_p=0.85).tolist()) == {0, 1, 2}
    assert set(draw(top_p=0.01).tolist()) == {0}  # always at least the most likely
    freq = torch.bincount(draw(), minlength=4) / 4000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
    cold = torch.bincount(draw(temperature=0.5), minlength=4) / 4000  # p^2, renormalised
    assert cold[0] == pytest.approx(0.25 / 0.365, abs=0.03)
    assert torch.equal(sample_logits(logits[:2], temperature=0), torch.zeros(2, dtype=torch.long))


class PreferSpecials(torch.nn.Module):
    """A head whose logits favour [PAD], then [MASK], then [UNK] by a wide margin."""

    def __init__(self, head: torch.nn.Module, vocab_size: int):
        super().__init__()
        self.inner, self.bias = head, torch.zeros(vocab_size)
        self.bias[[text.PAD, text.MASK, text.UNK]] = torch.tensor([40.0, 39.0, 38.0])

    def forward(self, h):
        return self.inner(h) + self.bias  # (B, T, V)


def test_generation_never_emits_a_special_token(model):
    model.head = PreferSpecials(model.head, V)
    prompt = torch.randint(3, V, (4, 3))
    assert int(sample_logits(model(prompt)[:, -1]).min()) == text.PAD  # the model wants [PAD]
    settings = [dict(temperature=1.0), dict(temperature=0), dict(top_k=1), dict(top_p=0.5),
                dict(temperature=2.0, use_cache=False)]
    gen = lambda: torch.Generator().manual_seed(0)
    model.config.never_sample = (text.PAD, text.MASK)  # a char tokenizer: [UNK] may appear
    for kw in settings:
        new = model.generate(prompt, 30, generator=gen(), **kw)[:, 3:]  # (4, 30)
        assert not bool(((new == text.PAD) | (new == text.MASK)).any()), kw
        assert bool((new == text.UNK).all()), kw  # next in line, and allowed here
    model.config.never_sample = text.SubwordTokenizer.never_sample  # BPE: never [UNK] either
    assert text.UNK in model.config.never_sample
    for kw in settings:
        new = model.generate(prompt, 30, generator=gen(), **kw)[:, 3:]
        assert int(new.min()) >= 3, kw
    assert int(model.sample(2, gen(), length=20)[:, 1:].min()) >= 3  # after the start token


def test_loss_metrics_and_nll(model):
    x = torch.randint(3, V, (4, 16))
    y = torch.randint(3, V, (4, 16))
    out = {k: v.item() for k, v in model.loss((x, y)).items()}
    assert set(out) == {"loss", "bits"}  # perplexity is exp of a mean loss, never a mean of exp
    assert out["bits"] == pytest.approx(out["loss"] / math.log(2), rel=1e-6)
    assert abs(out["loss"] - math.log(V)) < 0.2  # an untrained model is near uniform
    assert model.nll((x, y)).sum() == pytest.approx(out["loss"] * x.numel(), rel=1e-5)
    assert model.head.weight is model.tok_emb.weight  # tied embeddings


def test_tiny_train_save_load_and_sample(tmp_path):
    data = load_text(tokenizer="char", block_size=16, stride=64)
    torch.manual_seed(0)
    model = GPT.from_size("tiny", vocab_size=data.vocab_size, block_size=16)
    cfg = TrainConfig(steps=30, batch_size=8, lr=3e-3, eval_every=30, eval_batches=4,
                      out_dir=str(tmp_path), progress=False)
    state = fit(model, data, cfg)
    assert state.val["loss"] < math.log(data.vocab_size) - 1  # it learned something
    evaluated = data.val[:32]  # eval_batches 4 of 8 blocks
    per_token = model.eval().nll(evaluated).sum().item() / evaluated[1].numel()
    # val_ppl = exp(mean nats per token), as the notebook reports it
    assert math.exp(state.val["loss"]) == pytest.approx(math.exp(per_token), rel=1e-5)
    text.save(data.tokenizer, tmp_path / "tokenizer.json")
    tok = text.load_tokenizer(tmp_path / "tokenizer.json")
    again = load_model(GPT, Path(tmp_path) / "checkpoint.safetensors")
    x = torch.tensor([tok.encode("The for loop")])
    assert torch.equal(again(x), model.eval()(x))
    assert again.head.weight is again.tok_emb.weight
    gen = lambda: torch.Generator().manual_seed(0)
    s = again.sample(2, generator=gen(), length=20, prompt=x[0])
    assert s.shape == (2, x.shape[1] + 20) and torch.equal(s, model.sample(2, gen(), 20, x[0]))
    assert isinstance(tok.decode(s[0]), str)


def test_causal_attention_keeps_a_callers_mask_and_matches_the_explicit_weights():
    from gentools.transformer import SelfAttention

    torch.manual_seed(0)
    attn = SelfAttention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    keep = torch.rand(5, 5) > 0.4
    keep |= torch.eye(5, dtype=torch.bool)  # every query sees itself
    _, _, v = attn.heads(x)
    for mask in (None, keep):
        w = attn.weights(x, causal=True, attn_mask=mask)  # (B, nh, T, T), by hand
        expected = attn.proj((w @ v).transpose(1, 2).reshape(2, 5, 16))
        got = attn(x, causal=True, attn_mask=mask)
        assert torch.allclose(got, expected, atol=1e-6)
    hidden = attn.weights(x, causal=True, attn_mask=keep)
    assert (hidden[..., ~(keep & torch.ones(5, 5, dtype=torch.bool).tril())] == 0).all()
