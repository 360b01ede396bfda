"""GPT and BERT targets: nanoGPT's CPU run, KV-cache speed-up, BERT accuracy, notebook times.

    python benchmarks/transformers.py [--threads 1] [--steps 2000] [--parts gpt,kv,bert,notebooks]

- gpt: nanoGPT's README CPU configuration (block 64, batch 12, 4 layers, 4 heads, 128 wide,
  dropout 0, lr 1e-3, warm-up 100, cosine to 1e-4 over 2000 iterations, AdamW beta2 0.99, weight
  decay 0.1, clip 1.0) on the pydoc corpus, char-level, through `train.fit`: best and last val
  loss (nats/char), and the median training step time and tokens/s. Then the same step
  alternated with the same network stepped the way nanoGPT's train.py does on CPU (torch AdamW
  without `fused`, random offsets into the token stream), and with gentools' step on a copy
  compiled with torch.compile (`TrainConfig.compile`), at the same thread count: alternating
  makes the ratios fair on a busy machine. The compile time is reported on its own.
- kv: 256 new tokens from a 1-token prompt with a context of 256, with and without the KV
  cache, the same seed; the speed-up and whether the tokens agree.
- bert: the BERT notebook's default run: accuracy at [MASK] inputs on val (one seeded masking
  at 15%) against always guessing the most frequent training token at the same positions, with
  top-5 accuracy, the losses beside the unigram's, and accuracy at random and unchanged inputs.
- notebooks: wall time of `gentools run gpt` and `gentools run bert` at default parameters.
Each part prints a markdown table. CPU timings depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from gentools import repro
from gentools.data import text
from gentools.models.bert import BERT
from gentools.models.gpt import GPT
from gentools.parameters import notebook_parameters, repo_notebooks_dir
from gentools.runner import jobs
from gentools.train import Callback, TrainConfig, batch_indices, compile_in_place, fit, take

NANOGPT = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, beta2=0.99)


class StepTimes(Callback):
    """Step durations that contain no evaluation."""

    def __init__(self):
        self.times, self.last, self.evaluated = [], None, False

    def on_step(self, state):
        now = time.perf_counter()
        if self.last is not None and not self.evaluated:
            self.times.append(now - self.last)
        self.last, self.evaluated = now, False

    def on_eval(self, state):
        self.evaluated = True


def gpt_part(args) -> None:
    data = text.load_text("pydoc", "char", block_size=64, stride=8)
    torch.manual_seed(0)
    model = GPT(GPT.Config(vocab_size=data.vocab_size, **NANOGPT))
    cfg = TrainConfig(steps=args.steps, batch_size=12, lr=1e-3, warmup=100, min_lr_ratio=0.1,
                      weight_decay=0.1, grad_clip=1.0, eval_every=250, threads=args.threads,
                      progress=False)
    timer = StepTimes()
    state = fit(model, data, cfg, callbacks=[timer])
    vals = [h["loss"] for h in state.history if h["split"] == "val"]
    ms = statistics.median(timer.times) * 1000
    steps, compile_s = interleaved_step_ms(data, cfg)
    print(f"\nGPT, nanoGPT CPU configuration, {args.steps} iterations, {args.threads} thread(s)\n")
    print("| best val loss | last val loss | ms/iter in `fit` (median) | tokens/s in `fit` |")
    print("| --- | --- | --- | --- |")
    print(f"| {min(vals):.3f} | {vals[-1]:.3f} | {ms:.1f} | {768 / ms * 1000:,.0f} |")
    print("\nThe same step, alternated with nanoGPT's CPU step so that all see the same load "
          f"(median of {len(steps['base'])} steps each; compiling took {compile_s:.0f} s, "
          "not timed):\n")
    print("| step | ms/iter (median) | tokens/s | speed-up over nanoGPT-style |")
    print("| --- | --- | --- | --- |")
    names = {"ours": "gentools (fused AdamW, block grid, fit's batching)",
             "compiled": "gentools with `compile=True` (torch.compile, inductor)",
             "base": "nanoGPT-style (AdamW foreach, random offsets)"}
    base_ms = statistics.median(steps["base"]) * 1000
    for key, name in names.items():
        step_ms = statistics.median(steps[key]) * 1000
        print(f"| {name} | {step_ms:.1f} | {768 / step_ms * 1000:,.0f} | "
              f"{base_ms / step_ms:.2f}x |")


def interleaved_step_ms(data, cfg: TrainConfig, iters: int = 200) -> tuple[dict, float]:
    """Seconds per training step of gentools' GPT, the same compiled, and nanoGPT's CPU step,
    the three alternated; and the seconds the first compiled step took (compiling).

    gentools: `fit`'s batching (a seeded permutation of the block grid), the model's own
    optimizer (fused AdamW), clip, step; compiled: the same after `train.compile_in_place`, as
    `TrainConfig.compile` does. nanoGPT's train.py on CPU: random offsets into the
    token stream, torch AdamW without `fused` (nanoGPT asks for it on CUDA only), decay on
    >= 2-D parameters, clip, step."""
    repro.set_threads(cfg.threads)
    torch.manual_seed(0)
    models = {key: GPT(GPT.Config(vocab_size=data.vocab_size, **NANOGPT)).train()
              for key in ("ours", "compiled")}
    compile_in_place(models["compiled"])
    opts = {key: m.configure_optimizers(cfg.lr, cfg.weight_decay)["main"]
            for key, m in models.items()}
    base = GPT(GPT.Config(vocab_size=data.vocab_size, **NANOGPT)).train()
    params = list(base.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    base_opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))
    ids, times = data.train_ids, {"ours": [], "compiled": [], "base": []}
    compile_s = 0.0
    for i in range(iters):
        for key, model in models.items():
            t0 = time.perf_counter()
            batch = take(data.train, batch_indices(len(data.train), 12, i, 0))
            loss = model.loss(batch)["loss"]
            opts[key].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opts[key].step()
            if i >= 10:
                times[key].append(time.perf_counter() - t0)
            elif key == "compiled":
                compile_s += time.perf_counter() - t0
        t1 = time.perf_counter()
        ix = torch.randint(len(ids) - 64, (12,))
        x = torch.stack([ids[j : j + 64] for j in ix])
        y = torch.stack([ids[j + 1 : j + 65] for j in ix])
        loss = base.loss((x, y))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(base.parameters(), 1.0)
        base_opt.step()
        base_opt.zero_grad(set_to_none=True)
        if i >= 10:
            times["base"].append(time.perf_counter() - t1)
    return times, compile_s


def kv_part(args) -> None:
    print("\nKV-cache generation: 256 new tokens, 1-token prompt, context 256, default width;"
          " median of 5, alternated\n")
    print("| threads | with cache (s) | without cache (s) | speed-up | same tokens |")
    print("| --- | --- | --- | --- | --- |")
    for threads in sorted({1, args.threads, 2}):
        repro.set_threads(threads)
        torch.manual_seed(0)
        model = GPT(GPT.Config(vocab_size=110, **{**NANOGPT, "block_size": 256})).eval()
        prompt = torch.tensor([[5]])
        times, out = {True: [], False: []}, {}
        for _ in range(5):
            for use_cache in (True, False):
                t0 = time.perf_counter()
                out[use_cache] = model.generate(prompt, 256, generator=torch.Generator()
                                                .manual_seed(0), use_cache=use_cache)
                times[use_cache].append(time.perf_counter() - t0)
        same = torch.equal(out[True], out[False])
        cached, full = statistics.median(times[True]), statistics.median(times[False])
        print(f"| {threads} | {cached:.3f} | {full:.3f} | {full / cached:.1f}x | {same} |")


def bert_part(args) -> None:
    nb = {k: p.default for k, p in notebook_parameters(repo_notebooks_dir() / "bert.ipynb").items()}
    data = text.load_text("pydoc", nb["tokenizer"], BERT.sizes["default"]["block_size"],
                          nb["vocab_size"], shift=False, stride=16)
    torch.manual_seed(0)
    model = BERT.from_size("default", vocab_size=data.vocab_size, mask_prob=nb["mask_prob"])
    cfg = TrainConfig(steps=nb["steps"], batch_size=nb["batch_size"], lr=nb["lr"],
                      warmup=nb["warmup"], min_lr_ratio=0.1, weight_decay=nb["weight_decay"],
                      grad_clip=1.0, eval_every=250, threads=args.threads, progress=False)
    state = fit(model, data, cfg)
    counts = torch.bincount(data.train_ids, minlength=data.vocab_size)
    m = model.masked_lm_metrics(data.val.tensors[0], counts, seed=0)
    print(f"\nBERT, notebook defaults ({nb['tokenizer']} {data.vocab_size}, 4x128 with rotary "
          f"positions, block 64, batch {nb['batch_size']}, {nb['mask_prob']:.0%} of tokens chosen "
          f"in training, {nb['steps']} steps); val, one seeded masking at 15%, scored by what "
          "the input showed\n")
    print("| accuracy at [MASK] | most frequent token there | ratio | top-5 at [MASK] | "
          "loss at [MASK] | unigram loss there | accuracy at random / unchanged | "
          "val perplexity | train seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {m['mask_acc']:.3f} | {m['mask_acc_baseline']:.3f} | "
          f"{m['mask_acc'] / m['mask_acc_baseline']:.1f}x | {m['mask_top5']:.3f} | "
          f"{m['mask_loss']:.2f} | {m['mask_unigram_loss']:.2f} | "
          f"{m['random_acc']:.3f} / {m['unchanged_acc']:.3f} | {m['ppl']:.1f} | "
          f"{state.elapsed:.0f} |")


def notebooks_part(args) -> None:
    print("\nDefault notebook runs (`gentools run NAME`, papermill, kernel start included)\n")
    print("| notebook | wall time (s) | train seconds | key metrics |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as out:
        headline = (("gpt", ("val_loss", "val_bpc")), ("bert", ("mask_acc", "mask_acc_baseline")))
        for name, keys in headline:
            t0 = time.perf_counter()
            run = jobs.run(name, {"threads": args.threads}, out=out, progress=False)
            wall = time.perf_counter() - t0
            m = json.loads((run / "metrics.json").read_text())
            shown = ", ".join(f"{k} {m[k]:.3f}" for k in keys)
            print(f"| {name} | {wall:.1f} | {m['train_seconds']:.1f} | {shown} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--parts", default="gpt,kv,bert,notebooks")
    args = ap.parse_args()
    parts = {"gpt": gpt_part, "kv": kv_part, "bert": bert_part, "notebooks": notebooks_part}
    for part in args.parts.split(","):
        parts[part](args)


if __name__ == "__main__":
    main()
