"""BERT: an encoder-only Transformer trained by masked-language modelling (Devlin et al. 2019,
https://arxiv.org/abs/1810.04805).

Every token sees every other (the shared `gentools.transformer.Block` with causal=False). In
training, 15% of the (non-special) tokens are chosen; of those, 80% become [MASK], 10% a random
token and 10% stay as they are; the loss is the cross-entropy of the original token at the
chosen positions only:  L = -(1/|M|) sum_{i in M} log p(x_i | x~).

Masks are drawn inside `loss` from the global torch RNG, so every step sees new masks and the
training loop's seeding makes them reproducible. Generation is iterative mask-predict
(Ghazvininejad et al. 2019, https://arxiv.org/abs/1904.09324): start from a masked span, fill
the most confident position(s), and predict the rest again with the new context.

NOTE: one segment and no next-sentence prediction (as RoBERTa, Liu et al. 2019): blocks of
running text with no [CLS] or [SEP]. The MLM head is a LayerNorm then the tied embedding
matrix, without the paper's extra dense layer. Special tokens are the ids below `n_special`
(the gentools tokenizers' [PAD] [UNK] [MASK]); they are never chosen nor used as random tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gentools.models.base import GenerativeModel
from gentools.transformer import adamw, add_stack


@dataclass
class BERTConfig:
    vocab_size: int = 128  # tokens in the vocabulary (the tokenizer's vocab_size)
    block_size: int = 128  # longest input, and the number of learned positions
    n_layer: int = 4  # Transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width of the residual stream
    dropout: float = 0.0  # dropout on attention weights and residual branches
    bias: bool = False  # biases in Linear and LayerNorm
    beta2: float = 0.99  # AdamW beta2
    mask_prob: float = 0.15  # fraction of tokens chosen for prediction
    n_special: int = 3  # ids below this are special ([PAD]=0, [UNK]=1, [MASK]=2)
    pad_id: int = 0  # the padding token: attended to by nobody
    mask_id: int = 2  # the [MASK] token


class BERT(GenerativeModel):
    Config = BERTConfig
    sizes = {
        "tiny": dict(block_size=32, n_layer=2, n_head=2, n_embd=32),
        "default": dict(block_size=64, n_layer=4, n_head=4, n_embd=128),
        "gpu": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.1),
    }

    def __init__(self, config: BERTConfig):
        super().__init__(config)
        add_stack(self, config)  # tok_emb, pos_emb, drop, blocks, ln_f, tied head

    def configure_optimizers(self, lr: float, weight_decay: float):
        return {"main": adamw(self, lr, weight_decay, (0.9, self.config.beta2))}

    # --- the network ----------------------------------------------------------------------
    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)  # (T,)
        return self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)

    def key_mask(self, idx: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, 1, T) True where a key may be attended to (not [PAD]); None without padding."""
        keep = idx != self.config.pad_id
        return None if bool(keep.all()) else keep[:, None, None, :]

    def encode(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings h (B, T, C) through the bidirectional blocks: (B, T, C)."""
        for block in self.blocks:
            h = block(h, causal=False, attn_mask=mask)
        return self.ln_f(h)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) over the token at each position of idx (B, T)."""
        return self.head(self.encode(self.embed(idx), self.key_mask(idx)))

    @torch.no_grad()
    def attention(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head for idx (1, T): (L, H, T, T)."""
        h, mask, maps = self.embed(idx), self.key_mask(idx), []
        for block in self.blocks:
            maps.append(block.attention(h, causal=False, attn_mask=mask)[0])  # (H, T, T)
            h = block(h, causal=False, attn_mask=mask)
        return torch.stack(maps)

    # --- masked-language modelling --------------------------------------------------------
    def mask_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT's corruption of x (B, T): returns the input x~ (B, T) and the chosen mask (B, T).

        chosen ~ Bernoulli(0.15) on non-special tokens; of those 80% -> [MASK], 10% -> a random
        non-special token, 10% unchanged. Draws from the global torch RNG."""
        c = self.config
        u = torch.rand(x.shape, device=x.device)  # one draw chooses, a second decides
        chosen = (u < c.mask_prob) & (x >= c.n_special)
        r = torch.rand(x.shape, device=x.device)
        random_tok = torch.randint(c.n_special, c.vocab_size, x.shape, device=x.device)
        inp = torch.where(chosen & (r < 0.8), torch.full_like(x, c.mask_id), x)
        inp = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_tok, inp)
        return inp, chosen

    def loss(self, batch) -> dict[str, torch.Tensor]:
        x = batch[0]  # (B, T) tokens
        inp, chosen = self.mask_tokens(x)
        mask = self.key_mask(x)
        h = self.encode(self.embed(inp), mask)[chosen]  # only the chosen positions: (M, C)
        logits = self.head(h)  # (M, V)
        target = x[chosen]  # (M,)
        nll = F.cross_entropy(logits, target) if len(target) else logits.sum() * 0
        acc = (logits.argmax(-1) == target).float().mean() if len(target) else nll * 0
        return {"loss": nll, "acc": acc, "ppl": nll.exp()}

    # --- using the model ------------------------------------------------------------------
    @torch.no_grad()
    def fill_mask(self, idx, top_k: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-k guesses at each [MASK] of idx (T,): positions (M,), probs (M, k), ids (M, k)."""
        idx = torch.as_tensor(idx, device=self.tok_emb.weight.device).view(1, -1)  # (1, T)
        pos = (idx[0] == self.config.mask_id).nonzero().squeeze(1)  # (M,)
        probs = self(idx)[0, pos].softmax(-1)  # (M, V)
        probs[:, : self.config.n_special] = 0  # never propose a special token
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return pos, top.values, top.indices

    @torch.no_grad()
    def mask_predict(self, idx, per_step: int = 1, temperature: float = 0.0,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fill every [MASK] of idx (B, T) (or (T,)), `per_step` positions per step, the most
        confident first; returns the sequence after each step, the last one fully filled.

        temperature 0 takes each position's most likely token; above 0 it samples from
        softmax(logits / temperature), and confidence is the sampled token's probability."""
        c = self.config
        idx = torch.as_tensor(idx, device=self.tok_emb.weight.device)
        idx = idx.view(1, -1).clone() if idx.dim() == 1 else idx.clone()  # (B, T)
        states = []
        while bool((masked := idx == c.mask_id).any()):
            logits = self(idx)  # (B, T, V)
            logits[..., : c.n_special] = -math.inf  # predict only real tokens
            if temperature > 0:
                probs = (logits / temperature).softmax(-1)  # (B, T, V)
                flat = probs.flatten(0, 1).to(generator.device if generator else probs.device)
                tok = torch.multinomial(flat, 1, generator=generator).view(idx.shape)
                tok = tok.to(idx.device)
                conf = probs.gather(-1, tok[..., None]).squeeze(-1)  # (B, T)
            else:
                conf, tok = logits.softmax(-1).max(-1)  # (B, T)
            conf = conf.masked_fill(~masked, -1.0)  # only masked positions compete
            k = min(per_step, int(masked.sum(1).max()))
            best = conf.topk(k, dim=1).indices  # (B, k)
            pick = torch.zeros_like(masked).scatter(1, best, True) & masked  # (B, T)
            idx = torch.where(pick, tok, idx)
            states.append(idx.clone())
        return states

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, length: int | None = None,
               temperature: float = 1.0, per_step: int = 1) -> torch.Tensor:
        """n sequences (n, length) generated by mask-predict from all-[MASK] inputs."""
        length = length or self.config.block_size
        idx = torch.full((n, length), self.config.mask_id, device=self.tok_emb.weight.device)
        return self.mask_predict(idx, per_step, temperature, generator)[-1]
