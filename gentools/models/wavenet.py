"""WaveNet (van den Oord et al. 2016, https://arxiv.org/abs/1609.03499) with Fast WaveNet
generation (Paine et al. 2016, https://arxiv.org/abs/1611.09482).

An autoregressive model of mu-law audio codes x_1..x_T (256 levels):
p(x | c) = prod_t softmax(f(x_<t, c, l_t))[x_t], with c the global conditioning (instrument,
pitch) and l_t a local conditioning signal: sinusoids at the pitch's frequency.

- an embedding of each code, then a causal conv that sees x_{t-2}, x_{t-1} (shifted: the
  logits at t never see x_t);
- residual layers with dilations 1, 2, ..., 2^(cycle-1), repeated `stacks` times; each one
  z = W_f * h + V_f c, W_g * h + V_g c (kernel 2, dilated, causal), g = tanh(z_f) sigmoid(z_g),
  h <- h + W_r g (residual), skip += W_s g;
- out = W_2 relu(W_1 relu(sum skip)): 256-way logits.
The receptive field is 2 + stacks (2^cycle - 1) samples: 1025 at the default size.

Local conditioning (`harmonics` = K > 0): every layer's gates also get W_l l_t, with
l_t = [sin(k theta_t), cos(k theta_t)]_{k=1..K}, theta_t = 2 pi f0 t / sr + phi, f0 the
frequency of the pitch asked for. The pitch label alone is a gate bias that teacher forcing
barely uses (the past samples predict the next one well without it), so generated notes
drifted off pitch; l_t is a clock at f0 that generation cannot drift from. In training, phi
is the phase of the clip's own component at f0 (`clip_phase`), quantised to `phase_levels`
levels, so l_t lines up with the note; generation uses phi = 0 (any phase is a valid note).
phi is read off the clip, so the likelihood is reported as a two-part code: first phi,
uniform over its levels (log2 64 = 6 bits per clip), then x given phi. That total is an
upper bound on -log2 p(x | c), and it is what `loss` and `nll` return.

Fast generation keeps, for every layer, a queue of its last d inputs (d its dilation), so a
new sample costs one step per layer, O(L), instead of a forward pass over the receptive
field, O(L R). `reference_steps` writes that loop in torch with the model's own modules;
`fast_steps` runs the same queues in numpy. Given the same uniforms from `generator`,
`sample(sampler="fast")` and `sample(sampler="reference")` draw the same codes: both map
u ~ U(0,1) through the inverse CDF of the same softmax, in float64.

NOTE: global conditioning is two embedding tables, instrument and pitch, giving per-layer
gate biases V c directly (the paper: a learned linear map of a one-hot vector, the same
thing). The input is an embedding of the code, not a one-hot 1x1 conv (again the same).
NOTE: the default (fast) step runs in numpy on the CPU, whatever the model's device: one
sample costs two small matrix products and a few elementwise ops per layer, where torch's
per-op dispatch (several microseconds) dominates; numpy's is about one. The past taps of all
layers are one batched product, and sigmoid(a) = (1 + tanh(a/2)) / 2 makes the gate a single
tanh. While sampling, numpy's BLAS gets torch's thread count: with two BLAS threads on two
busy cores, the threads waited for each other and sampling ran 10 to 30 times slower.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from gentools.models.base import GenerativeModel
from gentools.nn import CausalConv1d


@dataclass
class WaveNetConfig:
    n_instruments: int = 3  # instruments to condition on (the data's count)
    n_pitches: int = 25  # pitch classes to condition on (the data's count)
    levels: int = 256  # mu-law levels: the softmax size
    residual_channels: int = 32  # channels of h, the residual stream
    dilation_channels: int = 32  # channels of the gated unit g
    skip_channels: int = 64  # channels of the skip sum and the output layers
    cycle: int = 10  # dilations 1, 2, ..., 2^(cycle-1) in each stack
    stacks: int = 1  # how many times the dilation cycle repeats
    harmonics: int = 0  # local conditioning: sin, cos of 2 pi k f0 t for k = 1..harmonics (0: none)
    sample_rate: int = 8000  # samples per second, for the frequency of those sinusoids
    pitch_midi: tuple[int, ...] = tuple(range(48, 73))  # MIDI note of each pitch index
    phase_levels: int = 64  # the clip's phase at f0, quantised to this many levels, aligns l_t

    def __post_init__(self) -> None:
        if self.harmonics and len(self.pitch_midi) != self.n_pitches:
            raise ValueError(f"pitch_midi has {len(self.pitch_midi)} notes for "
                             f"{self.n_pitches} pitches")


class ResidualLayer(nn.Module):
    """Dilated causal conv, gated unit with conditioning, residual and skip 1x1 convs."""

    def __init__(self, c: WaveNetConfig, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.conv = CausalConv1d(c.residual_channels, 2 * c.dilation_channels, 2, dilation)
        self.res = nn.Conv1d(c.dilation_channels, c.residual_channels, 1)
        self.skip = nn.Conv1d(c.dilation_channels, c.skip_channels, 1)

    def forward(self, h: torch.Tensor, cond: torch.Tensor):
        z = self.conv(h) + cond  # (B, 2D, T): W * h + V c (+ W_l l_t); cond (B, 2D, 1 or T)
        f, g = z.chunk(2, dim=1)
        g = torch.tanh(f) * torch.sigmoid(g)  # (B, D, T): tanh(z_f) sigmoid(z_g)
        return h + self.res(g), self.skip(g)  # (B, R, T), (B, S, T)


class WaveNet(GenerativeModel):
    Config = WaveNetConfig
    sizes = {
        "tiny": dict(residual_channels=8, dilation_channels=8, skip_channels=16, cycle=4,
                     stacks=2, harmonics=2),
        "default": dict(residual_channels=32, dilation_channels=32, skip_channels=64, cycle=10,
                        stacks=1, harmonics=4),
        "gpu": dict(residual_channels=64, dilation_channels=64, skip_channels=256, cycle=10,
                    stacks=3, harmonics=4),
    }

    def __init__(self, config: WaveNetConfig):
        super().__init__(config)
        c = config
        self.dilations = [2**i for i in range(c.cycle)] * c.stacks
        n_cond = len(self.dilations) * 2 * c.dilation_channels
        self.embed = nn.Embedding(c.levels, c.residual_channels)
        self.input = CausalConv1d(c.residual_channels, c.residual_channels, 2,
                                  include_current=False)
        self.instrument = nn.Embedding(c.n_instruments, n_cond)  # V c for every layer
        self.pitch = nn.Embedding(c.n_pitches, n_cond)
        self.layers = nn.ModuleList(ResidualLayer(c, d) for d in self.dilations)
        if c.harmonics:  # W_l l_t for every layer: a 1x1 conv of the pitch sinusoids
            self.local = nn.Conv1d(2 * c.harmonics, n_cond, 1, bias=False)
        self.out1 = nn.Conv1d(c.skip_channels, c.skip_channels, 1)
        self.out2 = nn.Conv1d(c.skip_channels, c.levels, 1)

    @property
    def receptive_field(self) -> int:
        """Past samples the logits at t see: x_{t-R} .. x_{t-1}, R = 2 + sum of dilations."""
        return self.input.receptive_field + sum(self.dilations)

    def conditioning(self, instrument: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """(B,) indices -> per-layer gate biases (B, L, 2D)."""
        v = self.instrument(instrument) + self.pitch(pitch)  # (B, L * 2D)
        return v.view(len(v), len(self.layers), -1)

    def f0_cycles(self, pitch: torch.Tensor, start: int, length: int) -> torch.Tensor:
        """f0 t / sr at t = start .. start + length - 1, f0 the pitch's frequency: (B, T)."""
        midi = torch.tensor(self.config.pitch_midi, dtype=torch.float64, device=pitch.device)
        f0 = 440.0 * 2.0 ** ((midi[pitch] - 69) / 12)  # (B,) Hz: f = 440 2^((m - 69) / 12)
        t = torch.arange(start, start + length, dtype=torch.float64, device=pitch.device)
        return f0[:, None] * t / self.config.sample_rate  # (B, T)

    def sinusoids(self, pitch, phase, start: int, length: int) -> torch.Tensor:
        """The local conditioning l_t at t = start .. start + length - 1: (B, 2K, length).

        l_t = [sin(k (2 pi f0 t / sr + phi)), cos(...)] for k = 1..K, f0 the pitch's frequency,
        phi (B,) the phase in levels 0..phase_levels-1; t counts samples from the clip's start.
        It depends on the pitch and phi only, never on the samples before t.
        """
        k = torch.arange(1, self.config.harmonics + 1, dtype=torch.float64, device=pitch.device)
        turns = self.f0_cycles(pitch, start, length) + phase[:, None] / self.config.phase_levels
        angle = 2 * math.pi * k[None, :, None] * torch.remainder(turns, 1.0)[:, None]  # (B,K,T)
        return torch.cat([angle.sin(), angle.cos()], 1).to(self.embed.weight.dtype)

    @torch.no_grad()
    def clip_phase(self, codes: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """The phase of each clip's fundamental, quantised: (B,) levels 0..phase_levels-1.

        phi = arg sum_t x_t e^(-i 2 pi f0 t / sr) (the clip's component at f0), so that
        cos(2 pi f0 t / sr + phi) follows the note's fundamental; x = mu-law decoded codes.
        """
        levels, mu = self.config.phase_levels, self.config.levels - 1
        f = 2 * codes.double() / mu - 1  # F = 2q / mu - 1
        x = torch.sign(f) * torch.expm1(f.abs() * math.log1p(mu)) / mu  # mu-law decode
        angle = 2 * math.pi * torch.remainder(self.f0_cycles(pitch, 0, codes.shape[1]), 1.0)
        phi = torch.atan2(-(x * angle.sin()).sum(1), (x * angle.cos()).sum(1))  # (B,)
        return torch.remainder(torch.round(phi / (2 * math.pi) * levels), levels).long()

    def phase_nats(self, length: int) -> float:
        """Cost of sending the clip's phase level first (uniform): log(phase_levels) nats per
        clip, spread over its samples. -log p(x | c) <= this + -log p(x | c, phi)."""
        return math.log(self.config.phase_levels) / length if self.config.harmonics else 0.0

    def logits_from_embedded(self, e, instrument, pitch, phase=None, start: int = 0):
        """e: embedded codes (B, R, T) -> logits (B, levels, T); logits at t see e_<t only.
        phase (B,) levels of the pitch sinusoids (None: 0); `start` the clip time of e[..., 0]."""
        cond = self.conditioning(instrument, pitch)[..., None]  # (B, L, 2D, 1)
        if self.config.harmonics:  # + W_l l_t: (B, L, 2D, T)
            phase = torch.zeros_like(pitch) if phase is None else phase
            local = self.local(self.sinusoids(pitch, phase, start, e.shape[2]))  # (B, L 2D, T)
            cond = cond + local.view(len(e), len(self.layers), -1, e.shape[2])
        h, skip = self.input(e), 0  # (B, R, T)
        for i, layer in enumerate(self.layers):
            h, s = layer(h, cond[:, i])
            skip = skip + s  # (B, S, T)
        return self.out2(F.relu(self.out1(F.relu(skip))))  # (B, levels, T)

    def forward(self, codes, instrument, pitch, phase=None, start: int = 0) -> torch.Tensor:
        """codes (B, T) int -> logits (B, levels, T) predicting each code from the ones before;
        codes[:, 0] is at clip time `start`."""
        e = self.embed(codes).transpose(1, 2)  # (B, R, T)
        return self.logits_from_embedded(e, instrument, pitch, phase, start)

    def _phase(self, codes, pitch):
        return self.clip_phase(codes, pitch) if self.config.harmonics else None

    # --- the contract ------------------------------------------------------------------
    def loss(self, batch) -> dict[str, torch.Tensor]:
        codes, instrument, pitch = batch
        logits = self(codes, instrument, pitch, self._phase(codes, pitch))
        nats = F.cross_entropy(logits, codes)  # mean -log p(x_t | x_<t, c, phi)
        nats = nats + self.phase_nats(codes.shape[1])  # + log(levels) / T: sending phi
        return {"loss": nats, "bps": nats / math.log(2)}

    @torch.no_grad()
    def nll(self, batch) -> torch.Tensor:
        """-log p(x | c) in nats per example: (B,)."""
        codes, instrument, pitch = batch
        logits = self(codes, instrument, pitch, self._phase(codes, pitch))
        nats = F.cross_entropy(logits, codes, reduction="none").sum(1)  # -log p(x | c, phi)
        return nats + self.phase_nats(codes.shape[1]) * codes.shape[1]  # + log(levels)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
        instrument=0,
        pitch=0,
        temperature: float = 1.0,
        sampler: str = "fast",
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """n clips of `length` codes (None: one receptive field): (n, length) int64 on the CPU,
        conditioned on instrument and pitch (ints or (n,) indices); the pitch sinusoids start
        at phase 0. sampler: "fast" (numpy) or "reference" (torch), the same draws.
        progress(step, length) is called after each sample."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        steps = {"fast": self.fast_steps, "reference": self.reference_steps}[sampler]
        length = length or self.receptive_field
        inst = torch.as_tensor(instrument).long().expand(n).contiguous()
        pit = torch.as_tensor(pitch).long().expand(n).contiguous()
        codes = np.zeros((n, length), dtype=np.int64)  # numpy: cheaper per step than torch
        u = torch.rand(length, n, generator=generator, dtype=torch.float64).numpy()  # U(0, 1)
        with threadpool_limits(torch.get_num_threads(), "blas"):  # numpy's BLAS too
            for t, logits in enumerate(steps(codes, inst, pit)):
                codes[:, t] = draw(logits, u[t], temperature)  # x_t
                if progress is not None:
                    progress(t + 1, length)
        return torch.from_numpy(codes)

    @torch.no_grad()
    def reference_steps(self, codes, inst, pit):
        """Yields the logits (n, levels) of x_t for t = 0, 1, ..., T - 1, reading codes[:, t]
        (codes (n, T) int, numpy or torch) once step t is taken: the caller writes the drawn
        code there. Fast WaveNet in torch: each layer keeps a queue of its last d inputs, so a
        step is one tap pair per layer."""
        device, (n, T) = self.embed.weight.device, codes.shape
        inst, pit = inst.to(device), pit.to(device)
        cond = self.conditioning(inst, pit)[..., None]  # (n, L, 2D, 1): V c
        if self.config.harmonics:  # the clock l_t at phase 0: (n, 2K, T)
            clock = self.sinusoids(pit, torch.zeros_like(pit), 0, T)
        zero = self.embed.weight.new_zeros(n, self.config.residual_channels, 1)  # padding
        e2 = e1 = zero  # embedded x_{t-2}, x_{t-1}
        queues = [deque([zero] * layer.dilation, maxlen=layer.dilation) for layer in self.layers]
        for t in range(T):
            taps = torch.cat([e2, e1], 2)  # (n, R, 2): embedded x_{t-2}, x_{t-1}
            h = F.conv1d(taps, self.input.conv.weight, self.input.conv.bias)  # (n, R, 1): h_t
            c_t, skip = cond, 0
            if self.config.harmonics:  # V c + W_l l_t: (n, L, 2D, 1)
                c_t = cond + self.local(clock[:, :, t : t + 1]).view(cond.shape)
            for i, (layer, queue) in enumerate(zip(self.layers, queues, strict=True)):
                conv = layer.conv.conv  # kernel 2, dilation d, applied to its two taps
                taps = torch.cat([queue[0], h], 2)  # (n, R, 2): h_{t-d}, h_t
                queue.append(h)  # h_{t-d} leaves the queue, h_t joins it
                z = F.conv1d(taps, conv.weight, conv.bias) + c_t[:, i]  # (n, 2D, 1)
                f, g = z.chunk(2, dim=1)  # (n, D, 1) each: z_f, z_g
                g = torch.tanh(f) * torch.sigmoid(g)  # tanh(z_f) sigmoid(z_g)
                h = h + layer.res(g)  # (n, R, 1): residual
                skip = skip + layer.skip(g)  # (n, S, 1): skip += W_s g
            logits = self.out2(F.relu(self.out1(F.relu(skip))))[:, :, 0]  # (n, levels)
            yield logits.cpu().double()
            x = torch.as_tensor(codes[:, t], device=device)  # (n,): the code drawn at t
            e2, e1 = e1, self.embed(x)[:, :, None]  # (n, R, 1)

    @torch.no_grad()
    def fast_steps(self, codes, inst, pit):
        """The same logits from the same queues, in numpy on the CPU (see the NOTE above)."""
        A = lambda p: p.detach().cpu().numpy()  # a parameter as a numpy array
        n, L, D = len(codes), len(self.layers), self.config.dilation_channels
        convs = [layer.conv.conv for layer in self.layers]  # (2D, R, 2) weights: h_{t-d}, h_t
        emb = A(self.embed.weight)  # (levels, R)
        # the input conv as two tables: code -> its contribution two steps / one step later;
        # the extra last row (index `levels`) is the zero padding before the clip starts
        w = A(self.input.conv.weight)  # (R, R, 2)
        pad = np.zeros((1, emb.shape[1]), emb.dtype)
        from_old = np.concatenate([emb @ w[:, :, 0].T, pad])  # (levels + 1, R)
        from_new = np.concatenate([emb @ w[:, :, 1].T, pad]) + A(self.input.conv.bias)
        device = self.embed.weight.device
        cond = self.conditioning(inst.to(device), pit.to(device)).cpu().numpy()  # (n, L, 2D)
        cond = cond.transpose(1, 0, 2)  # (L, n, 2D)
        past_w = np.stack([A(c.weight)[:, :, 0].T for c in convs])  # (L, R, 2D)
        now_w = [A(c.weight)[:, :, 1].T for c in convs]  # (R, 2D)
        cond = cond + np.stack([A(c.bias) for c in convs])[:, None]
        local_w = None
        if self.config.harmonics:  # W_l as (2K, L, 2D), and l_t for every t: (T, n, 2K)
            local_w = A(self.local.weight)[:, :, 0].T.reshape(-1, L, 2 * D)
            zero = torch.zeros_like(pit).to(device)  # generation: phase level 0
            l_all = self.sinusoids(pit.to(device), zero, 0, codes.shape[1]).cpu().numpy()
            l_all = np.ascontiguousarray(l_all.transpose(2, 0, 1))  # (T, n, 2K)
        # sigmoid(a) = (1 + tanh(a / 2)) / 2: halve the gate rows, one tanh per layer, and fold
        # the outer 1/2 into the residual and skip weights
        half = np.concatenate([np.ones(D), np.full(D, 0.5)]).astype(emb.dtype)  # (2D,)
        past_w, now_w, cond = past_w * half, [w * half for w in now_w], cond * half
        if local_w is not None:
            local_w = np.ascontiguousarray((local_w * half).transpose(1, 0, 2))  # (L, 2K, 2D)
        res_w = [A(layer.res.weight)[:, :, 0].T / 2 for layer in self.layers]  # (D, R)
        res_b = [A(layer.res.bias) for layer in self.layers]
        skip_w = np.concatenate([A(layer.skip.weight)[:, :, 0].T / 2 for layer in self.layers])
        skip_b = sum(A(layer.skip.bias) for layer in self.layers)  # (S,)
        w1, b1 = A(self.out1.weight)[:, :, 0].T, A(self.out1.bias)  # (S, S)
        w2, b2 = A(self.out2.weight)[:, :, 0].T, A(self.out2.bias)  # (S, levels)
        # queue i holds the last d_i inputs of layer i; zeros are the training's zero padding
        queues = [np.zeros((d, n, emb.shape[1]), emb.dtype) for d in self.dilations]
        layers = list(zip(queues, self.dilations, now_w, res_w, res_b, strict=True))
        x2 = x1 = np.full(n, self.config.levels)  # x_{t-2}, x_{t-1}: padding at the start
        for t in range(codes.shape[1]):
            h = from_old[x2] + from_new[x1]  # (n, R): the shifted input conv
            past = np.stack([q[t % d] for q, d, *_ in layers])  # (L, n, R): h_{t-d} per layer
            zp = np.matmul(past, past_w) + cond  # (L, n, 2D): past tap + V c, all layers at once
            if local_w is not None:  # + W_l l_t: (n, 2K) x (L, 2K, 2D) -> (L, n, 2D)
                zp += np.matmul(l_all[t], local_w)
            gates = []
            for (q, d, w_now, w_res, b_res), z_past in zip(layers, zp, strict=True):
                q[t % d] = h  # h_t replaces h_{t-d} in the queue
                a = np.tanh(z_past + h @ w_now)  # (n, 2D): tanh(z_f), tanh(z_g / 2)
                g = a[:, :D] * (1 + a[:, D:])  # 2 tanh(z_f) sigmoid(z_g)
                gates.append(g)
                h = h + g @ w_res + b_res  # (n, R)
            skip = np.concatenate(gates, 1) @ skip_w + skip_b  # (n, S): sum_i W_s,i g_i
            out = np.maximum(np.maximum(skip, 0) @ w1 + b1, 0) @ w2 + b2  # (n, levels)
            yield out.astype(np.float64)
            x2, x1 = x1, np.asarray(codes[:, t])  # the code drawn at t


def draw(logits, u, temperature: float = 1.0) -> np.ndarray:
    """Inverse-CDF draw: the first q with cdf(q) > u, p = softmax(logits / T): (n,) codes."""
    z = np.asarray(logits, dtype=np.float64) / temperature  # (n, levels)
    cdf = np.exp(z - z.max(1, keepdims=True)).cumsum(1)  # unnormalised: compare with u * total
    return (cdf <= np.asarray(u)[:, None] * cdf[:, -1:]).sum(1)  # #{q: cdf(q) <= u}, u < 1
