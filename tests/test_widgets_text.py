"""The text widgets (streaming generation, fill-mask) and the attention widget, no browser."""

import threading

import numpy as np
import pytest
import torch

from gentools.data.text import CharTokenizer, SubwordTokenizer
from gentools.models.bert import BERT
from gentools.models.gpt import GPT
from gentools.widgets.attention import AttentionView
from gentools.widgets.text import FillMask, TextGenerator, stream_text

ENCODE = lambda s: [ord(c) for c in s]
DECODE = lambda ids: "".join(chr(i) for i in ids)


def test_text_generator_streams_token_by_token():
    seen_settings, texts = {}, []

    def generate(ids, stream, **settings):
        seen_settings.update(settings, prompt=DECODE(ids))
        for c in "world":
            stream(torch.tensor([ord(c)]))
            texts.append(widget.text)

    widget = TextGenerator(generate, ENCODE, DECODE, prompt="hello ", max_tokens=7)
    widget.temperature.value, widget.top_k.value, widget.top_p.value = 0.5, 0, 0.9
    widget.run()
    assert texts == ["w", "wo", "wor", "worl", "world"]  # the text grows with every token
    assert seen_settings == dict(prompt="hello ", max_new_tokens=7, temperature=0.5,
                                 top_k=None, top_p=0.9)
    assert "hello " in widget.output.value and "world" in widget.output.value
    assert widget.status.value.startswith("done: 5 tokens")
    assert not widget.generate_button.disabled and widget.stop_button.disabled


def test_stop_button_ends_a_running_generation():
    started = threading.Event()

    def generate(ids, stream, **settings):
        while not stream(torch.tensor([66])):
            started.set()

    widget = TextGenerator(generate, ENCODE, DECODE)
    widget.generate_button.click()
    assert started.wait(5) and widget.thread.is_alive() and not widget.stop_button.disabled
    widget.stop_button.click()
    widget.thread.join(5)
    assert not widget.thread.is_alive()
    assert widget.status.value.startswith("stopped") and set(widget.text) == {"B"}


def test_errors_in_the_generation_thread_are_shown():
    def generate(ids, stream, **settings):
        raise RuntimeError("boom")

    widget = TextGenerator(generate, ENCODE, DECODE)
    widget.run()
    assert "RuntimeError: boom" in "".join(o["text"] for o in widget.out.outputs)


def test_stream_text_holds_back_a_split_character():
    tok = SubwordTokenizer.train("plain ascii text only " * 50, vocab_size=300)
    ids = tok.encode("é")  # two byte-level tokens
    assert len(ids) == 2
    assert stream_text(tok.decode, [], ids[:1]) == ""
    assert stream_text(tok.decode, tok.encode("a "), ids) == "é"


def test_with_a_real_gpt_the_widget_shows_the_decoded_tokens():
    tok = CharTokenizer.train("abcdefgh ")
    torch.manual_seed(0)
    model = GPT.from_size("tiny", vocab_size=tok.vocab_size).eval()
    tokens = []
    generate = lambda ids, stream, **kw: tokens.append(
        model.generate(torch.tensor([ids]), stream=stream,
                       generator=torch.Generator().manual_seed(0), **kw))
    widget = TextGenerator(generate, tok.encode, tok.decode, prompt="abc", max_tokens=12)
    widget.run()
    assert widget.text == tok.decode(tokens[0][0, 3:]) and widget.tokens == 12


def test_fill_mask_draws_one_bar_chart_per_mask():
    calls = []

    def fill(text, k):
        calls.append((text, k))
        m = text.count("[MASK]")
        probs = torch.tensor([[0.5 / (j + 1) for j in range(k)]] * m).reshape(m, k)
        return probs, torch.arange(k).repeat(m, 1)

    widget = FillMask(fill, lambda i: f"t{i}", text="a [MASK] b", k=3)
    assert len(widget.fig.data) == 1 and widget.fig.data[0].x == ("t0", "t1", "t2")
    assert widget.fig.data[0].y == pytest.approx((0.5, 0.25, 0.5 / 3))
    assert widget.predictions[0][1] == ("t1", 0.25)
    widget.text.value = "[MASK] and [MASK]"
    assert len(widget.fig.data) == 2 and widget.fig.data[1].xaxis == "x2"
    axes = [widget.fig.layout.yaxis, widget.fig.layout.yaxis2]
    assert [tuple(a.range) for a in axes] == [(0, pytest.approx(0.55))] * 2  # one shared axis
    widget.k.value = 5
    assert calls[-1] == ("[MASK] and [MASK]", 5) and len(widget.fig.data[0].x) == 5
    widget.text.value = "no mask here"
    assert len(widget.fig.data) == 0 and widget.fig.layout.annotations[0].text == "no [MASK]"


def test_fill_mask_charts_share_one_axis():
    probs = torch.tensor([[0.9, 0.05], [0.01, 0.005]])  # a sure first mask, an unsure second
    widget = FillMask(lambda text, k: (probs, torch.tensor([[3, 4], [5, 6]])), str,
                      text="[MASK] x [MASK]", k=2)
    ranges = [tuple(widget.fig.layout[name].range) for name in ("yaxis", "yaxis2")]
    assert ranges == [(0, pytest.approx(0.99))] * 2


def test_fill_mask_with_a_real_bert():
    tok = CharTokenizer.train("abcdefgh ")
    torch.manual_seed(0)
    model = BERT.from_size("tiny", vocab_size=tok.vocab_size).eval()
    fill = lambda s, k: model.fill_mask(tok.encode(s), k)[1:]
    widget = FillMask(fill, tok.piece, text="ab[MASK]d", k=4)
    probs, ids = fill("ab[MASK]d", 4)
    assert widget.predictions == [[(tok.piece(i), p) for i, p in
                                   zip(ids[0].tolist(), probs[0].tolist(), strict=True)]]
    assert all(len(t) == 1 for t, _ in widget.predictions[0])  # characters, no specials


def test_attention_view_picks_layers_and_heads():
    rng = np.random.default_rng(0)

    def attention(text):
        w = rng.random((3, 2, len(text), len(text)))
        return list(text), w / w.sum(-1, keepdims=True)

    view = AttentionView(attention, text="abcd")
    assert view.layer.options == (0, 1, 2) and view.head.options == ("mean", 0, 1)
    view.layer.value, view.head.value = 2, 1
    assert np.array_equal(view.fig.data[0].z, view.weights[2, 1])
    view.head.value = "mean"
    assert np.allclose(view.fig.data[0].z, view.weights[2].mean(0))
    assert view.fig.data[0].x == ("0:'a'", "1:'b'", "2:'c'", "3:'d'")
    view.text.value = "xy"
    assert view.matrix().shape == (2, 2) and len(view.fig.data[0].y) == 2
    with pytest.raises(ValueError, match="must be"):
        AttentionView(lambda t: (list(t), np.zeros((2, len(t), len(t)))), text="ab")
