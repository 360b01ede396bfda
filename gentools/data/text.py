"""Text data for GPT and BERT: corpora, tokenizers and fixed-length token blocks.

- Corpus: the default is Python's own documentation text, `pydoc_data.topics` (about 465k
  characters, ships with CPython), or any UTF-8 text file a user points at (tiny-shakespeare,
  say). Split contiguously: the first 90% is train, the last 10% val.
- Tokenizers: `CharTokenizer` (one token per character of the training text) and
  `SubwordTokenizer`, a byte-level BPE (Sennrich et al. 2016, https://arxiv.org/abs/1508.07909;
  the GPT-2 byte-level variant) trained locally with Hugging Face `tokenizers` in about a
  second. Both put the special tokens [PAD] [UNK] [MASK] at ids 0, 1, 2, read "[MASK]" written
  in text as the mask token, and save and load as JSON (`to_json`, `tokenizer_from_json`,
  `save`, `load_tokenizer`): notebooks write `tokenizer.json` next to the checkpoint.
  `never_sample` lists the special ids a generator must never emit: [PAD] and [MASK], and
  [UNK] for BPE, which encodes any text without it.
- Datasets: `TensorDataset`s of token blocks, x (N, T) int64; with `shift=True` (GPT) also the
  next-token targets y (N, T). Training blocks start every `stride` tokens and are views into
  one token stream (no copy); val blocks do not overlap.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from gentools.files import atomic_write

SPECIALS = ("[PAD]", "[UNK]", "[MASK]")  # ids 0, 1, 2 in every tokenizer
PAD, UNK, MASK = 0, 1, 2
TOKENIZERS = ("char", "bpe")
TRAIN_FRACTION = 0.9
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


class TextDataError(ValueError):
    """A text file exists but cannot be read as UTF-8 text."""


def default_corpus() -> str:
    """Python's documentation topics, joined by newlines: about 465k characters."""
    from pydoc_data.topics import topics

    return "\n".join(topics.values())


def load_corpus(data: str = "pydoc") -> str:
    """The default corpus ("pydoc") or the text of a UTF-8 file at the path `data`."""
    if data == "pydoc":
        return default_corpus()
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {path} (use 'pydoc' for the embedded corpus)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextDataError(f"{path} is not UTF-8 text: {err}") from None
    if len(text) < 100:
        raise TextDataError(f"{path} holds only {len(text)} characters; need at least 100")
    return text


def split_text(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """Contiguous split: the first `train_fraction` of the characters, then the rest."""
    cut = int(len(text) * train_fraction)
    return text[:cut], text[cut:]


# --- tokenizers ---------------------------------------------------------------------------
class CharTokenizer:
    """One token per character: the specials, then the sorted characters of the training text.
    Characters never seen in training become [UNK]."""

    kind = "char"
    never_sample = (PAD, MASK)  # ids a generator must not emit ([UNK] stands for unseen text)

    def __init__(self, chars: str | list[str]):
        self.chars = sorted(set(chars) - {""})
        self.itos = [*SPECIALS, *self.chars]
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def train(cls, text: str, vocab_size: int = 0) -> CharTokenizer:
        return cls(list(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        ids = []
        for part in _SPECIAL_RE.split(text):
            if part in SPECIALS:
                ids.append(self.stoi[part])
            else:
                ids.extend(self.stoi.get(c, UNK) for c in part)
        return ids

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def piece(self, i: int) -> str:
        """The text of one token."""
        return self.itos[int(i)]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": "".join(self.chars)}, ensure_ascii=False)


class SubwordTokenizer:
    """Byte-level BPE from Hugging Face `tokenizers`: lossless on any text, no [UNK] needed.
    A [MASK] in the text takes the whitespace before it along (decode drops that space)."""

    kind = "bpe"
    never_sample = (PAD, UNK, MASK)  # ids a generator must not emit (encode never gives [UNK])

    def __init__(self, tokenizer):
        self.tok = tokenizer  # a tokenizers.Tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int = 1024) -> SubwordTokenizer:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        mask = AddedToken(SPECIALS[MASK], lstrip=True, special=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False,
            # " [MASK]" is one token: the mask stands for a whole token like " for" ("Ġfor")
            special_tokens=[*SPECIALS[:MASK], mask],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes
        )
        tok.train_from_iterator([text], trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def piece(self, i: int) -> str:
        """The text of one token (a token that ends inside a UTF-8 character shows as U+FFFD)."""
        i = int(i)
        return SPECIALS[i] if i < len(SPECIALS) else self.tok.decode([i])

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": json.loads(self.tok.to_str())})


Tokenizer = CharTokenizer | SubwordTokenizer


def train_tokenizer(kind: str, text: str, vocab_size: int = 1024) -> Tokenizer:
    """A "char" or "bpe" tokenizer trained on `text` (bpe: `vocab_size` tokens in all)."""
    classes = {"char": CharTokenizer, "bpe": SubwordTokenizer}
    if kind not in classes:
        raise ValueError(f"unknown tokenizer {kind!r}: use {' or '.join(TOKENIZERS)}")
    return classes[kind].train(text, vocab_size)


def tokenizer_from_json(text: str) -> Tokenizer:
    spec = json.loads(text)
    if spec.get("kind") == "char":
        return CharTokenizer(list(spec["chars"]))
    if spec.get("kind") == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        return SubwordTokenizer(HFTokenizer.from_str(json.dumps(spec["tokenizer"])))
    raise ValueError(f"not a gentools tokenizer (kind {spec.get('kind')!r})")


def save(tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write the tokenizer as JSON (atomically: a temporary file, then a rename)."""
    return atomic_write(path, lambda tmp: tmp.write_text(tokenizer.to_json(), encoding="utf-8"))


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}")
    return tokenizer_from_json(path.read_text(encoding="utf-8"))


# --- datasets -----------------------------------------------------------------------------
def blocks(ids: torch.Tensor, block_size: int, stride: int, shift: bool) -> TensorDataset:
    """Token blocks starting every `stride` tokens of the stream `ids` (L,), as views.

    shift=True: (x, y) with y the next tokens, x[n, t+1] == y[n, t]; else (x,)."""
    n_tokens = len(ids) - (1 if shift else 0)
    if n_tokens < block_size:
        raise ValueError(f"only {len(ids)} tokens, fewer than one block of {block_size}")
    x = ids[:n_tokens].unfold(0, block_size, stride)  # (N, T)
    if not shift:
        return TensorDataset(x)
    return TensorDataset(x, ids[1:].unfold(0, block_size, stride))  # (N, T), (N, T)


@dataclass
class TextData:
    """Token blocks for training (`train`, `val`), with the tokenizer and the raw text."""

    name: str
    train: TensorDataset
    val: TensorDataset
    tokenizer: Tokenizer
    train_ids: torch.Tensor  # (L_train,) int64, the whole training stream
    val_ids: torch.Tensor  # (L_val,)
    val_chars: int  # characters in the val text (for bits per character)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def load_text(data: str = "pydoc", tokenizer: str = "char", block_size: int = 64,
              vocab_size: int = 1024, shift: bool = True, stride: int = 1) -> TextData:
    """The corpus split 90/10, a tokenizer trained on the train part, and token blocks.

    shift=True gives GPT's (x, y) next-token pairs, shift=False BERT's (x,) blocks."""
    train_text, val_text = split_text(load_corpus(data))
    tok = train_tokenizer(tokenizer, train_text, vocab_size)
    train_ids = torch.tensor(tok.encode(train_text), dtype=torch.int64)
    val_ids = torch.tensor(tok.encode(val_text), dtype=torch.int64)
    name = "pydoc" if data == "pydoc" else Path(data).name
    return TextData(
        name, blocks(train_ids, block_size, stride, shift),
        blocks(val_ids, block_size, block_size, shift), tok, train_ids, val_ids, len(val_text),
    )


def unigram_baseline(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int,
                     n_special: int = len(SPECIALS)) -> dict[str, float]:
    """The context-free baseline for a masked token: always guess the most frequent training
    token (`accuracy` on val), and the add-one unigram cross-entropy (`nll`, nats/token)."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    counts[:n_special] = 0
    val = val_ids[val_ids >= n_special]
    log_p = ((counts + 1) / (counts + 1)[n_special:].sum()).log()  # add-one smoothing
    return {
        "accuracy": (val == counts.argmax()).double().mean().item(),
        "nll": -log_p[val].mean().item(),
    }
