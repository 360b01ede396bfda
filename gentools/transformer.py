"""The one Transformer block that GPT and BERT share, with a KV cache for incremental decoding.
The network around the blocks (embeddings, final LayerNorm, tied head) is in
`gentools/models/transformer_lm.py`; this file imports nothing from gentools.

Vaswani et al. 2017, "Attention Is All You Need" (https://arxiv.org/abs/1706.03762), in the
pre-LayerNorm arrangement of GPT-2 (Radford et al. 2019) and nanoGPT:

    x = x + Attn(LN(x));   x = x + MLP(LN(x))

Attention runs through `torch.nn.functional.scaled_dot_product_attention`; `causal=True`
masks the future (GPT), `causal=False` lets every token see every other (BERT).

Positions: the models add learned absolute position embeddings to the tokens (GPT-2), or,
with `rope=True`, rotate each head's queries and keys by angles that grow with the position
(rotary position embeddings, Su et al. 2021, https://arxiv.org/abs/2104.09864), so that
q_i . k_j depends on the tokens and on the offset i - j only.

NOTE: the explicit attention weights (for the attention widget) come from `Block.attention`,
which recomputes softmax(QK^T / sqrt(d)) by hand; the fused kernel never forms that matrix.

NOTE (KV cache): `KVCache` preallocates keys and values for `max_len` positions per layer.
A forward pass with a cache writes its keys and values at positions `cache.length ...` and
attends to everything cached so far; the caller advances `cache.length` after the last layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of every layer: k, v (n_layer, B, n_head, max_len, head_dim)."""

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (n_layer, batch, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled so far
        self.max_len = max_len


class SelfAttention(nn.Module):
    """Multi-head self-attention: one fused QKV projection, SDPA, an output projection."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False,
                 rope: bool = False):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head, self.dropout, self.rope = n_head, dropout, rope
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_drop = nn.Dropout(dropout)

    def heads(self, x: torch.Tensor, start: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) at positions start.. -> q, k, v, each (B, nh, T, hs)."""
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if self.rope:  # queries and keys turned together: one rotation for both
            q, k = rotate(qkv[:2], start).unbind(0)  # (B, nh, T, hs) each
            return q, k, qkv[2]
        return qkv.unbind(0)  # (3, B, nh, T, hs) -> q, k, v

    def forward(self, x: torch.Tensor, causal: bool, cache: KVCache | None = None,
                layer: int = 0, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        start = cache.length if cache is not None else 0  # position of x's first token
        q, k, v = self.heads(x, start)  # (B, nh, T, hs)
        if cache is not None:
            if start + T > cache.max_len:
                raise ValueError(f"KV cache full: {start} + {T} > {cache.max_len} positions")
            cache.k[layer, :, :, start : start + T] = k
            cache.v[layer, :, :, start : start + T] = v
            k = cache.k[layer, :, :, : start + T]  # (B, nh, start+T, hs)
            v = cache.v[layer, :, :, : start + T]
        mask, is_causal = attention_mask(T, start, causal, attn_mask, x.device)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )  # softmax(q k^T / sqrt(hs) + mask) v: (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))

    def weights(self, x: torch.Tensor, causal: bool,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention matrix softmax(q k^T / sqrt(hs) + mask): (B, nh, T, T)."""
        q, k, _ = self.heads(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
        if causal:
            scores = scores.masked_fill(~causal_mask(x.shape[1], x.shape[1], x.device), -math.inf)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        return scores.softmax(-1)


def rotate(x: torch.Tensor, start: int = 0, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding of x (..., T, hs) at positions start..start+T-1: each pair
    (x_i, x_{i+hs/2}) turns by the angle pos * base^(-2i/hs)."""
    T, hs = x.shape[-2], x.shape[-1]
    freq = base ** (-torch.arange(0, hs, 2, device=x.device, dtype=torch.float32) / hs)  # (hs/2,)
    pos = torch.arange(start, start + T, device=x.device, dtype=torch.float32)  # (T,)
    angle = pos[:, None] * freq[None, :]  # theta_{t,i} = t * base^(-2i/hs): (T, hs/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)  # (..., T, hs/2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)  # R(theta) [x1; x2]


def attention_mask(t_q: int, start: int, causal: bool, attn_mask: torch.Tensor | None,
                   device=None) -> tuple[torch.Tensor | None, bool]:
    """(mask, is_causal) for SDPA, for t_q queries at positions start.. over start + t_q keys.

    Causal with nothing cached and no other mask: SDPA's own causal kernel. Causal otherwise:
    the explicit causal mask, and-ed with the caller's `attn_mask` (True = may attend). One
    query attends to every key before it, so it needs no mask of its own.
    """
    if not causal or t_q == 1:
        return attn_mask, False
    if start == 0 and attn_mask is None:
        return None, True
    mask = causal_mask(t_q, start + t_q, device)  # (t_q, start + t_q)
    return (mask if attn_mask is None else mask & attn_mask), False


def causal_mask(t_q: int, t_k: int, device=None) -> torch.Tensor:
    """Boolean (t_q, t_k): the last t_q of t_k positions each see themselves and the past."""
    i = torch.arange(t_q, device=device)[:, None] + (t_k - t_q)  # absolute query positions
    return torch.arange(t_k, device=device)[None, :] <= i


class MLP(nn.Module):
    """Position-wise feed-forward: Linear(C, 4C) -> GELU -> Linear(4C, C)."""

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN Transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False,
                 rope: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = SelfAttention(n_embd, n_head, dropout, bias, rope)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor, causal: bool, cache: KVCache | None = None,
                layer: int = 0, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal, cache, layer, attn_mask)  # (B, T, C)
        return x + self.mlp(self.ln_2(x))

    def attention(self, x: torch.Tensor, causal: bool,
                  attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """This block's attention weights for input x (B, T, C): (B, nh, T, T)."""
        return self.attn.weights(self.ln_1(x), causal, attn_mask)
