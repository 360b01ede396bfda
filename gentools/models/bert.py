"""BERT: an encoder-only Transformer trained by masked-language modelling (Devlin et al. 2019,
https://arxiv.org/abs/1810.04805).

Every token sees every other (the shared `gentools.transformer.Block` with causal=False). In
training, a fraction `mask_prob` of the (non-special) tokens is chosen (15% in the paper); of
those, 80% become [MASK], 10% a random token and 10% stay as they are; the loss is the
cross-entropy of the original token at the chosen positions only:
L = -(1/|M|) sum_{i in M} log p(x_i | x~).

Masks are drawn inside `loss` from the global torch RNG, so every step sees new masks and the
training loop's seeding makes them reproducible. `masked_lm_metrics` measures a model with one
seeded masking at BERT's 15%, split by what the input showed: the accuracy at [MASK] inputs is
the one that counts (at unchanged inputs the answer is in the input, and copying it scores),
set beside always guessing the most frequent token at the same positions.

Generation is iterative mask-predict (Ghazvininejad et al. 2019,
https://arxiv.org/abs/1904.09324): start from a masked span, fill the most confident
position(s), and predict the rest again with the new context.

NOTE: positions are rotary (RoPE, Su et al. 2021, https://arxiv.org/abs/2104.09864, as in
RoFormer and ModernBERT) at every named size, not the paper's learned absolute embeddings
(`rope=False`). With learned positions the default CPU run (1000 steps, BPE 1024) hardly
learns to use its neighbours: 0.045 accuracy at [MASK] inputs against 0.038 for the most
frequent token there; with RoPE 0.234, and 0.324 when 40% of the tokens are chosen in training
(`mask_prob`; Wettig et al. 2023, https://arxiv.org/abs/2202.08005), as the notebook does.
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

from gentools.models.transformer_lm import TransformerConfig, TransformerLM


@dataclass
class BERTConfig(TransformerConfig):  # vocab_size, ... rope (transformer_lm.py)
    block_size: int = 128  # longest input, and the number of learned positions
    mask_prob: float = 0.15  # fraction of tokens chosen for prediction
    n_special: int = 3  # ids below this are special ([PAD]=0, [UNK]=1, [MASK]=2)
    pad_id: int = 0  # the padding token: attended to by nobody
    mask_id: int = 2  # the [MASK] token


class BERT(TransformerLM):
    Config = BERTConfig
    sizes = {
        "tiny": dict(block_size=32, n_layer=2, n_head=2, n_embd=32, rope=True),
        "default": dict(block_size=64, n_layer=4, n_head=4, n_embd=128, rope=True),
        "gpu": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.1, rope=True),
    }

    # --- the network: the shared modules of transformer_lm.TransformerLM, in both directions
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
    def mask_tokens(self, x: torch.Tensor, generator: torch.Generator | None = None,
                    mask_prob: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT's corruption of x (B, T): returns the input x~ (B, T) and the chosen mask (B, T).

        chosen ~ Bernoulli(mask_prob, default config.mask_prob) on non-special tokens; of those
        80% -> [MASK], 10% -> a random non-special token, 10% unchanged. Draws from
        `generator`, else the global RNG."""
        c = self.config
        mask_prob = c.mask_prob if mask_prob is None else mask_prob

        def draw(fn, *args):  # on the generator's device, then moved to x's
            dev = generator.device if generator is not None else x.device
            return fn(*args, x.shape, generator=generator, device=dev).to(x.device)

        u = draw(torch.rand)  # one draw chooses, a second decides
        chosen = (u < mask_prob) & (x >= c.n_special)
        r = draw(torch.rand)
        random_tok = draw(torch.randint, c.n_special, c.vocab_size)
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
        at_mask = inp[chosen] == self.config.mask_id  # (M,) where the input showed [MASK]
        hit = (logits.argmax(-1) == target)[at_mask]
        mask_acc = hit.float().mean() if len(hit) else nll.detach() * 0
        return {"loss": nll, "mask_acc": mask_acc}  # accuracy where the answer was hidden

    @torch.no_grad()
    def masked_lm_metrics(self, blocks: torch.Tensor, counts: torch.Tensor, seed: int = 0,
                          batch_size: int = 64, mask_prob: float = 0.15) -> dict[str, float]:
        """Accuracy and loss on `blocks` (N, T) split by what the input showed at each chosen
        position, with one masking drawn from `seed` (the same figures at every call) at BERT's
        rate of `mask_prob` whatever the training rate, so that every model faces the same test.

        mask_* where the input was [MASK] (the headline: the answer is hidden), random_* where
        it was a random token, unchanged_* where it was the answer itself; *_loss in nats per
        token. Beside them, at the same [MASK] positions, the context-free baselines from the
        training token counts (V,): always the most frequent token (`mask_acc_baseline`) and
        the add-one unigram (`mask_unigram_loss`). `loss` and `ppl` are over every chosen
        position: ppl = exp(mean nats per token)."""
        c, was_training = self.config, self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        dev = self.tok_emb.weight.device
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("target", "kind", "nll", "top5")}
        for start in range(0, len(blocks), batch_size):
            x = blocks[start : start + batch_size].to(dev)  # (B, T)
            inp, chosen = self.mask_tokens(x, gen, mask_prob)
            logits = self(inp)[chosen]  # [PAD] stays [PAD] in inp: (M, V)
            target, shown = x[chosen], inp[chosen]  # (M,)
            kind = torch.where(shown == target, 2, 1).masked_fill(shown == c.mask_id, 0)
            top = logits.topk(min(5, logits.shape[-1]), -1).indices  # (M, 5)
            parts["target"].append(target.cpu())
            parts["kind"].append(kind.cpu())  # 0 [MASK], 1 random, 2 unchanged
            parts["nll"].append(F.cross_entropy(logits, target, reduction="none").cpu())
            parts["top5"].append((top == target[:, None]).int().cpu())  # column 0: the argmax
        self.train(was_training)
        target, kind, nll, top5 = (torch.cat(parts[k]) for k in parts)
        out = {"loss": nll.double().mean().item()}
        out["ppl"] = math.exp(out["loss"])  # exp of the mean nats per token
        for code, name in enumerate(("mask", "random", "unchanged")):
            at = kind == code
            out[f"{name}_acc"] = top5[at, 0].double().mean().item()
            out[f"{name}_loss"] = nll[at].double().mean().item()
            out[f"{name}_count"] = int(at.sum())
        at_mask = kind == 0
        out["mask_top5"] = top5[at_mask].any(1).double().mean().item()
        counts = counts.double().cpu().clone()
        counts[: c.n_special] = 0
        log_p = ((counts + 1) / (counts + 1)[c.n_special :].sum()).log()  # add-one unigram
        hidden = target[at_mask]
        out["mask_acc_baseline"] = (hidden == counts.argmax()).double().mean().item()
        out["mask_unigram_loss"] = -log_p[hidden].mean().item()
        return out

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
