"""Generative adversarial networks: DCGAN (Radford et al. 2016, https://arxiv.org/abs/1511.06434)
with the non-saturating loss of Goodfellow et al. 2014 (https://arxiv.org/abs/1406.2661), or
WGAN-GP (Gulrajani et al. 2017, https://arxiv.org/abs/1704.00028).

A generator G maps z ~ N(0, I) to an image; a discriminator (a critic for WGAN-GP) D scores
images. Both train in turn, each with its own Adam, in the model's own `training_step`:
- "nonsaturating": D minimises softplus(-D(x)) + softplus(D(G(z))) (the GAN log-loss) and
  G minimises softplus(-D(G(z))) = -log sigmoid(D(G(z))), which keeps gradients when D wins.
- "wgan-gp": D maximises the Wasserstein estimate E D(x) - E D(G(z)) minus
  lambda E (||grad D(x_hat)||_2 - 1)^2 at random points x_hat between real and fake images;
  it takes `n_critic` steps per generator step, and G minimises -E D(G(z)).
With `conditional`, G also gets a class embedding and D is a projection discriminator
(Miyato & Koyama 2018, https://arxiv.org/abs/1802.05637): D(x, y) = psi(phi(x)) + e_y . phi(x).

NOTE: G ends in a sigmoid, so images are in [0, 1] like the other gentools models (DCGAN's
tanh on [-1, 1] is the same map rescaled); D sees 2x - 1.
NOTE: D has no batch norm, for both losses (the gradient penalty is per example, which batch
norm breaks; Gulrajani et al. drop it for the same reason). It adds the minibatch standard
deviation feature of Karras et al. 2018 (https://arxiv.org/abs/1710.10196; used there with
WGAN-GP too). On the 1000 digits (WGAN-GP, 2000 steps) the samples' FCD was 18.7 with it and
24.5 without. The non-saturating loss collapsed to one digit without it, and still missed three
digits with it (channels 32, 1000 steps): the notebook defaults to WGAN-GP.
G keeps DCGAN's batch norm, and `decode`/`sample` always run it in eval mode (running
statistics), so a sample of any size (even 1, for the widgets) gives the same image for a z.
NOTE: a training step reads one real batch from the loop. WGAN-GP's n_critic critic steps all
reuse it, each with fresh z and fresh interpolation points; the paper draws a new real batch
per critic step. Slicing the batch instead would give the critic batches of B / n_critic.
NOTE: the paper's WGAN-GP used lr 1e-4 and n_critic 5; the notebook's CPU default takes
lr 3e-4 and n_critic 2 (1500 steps on the digits), and the learning rate stays constant.
NOTE: the net is two stride-2 stages (like the VAE's), not DCGAN's four: image height and
width must be divisible by 4 (8, 28 and 32 are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gentools.data.images import to_unit
from gentools.models.base import GenerativeModel


@dataclass
class GANConfig:
    shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W) of the images
    levels: int = 17  # discrete intensity levels of the data (17 for digits, 256 for 8-bit)
    loss: str = "nonsaturating"  # "nonsaturating" (DCGAN) or "wgan-gp"
    latent_dim: int = 32  # size of z
    channels: int = 16  # channels of the first conv stage of D (G mirrors it; stage 2 is 2x)
    conditional: bool = False  # condition G and D on the class label
    num_classes: int = 10  # classes for the conditional mode
    n_critic: int = 5  # critic steps per generator step (wgan-gp only)
    gp_weight: float = 10.0  # lambda on the gradient penalty (wgan-gp only)
    minibatch_std: bool = True  # D sees the batch's feature spread (Karras et al. 2018)

    def __post_init__(self) -> None:
        if self.loss not in ("nonsaturating", "wgan-gp"):
            raise ValueError(f"unknown loss {self.loss!r}: use nonsaturating or wgan-gp")
        if self.shape[1] % 4 or self.shape[2] % 4:
            raise ValueError(f"image height and width must be divisible by 4, got {self.shape}")


class Generator(nn.Module):
    """(B, d) codes (+ (B, d) class embeddings) -> (B, C, H, W) images in [0, 1]."""

    def __init__(self, c: GANConfig):
        super().__init__()
        h, (C, H, W) = c.channels, c.shape
        self.embed = nn.Embedding(c.num_classes, c.latent_dim) if c.conditional else None
        self.net = nn.Sequential(
            nn.Linear(c.latent_dim, 2 * h * (H // 4) * (W // 4)),
            nn.Unflatten(1, (2 * h, H // 4, W // 4)),
            nn.BatchNorm2d(2 * h),
            nn.ReLU(),  # (B, 2h, H/4, W/4)
            nn.ConvTranspose2d(2 * h, h, 4, stride=2, padding=1),
            nn.BatchNorm2d(h),
            nn.ReLU(),  # (B, h, H/2, W/2)
            nn.ConvTranspose2d(h, h, 4, stride=2, padding=1),
            nn.BatchNorm2d(h),
            nn.ReLU(),  # (B, h, H, W)
            nn.Conv2d(h, C, 3, padding=1),
            nn.Sigmoid(),  # (B, C, H, W) in [0, 1]
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = z * (1 + self.embed(y))  # (B, d): a class-dependent gain on z
        return self.net(z)


class Discriminator(nn.Module):
    """(B, C, H, W) images in [0, 1] (+ (B,) labels) -> (B,) scores (logits, or critic values)."""

    def __init__(self, c: GANConfig):
        super().__init__()
        h, (C, H, W) = c.channels, c.shape
        self.phi = nn.Sequential(
            nn.Conv2d(C, h, 3, padding=1),
            nn.LeakyReLU(0.2),  # (B, h, H, W)
            nn.Conv2d(h, h, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),  # (B, h, H/2, W/2)
            nn.Conv2d(h, 2 * h, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),  # (B, 2h, H/4, W/4)
        )
        self.minibatch_std = c.minibatch_std
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear((2 * h + c.minibatch_std) * (H // 4) * (W // 4), 4 * h),
            nn.LeakyReLU(0.2),  # (B, 4h)
        )
        self.psi = nn.Linear(4 * h, 1)
        self.embed = nn.Embedding(c.num_classes, 4 * h) if c.conditional else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        f = self.phi(2 * x - 1)  # (B, 2h, H/4, W/4)
        if self.minibatch_std:
            # one more channel: the mean over features of the std over the batch
            s = f.std(0, unbiased=False).mean().expand(len(f), 1, *f.shape[2:])  # (B, 1, H/4, W/4)
            f = torch.cat([f, s], 1)  # (B, 2h + 1, H/4, W/4)
        f = self.head(f)  # (B, 4h)
        out = self.psi(f).squeeze(-1)  # (B,)
        if self.embed is not None:
            out = out + (self.embed(y) * f).sum(-1)  # projection: + e_y . phi(x)
        return out


def gradient_penalty(critic, real, fake, y=None, eps=None, create_graph=True) -> torch.Tensor:
    """E (||grad_x D(x_hat)||_2 - 1)^2 with x_hat = eps x + (1 - eps) x_fake, eps ~ U[0, 1] per
    example (or the `eps` (B,) given). Works under no_grad too (evaluation), without a graph."""
    if eps is None:
        eps = torch.rand(len(real), device=real.device)
    eps = eps.view(-1, *[1] * (real.dim() - 1))  # (B, 1, 1, 1)
    with torch.enable_grad():
        x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)  # (B, C, H, W)
        scores = critic(x_hat) if y is None else critic(x_hat, y)  # (B,)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=create_graph)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()  # (||g|| - 1)^2


class GAN(GenerativeModel):
    Config = GANConfig
    sizes = {
        "tiny": dict(latent_dim=4, channels=4),
        "default": dict(latent_dim=32, channels=16),
        "medium": dict(latent_dim=64, channels=32),  # 28x28 on a CPU
        "gpu": dict(latent_dim=128, channels=128),
    }

    def __init__(self, config: GANConfig):
        super().__init__(config)  # GANConfig checked the loss and the image shape
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict:
        """Adam for each player: betas (0.5, 0.999) as in DCGAN, (0.0, 0.9) for WGAN-GP."""
        betas = (0.5, 0.999) if self.config.loss == "nonsaturating" else (0.0, 0.9)
        return {
            name: torch.optim.Adam(part.parameters(), lr, betas, weight_decay=weight_decay)
            for name, part in (("disc", self.discriminator), ("gen", self.generator))
        }

    @property
    def labels_seen(self) -> bool:
        return self.config.conditional  # num_classes is only used when conditional

    # --- the two players ------------------------------------------------------------------
    def _z(self, real: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(real), self.config.latent_dim, device=real.device)  # (B, d)

    def disc_loss(self, real, y, fake) -> dict[str, torch.Tensor]:
        """The discriminator's (critic's) loss on real images and (detached) fakes."""
        d_real = self.discriminator(real, y)  # (B,)
        d_fake = self.discriminator(fake.detach(), y)  # (B,)
        if self.config.loss == "nonsaturating":
            # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))
            return {"d_loss": F.softplus(-d_real).mean() + F.softplus(d_fake).mean()}
        wasserstein = d_real.mean() - d_fake.mean()  # E D(x) - E D(G(z))
        gp = gradient_penalty(
            self.discriminator, real, fake, y, create_graph=torch.is_grad_enabled()
        )
        d_loss = -wasserstein + self.config.gp_weight * gp
        return {"d_loss": d_loss, "wasserstein": wasserstein, "gp": gp}

    def gen_loss(self, fake, y) -> torch.Tensor:
        d_fake = self.discriminator(fake, y)  # (B,)
        if self.config.loss == "nonsaturating":
            return F.softplus(-d_fake).mean()  # -log sigmoid(D(G(z)))
        return -d_fake.mean()  # -E D(G(z))

    def _real(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = to_unit(batch[0], self.config.levels)  # (B, C, H, W) in [0, 1]
        return x, (batch[1] if self.config.conditional else None)

    # --- the contract ---------------------------------------------------------------------
    def training_step(self, batch, optimize) -> dict[str, torch.Tensor]:
        """Discriminator step(s), then one generator step, each with its own optimizer."""
        real, y = self._real(batch)
        n_disc = self.config.n_critic if self.config.loss == "wgan-gp" else 1
        for _ in range(n_disc):  # fakes of the conditional model take the real batch's labels
            with torch.no_grad():
                fake = self.generator(self._z(real), y)  # (B, C, H, W)
            d = self.disc_loss(real, y, fake)
            optimize(d["d_loss"], "disc")
        g_loss = self.gen_loss(self.generator(self._z(real), y), y)
        optimize(g_loss, "gen")
        return {"loss": d["d_loss"], **d, "g_loss": g_loss}

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """Both players' losses on a batch, with fresh z; nothing is updated.

        "loss" is the discriminator's loss. A GAN has no likelihood, so there is no `nll`.
        """
        real, y = self._real(batch)
        fake = self.generator(self._z(real), y)  # (B, C, H, W)
        d = self.disc_loss(real, y, fake)
        return {"loss": d["d_loss"], **d, "g_loss": self.gen_loss(fake, y)}

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, d) -> images (B, C, H, W) in [0, 1], G in eval mode (batch-norm running stats).

        The conditional model needs `labels` (B,) (an int broadcasts to every row)."""
        if self.config.conditional:
            if labels is None:
                raise ValueError("a conditional GAN needs labels to decode")
            labels = torch.as_tensor(labels, device=z.device).long().expand(len(z))  # (B,)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(z, labels if self.config.conditional else None)
        finally:
            self.generator.train(was_training)

    @torch.no_grad()
    def latent_directions(self, k: int = 8) -> torch.Tensor:
        """The k unit directions (k, d) of z that move G's first layer the most.

        GANSpace (Harkonen et al. 2020, https://arxiv.org/abs/2004.02546) takes the principal
        directions of an early layer's activations over z ~ N(0, I). G's first layer is
        linear, h = W z + b, so Cov(h) = W W^T and its principal axes pulled back to z are the
        top right-singular vectors of W: exact, with no sampling.
        """
        w = self.generator.net[0].weight  # (D_h, d)
        _, _, vh = torch.linalg.svd(w, full_matrices=False)  # W = U diag(s) Vh
        return vh[:k]  # (k, d)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        truncation: float | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1].

        truncation: resample every |z_i| above it (the truncation trick, Brock et al. 2019,
        https://arxiv.org/abs/1809.11096): fidelity up, variety down; None: plain N(0, I).
        labels: (n,) classes for the conditional model; None: drawn uniformly.
        """
        device = next(self.parameters()).device
        z = truncated_normal(n, self.config.latent_dim, truncation, generator)  # (n, d)
        if self.config.conditional and labels is None:
            labels = torch.randint(0, self.config.num_classes, (n,), generator=generator)
        return self.decode(z.to(device), None if labels is None else torch.as_tensor(labels))


def truncated_normal(
    n: int, d: int, threshold: float | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, d) draws of N(0, 1), each |z_i| > threshold redrawn until inside (threshold > 0)."""
    z = torch.randn(n, d, generator=generator)
    if threshold is None:
        return z
    if threshold <= 0 or not math.isfinite(threshold):
        raise ValueError(f"truncation must be a positive number, got {threshold}")
    while (outside := z.abs() > threshold).any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
    return z
