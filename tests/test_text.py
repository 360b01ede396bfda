"""Text data: the embedded corpus and its split, text files, tokenizer round trips, blocks."""

import json

import pytest
import torch

from gentools.data import text
from gentools.data.text import (
    MASK,
    PAD,
    SPECIALS,
    UNK,
    CharTokenizer,
    TextDataError,
    blocks,
    load_corpus,
    load_text,
    load_tokenizer,
    split_text,
    tokenizer_from_json,
    train_tokenizer,
    unigram_baseline,
)

SAMPLE = "Héllo, wörld!\n\n  def f(x):\n\treturn x ** 2  # ☃ 日本語\r\n"


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_tokenizer("bpe", split_text(corpus)[0], vocab_size=512)


def test_default_corpus_and_contiguous_split(corpus):
    assert 400_000 < len(corpus) < 600_000
    train, val = split_text(corpus)
    assert train + val == corpus
    assert len(train) == int(0.9 * len(corpus))


def test_text_file_loading_and_errors(tmp_path):
    path = tmp_path / "shakespeare.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 3)
    assert load_corpus(str(path)).startswith("First Citizen:")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_corpus(str(tmp_path / "missing.txt"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café ".encode("latin-1") * 50)
    with pytest.raises(TextDataError, match="latin1.txt is not UTF-8"):
        load_corpus(str(bad))
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(TextDataError, match="short.txt holds only 9 characters"):
        load_corpus(str(short))


def test_char_tokenizer_round_trip_and_specials():
    tok = CharTokenizer.train(SAMPLE)
    assert tok.vocab_size == len(set(SAMPLE)) + len(SPECIALS)
    ids = tok.encode(SAMPLE)
    assert len(ids) == len(SAMPLE) and tok.decode(ids) == SAMPLE
    assert tok.encode("H[MASK]é[PAD]") == [tok.stoi["H"], MASK, tok.stoi["é"], PAD]
    assert tok.encode("Z") == [UNK]  # never seen in training
    again = tokenizer_from_json(tok.to_json())
    assert again.itos == tok.itos and again.encode(SAMPLE) == ids


def test_bpe_tokenizer_is_lossless_and_compresses(bpe, corpus):
    assert bpe.vocab_size == 512
    val = split_text(corpus)[1][:20_000]
    for s in (SAMPLE, val):
        assert bpe.decode(bpe.encode(s)) == s
    assert len(bpe.encode(val)) < 0.5 * len(val)  # well under one token per character
    assert [bpe.piece(i) for i in range(3)] == list(SPECIALS)
    assert bpe.encode("a [MASK] b")[1] == MASK  # the mask takes its leading space along
    assert bpe.decode(bpe.encode("a [MASK] b")) == "a[MASK] b"


def test_which_special_tokens_a_generator_may_emit(bpe, corpus):
    char = CharTokenizer.train(SAMPLE)
    assert char.never_sample == (PAD, MASK)  # [UNK] is what unseen characters encode to
    assert UNK in char.encode("Z")
    assert bpe.never_sample == (PAD, UNK, MASK)  # byte-level BPE encodes anything without it
    assert UNK not in bpe.encode(SAMPLE + split_text(corpus)[1][:20_000] + "\x00\U0001f600")


def test_tokenizers_save_and_load(bpe, tmp_path):
    for tok in (bpe, CharTokenizer.train(SAMPLE)):
        path = text.save(tok, tmp_path / f"{tok.kind}.json")
        assert json.loads(path.read_text())["kind"] == tok.kind
        again = load_tokenizer(path)
        assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
        assert again.encode(SAMPLE) == tok.encode(SAMPLE)
        assert again.decode(tok.encode(SAMPLE)) == tok.decode(tok.encode(SAMPLE))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="unknown tokenizer 'wordpiece'"):
        train_tokenizer("wordpiece", SAMPLE)


def test_blocks_are_shifted_views():
    ids = torch.arange(100)
    ds = blocks(ids, block_size=8, stride=3, shift=True)
    x, y = ds.tensors
    assert x.shape == y.shape == (31, 8)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y, x + 1)
    assert torch.equal(x[:, 0], torch.arange(0, 93, 3))
    assert x.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()  # no copy
    (xm,) = blocks(ids, 10, 10, shift=False).tensors
    assert xm.shape == (10, 10) and torch.equal(xm.flatten(), ids)
    with pytest.raises(ValueError, match="fewer than one block"):
        blocks(ids[:5], 8, 1, shift=True)


def test_load_text_datasets():
    data = load_text(tokenizer="char", block_size=32, stride=16)
    x, y = data.train.tensors
    assert x.dtype == torch.int64 and x.shape[1] == 32 and torch.equal(x[:, 1:], y[:, :-1])
    assert len(data.val) == (len(data.val_ids) - 1) // 32  # val blocks do not overlap
    assert data.tokenizer.decode(data.val_ids) == split_text(load_corpus())[1]
    assert int(x.min()) >= len(SPECIALS)  # no special token in running text
    (xm,) = load_text(tokenizer="char", block_size=32, shift=False, stride=32).train.tensors
    assert xm.shape[1] == 32


def test_unigram_baseline():
    train = torch.tensor([3, 3, 3, 4, 0, 1])  # 3 is the most frequent real token
    val = torch.tensor([3, 4, 4, 4, 2])
    out = unigram_baseline(train, val, vocab_size=5)
    assert out["accuracy"] == pytest.approx(0.25)  # specials are left out of val too
    # p(3) = 4/6, p(4) = 2/6 with add-one counts: nll = -(log 4/6 + 3 log 2/6) / 4
    assert out["nll"] == pytest.approx(-(torch.tensor(4 / 6).log() + 3 * torch.tensor(2 / 6).log())
                                       .item() / 4)
