"""GPT: a decoder-only Transformer language model (Radford et al. 2018/2019,
https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf),
in the shape of nanoGPT (https://github.com/karpathy/nanoGPT).

p(x_1..x_T) = prod_t p(x_t | x_<t): token and learned position embeddings, a stack of causal
pre-LN blocks (`gentools.transformer.Block`), a final LayerNorm and a linear head that shares
its weight with the token embedding (tied embeddings, Press & Wolf 2017,
https://arxiv.org/abs/1608.05859).

Generation samples one token at a time with temperature, top-k (Fan et al. 2018) and top-p /
nucleus (Holtzman et al. 2020, https://arxiv.org/abs/1904.09751) filtering. With the KV cache
each step feeds only the newest token; without it each step re-runs the whole context.

NOTE: the vocabulary's special tokens ([PAD] [UNK] [MASK]) are never trained as targets in
practice; `sample` starts from `config.start_token` (the notebooks use the newline), and
generation never emits a token of `config.never_sample` (its logits are set to -inf before
any filtering): [PAD] and [MASK] always, [UNK] too where the tokenizer never produces it.
NOTE: past `block_size` tokens the window slides, and learned absolute positions then shift
under every cached key, so the cache is refilled from the last block_size tokens at each
step: exact, but no faster than running without a cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gentools.models.transformer_lm import TransformerConfig, TransformerLM
from gentools.transformer import KVCache


@dataclass
class GPTConfig(TransformerConfig):  # vocab_size, ... rope (transformer_lm.py)
    start_token: int = 0  # the token that starts an unprompted sample
    never_sample: tuple[int, ...] = (0, 2)  # ids generation never emits ([PAD], [MASK])


class GPT(TransformerLM):
    Config = GPTConfig
    sizes = {
        "tiny": dict(block_size=32, n_layer=2, n_head=2, n_embd=32),
        "default": dict(block_size=64, n_layer=4, n_head=4, n_embd=128),  # nanoGPT's CPU run
        "gpu": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
    }

    # --- the network: the shared modules of transformer_lm.TransformerLM, run causally ------
    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for idx (B, T); with a cache, idx continues it."""
        start = cache.length if cache is not None else 0
        if start + idx.shape[1] > self.config.block_size:
            raise ValueError(f"{start + idx.shape[1]} tokens > block_size {self.config.block_size}")
        return self.logits(self.embed(idx, start), cache)

    def logits(self, h: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Run embeddings h (B, T, C) through the blocks and the tied head: (B, T, V)."""
        for i, block in enumerate(self.blocks):
            h = block(h, causal=True, cache=cache, layer=i)  # (B, T, C)
        if cache is not None:
            cache.length += h.shape[1]
        return self.head(self.ln_f(h))  # (B, T, V)

    def new_cache(self, batch: int) -> KVCache:
        c, p = self.config, self.tok_emb.weight
        return KVCache(c.n_layer, batch, c.n_head, c.block_size, c.n_embd // c.n_head,
                       p.device, p.dtype)

    @torch.no_grad()
    def attention(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head for idx (1, T): (L, H, T, T)."""
        h, maps = self.embed(idx), []
        for block in self.blocks:
            maps.append(block.attention(h, causal=True)[0])  # (H, T, T)
            h = block(h, causal=True)
        return torch.stack(maps)

    # --- the contract ---------------------------------------------------------------------
    def loss(self, batch) -> dict[str, torch.Tensor]:
        x, y = batch  # (B, T) tokens and their next tokens
        logits = self(x)  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten())  # nats per token
        return {"loss": nll, "bits": nll / math.log(2)}  # nats and bits per token

    @torch.no_grad()
    def nll(self, batch) -> torch.Tensor:
        """-log p(y | x) in nats per sequence: (B,)."""
        x, y = batch
        logp = self(x).log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B, T)
        return -logp.sum(1)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        stream: Callable[[torch.Tensor], bool | None] | None = None,
    ) -> torch.Tensor:
        """Continue idx (B, T) by up to max_new_tokens sampled tokens: (B, T + n).

        temperature 0 picks the most likely token. stream(new_tokens (B,)) is called after each
        step; when it returns True, generation stops there. The loop runs under inference_mode
        (about 12% faster per cached token than no_grad here); the result is a normal tensor."""
        with torch.inference_mode():
            out = self._generate(idx, max_new_tokens, temperature, top_k, top_p, generator,
                                 use_cache, stream)
        return out.clone()  # outside inference mode: usable anywhere, autograd included

    def _generate(self, idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache,
                  stream) -> torch.Tensor:
        bs = self.config.block_size
        cache = None
        for _ in range(max_new_tokens):
            if use_cache and (cache is None or cache.length >= bs):  # (re)fill the cache
                cache = self.new_cache(len(idx))
                logits = self(idx[:, -bs:], cache)[:, -1]  # the last <= bs tokens: (B, V)
            elif use_cache:
                logits = self(idx[:, -1:], cache)[:, -1]  # one new token: (B, V)
            else:
                logits = self(idx[:, -bs:])[:, -1]  # the whole context again: (B, V)
            logits = self.allowed(logits)  # special tokens out: (B, V)
            nxt = sample_logits(logits, temperature, top_k, top_p, generator)  # (B,)
            idx = torch.cat([idx, nxt[:, None]], 1)
            if stream is not None and stream(nxt):
                break
        return idx

    def allowed(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (..., V) with the ids of `config.never_sample` at -inf: p = 0 for them."""
        ids = [i for i in self.config.never_sample if i < logits.shape[-1]]
        banned = torch.tensor(ids, dtype=torch.long, device=logits.device)  # (n,)
        return logits.index_fill(-1, banned, -math.inf) if len(banned) else logits

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, length: int | None = None,
               prompt: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """n sequences of `length` new tokens (default block_size) after `prompt` (t,) or the
        start token: (n, t + length). kw: temperature, top_k, top_p, use_cache."""
        device = self.tok_emb.weight.device
        if prompt is None:
            prompt = torch.tensor([self.config.start_token])
        idx = torch.as_tensor(prompt, device=device).view(1, -1).expand(n, -1)  # (n, t)
        return self.generate(idx, length or self.config.block_size, generator=generator, **kw)


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, V): temperature, then top-k, then top-p filtering."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:  # keep the k largest logits
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:  # keep the smallest set whose mass reaches top_p
        sorted_logits, order = logits.sort(-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already >= p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -math.inf))
    probs = logits.softmax(-1)  # (B, V)
    device = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(device), 1, generator=generator).squeeze(1).to(probs.device)
