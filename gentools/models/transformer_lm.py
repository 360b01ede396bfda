"""The network GPT and BERT share: token embeddings, learned position embeddings (none with
rotary positions), the stack of pre-LN blocks of `gentools.transformer`, a final LayerNorm and a
head tied to the token embedding; its config; GPT-2's initialisation; AdamW with decay on
matrices only.

GPT (`gpt.py`) runs the blocks causally and BERT (`bert.py`) in both directions; each adds its
objective and its sampler. The layers themselves (attention, MLP, block, KV cache) are in
`gentools/transformer.py`, which imports nothing from gentools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gentools.models.base import GenerativeModel
from gentools.transformer import Block


@dataclass
class TransformerConfig:
    vocab_size: int = 128  # tokens in the vocabulary (the tokenizer's vocab_size)
    block_size: int = 64  # longest input, and the number of learned positions
    n_layer: int = 4  # Transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width of the residual stream
    dropout: float = 0.0  # dropout on attention weights and residual branches
    bias: bool = False  # biases in Linear and LayerNorm (False: nanoGPT's faster choice)
    beta2: float = 0.99  # AdamW beta2 (0.99 for small char-level models, as nanoGPT)
    rope: bool = False  # rotary positions in attention instead of learned position embeddings


class TransformerLM(GenerativeModel):
    """The network GPT and BERT share, declared here once: token embeddings, learned position
    embeddings (none with rotary positions), a stack of pre-LN blocks, a final LayerNorm and a
    head tied to the token embedding (Press & Wolf 2017). The subclasses run the blocks
    causally (GPT) or in both directions (BERT) and add the objective and the sampler."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)  # token -> vector
        self.pos_emb = None if c.rope else nn.Embedding(c.block_size, c.n_embd)  # learned
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, c.dropout, c.bias, c.rope) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)  # final norm
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        init_weights(self, c.n_layer)
        self.head.weight = self.tok_emb.weight  # tied: logits = h E^T

    def configure_optimizers(self, lr: float, weight_decay: float):
        return {"main": adamw(self, lr, weight_decay, (0.9, self.config.beta2))}

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token embeddings of idx (B, T), plus the learned ones of positions start..start+T-1
        (with rotary positions, the attention turns queries and keys instead)."""
        h = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            h = h + self.pos_emb(torch.arange(start, start + idx.shape[1], device=idx.device))
        return self.drop(h)


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, and the residual projections
    scaled by 1/sqrt(2 n_layer) so the residual stream's variance does not grow with depth."""
    for name, p in model.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
        elif p.dim() >= 2:
            nn.init.normal_(p, 0.0, 0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


def adamw(model: nn.Module, lr: float, weight_decay: float,
          betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases or LayerNorm gains), fused where
    torch supports it (CPU and CUDA): about 20% faster per step than the foreach version here."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    device = next(model.parameters()).device.type
    fused = device in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
