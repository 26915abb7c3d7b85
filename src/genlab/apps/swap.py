"""Domain swapping with a shared encoder and one decoder per domain: the autoencoder behind "deepfake" face
swaps, shown on two domains available offline: the run's images (A) and a transformed version of them (B).

    E: images -> codes (shared),   D_A, D_B: codes -> images (one per domain)
    min  E_a l(D_A(E(a)), a) + E_b l(D_B(E(b)), b)        unpaired: A and B are different images
    A -> B:  D_B(E(a))          B -> A:  D_A(E(b))

`l` is the binary cross-entropy for data in [0, 1] (the squared error for [-1, 1]), summed over pixels. Training
sees no pairs: domain A is the first half of the training images, domain B the transform of the second half.
Because the encoder is shared, the code carries what both domains have in common (the digit's shape) and each
decoder renders it in its own domain's style.

Transforms T with a known answer, so the swap can be scored: `dilate` thickens the strokes with a 3 x 3
maximum filter (stride 1), `invert` maps x to lo + hi - x. On test images a: A -> B is scored against T(a) and
B -> A (from b = T(a)) against a, by PSNR and SSIM on pixels in [0, 1]. Baselines: `identity` (the input
unchanged: how far the domains are apart) and `same_decoder` (the image through its own domain's decoder:
the swap must come from the other decoder, not from the encoder).

    model = fit_swap(a_train, b_train, SwapConfig(), seed=0)   # SwapAutoencoder
    model.swap(a, "B")                                         # A -> B
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import RANGES
from ..errors import UserError
from ..nn import Decoder, Encoder
from .reduce import PSNR_CAP_DB, reconstruction_scores
from .registry import AppContext, app, batched, model_name, option, positive_int

DOMAINS = ("A", "B")


def _invert(x: torch.Tensor, value_range: str) -> torch.Tensor:
    lo, hi = RANGES[value_range]
    return lo + hi - x


TRANSFORMS = {
    "dilate": lambda x, value_range: F.max_pool2d(x, 3, stride=1, padding=1),  # 3 x 3 maximum filter
    "invert": _invert,
}


def transform(x: torch.Tensor, name: str, value_range: str = "01") -> torch.Tensor:
    """The domain-B version of images x (model range): dilate (3 x 3 max filter) or invert."""
    if name not in TRANSFORMS:
        raise UserError(f"the domain transform must be one of {', '.join(TRANSFORMS)}, got '{name}'")
    return TRANSFORMS[name](x, value_range)


@dataclass
class SwapConfig:
    hidden: tuple[int, ...] = (512, 256)  # MLP widths of the encoder (the decoders mirror them)
    latent_dim: int = 32
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3


class SwapAutoencoder(nn.Module):
    """One encoder, one decoder per domain; MLPs of `Encoder` / `Decoder` (genlab.nn)."""

    def __init__(self, shape: tuple[int, int, int], value_range: str = "01", hidden: tuple[int, ...] = (512, 256),
                 latent_dim: int = 32):
        super().__init__()
        self.shape, self.value_range = tuple(shape), value_range
        body = Encoder(self.shape, "mlp", hidden, ())
        self.encoder = nn.Sequential(body, nn.Linear(body.out_features, latent_dim))
        self.decoders = nn.ModuleDict({d: Decoder(self.shape, "mlp", hidden, (), latent_dim) for d in DOMAINS})

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def logits(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        if domain not in DOMAINS:
            raise UserError(f"the domain must be A or B, got '{domain}'")
        return self.decoders[domain](z)

    def decode(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        """Codes -> images of `domain` in the data range."""
        out = self.logits(z, domain)
        return torch.sigmoid(out) if self.value_range == "01" else torch.tanh(out)

    def swap(self, x: torch.Tensor, to: str) -> torch.Tensor:
        """Images of either domain rendered by domain `to`'s decoder: D_to(E(x))."""
        return self.decode(self.encode(x), to)

    def loss(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """Reconstruction error per image, averaged: BCE on [0, 1] data, squared error on [-1, 1]."""
        out = self.logits(self.encode(x), domain)
        if self.value_range == "01":
            err = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            err = (torch.tanh(out) - x).pow(2)
        return err.flatten(1).sum(1).mean()


def fit_swap(a: torch.Tensor, b: torch.Tensor, cfg: SwapConfig = SwapConfig(), value_range: str = "01",
             seed: int = 0, device: str | torch.device = "cpu") -> SwapAutoencoder:
    """Train the shared-encoder, two-decoder autoencoder on unpaired images of A and B (Adam, seeded);
    each step takes one batch of each domain. -> the model in eval mode."""
    if len(a) < 2 or len(b) < 2:
        raise UserError("swap training needs at least two images of each domain")
    torch.manual_seed(seed)
    model = SwapAutoencoder(a.shape[1:], value_range, cfg.hidden, cfg.latent_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    n = min(len(a), len(b))
    model.train()
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            oa, ob = torch.randperm(len(a), generator=g)[:n], torch.randperm(len(b), generator=g)[:n]
            for i in range(0, n, cfg.batch_size):
                ia, ib = oa[i : i + cfg.batch_size], ob[i : i + cfg.batch_size]
                loss = model.loss(a[ia].to(device), "A") + model.loss(b[ib].to(device), "B")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


def swap_scores(model: SwapAutoencoder, a: torch.Tensor, name: str, value_range: str = "01",
                batch_size: int = 256) -> tuple[dict, dict]:
    """Scores of A -> B against T(a) and B -> A against a, for the swap and the baselines (module docstring);
    -> (results rows, the images {a, a_to_b, b, b_to_a, ...} on the CPU)."""
    dev = next(model.parameters()).device
    b = transform(a, name, value_range)

    def run(x, to):
        return batched(lambda xb, _: model.swap(xb, to), x, None, batch_size, dev)

    imgs = {"a": a, "a_to_b": run(a, "B"), "b": b, "b_to_a": run(b, "A"), "a_to_a": run(a, "A"), "b_to_b": run(b, "B")}

    def row(ab, ba):
        s1, s2 = reconstruction_scores(b, ab, value_range), reconstruction_scores(a, ba, value_range)
        return {"a_to_b_psnr_db": s1["psnr_db"], "a_to_b_ssim": s1["ssim"],
                "b_to_a_psnr_db": s2["psnr_db"], "b_to_a_ssim": s2["ssim"]}

    results = {"swap": row(imgs["a_to_b"], imgs["b_to_a"]), "identity": row(a, b),
               "same_decoder": row(imgs["a_to_a"], imgs["b_to_b"])}
    return results, imgs


@app("swap", (),
     "domain swap: a shared encoder with one decoder per domain (deepfake-style) on the run's images and a "
     "transformed copy; PSNR / SSIM of A -> B against the true transform",
     options=(option("--transform", choices=TRANSFORMS,
                     help="domain B = this transform of the images (default dilate)"),
              option("--train-n", type=positive_int,
                     help="training images, half for each domain, unpaired (default 10000)"),
              option("--epochs", type=positive_int, help="training epochs of the swap model (default 10)"),
              option("--latent", type=positive_int, help="code size of the shared encoder (default 32)")))
def run(ctx: AppContext) -> dict:
    name = ctx.option("transform", "dilate")
    rng = ctx.info.range
    cfg = SwapConfig(epochs=ctx.option("epochs", 10), latent_dim=ctx.option("latent", 32))
    x_train, _, _ = ctx.tensors("train", ctx.option("train_n", 10000))
    half = len(x_train) // 2
    a_train, b_train = x_train[:half], transform(x_train[half:], name, rng)
    dev = ctx.device
    model = fit_swap(a_train, b_train, cfg, rng, ctx.seed, dev)
    x, _, _ = ctx.tensors()
    results, imgs = swap_scores(model, x, name, rng, ctx.batch_size)
    recon = {"A": reconstruction_scores(x, imgs["a_to_a"], rng)["psnr_db"],
             "B": reconstruction_scores(imgs["b"], imgs["b_to_b"], rng)["psnr_db"]}
    m = min(12, len(x))
    rows = torch.cat([imgs[k][:m] for k in ("a", "a_to_b", "b", "b_to_a")])
    figures = [ctx.save_images(rows, "swap.png", nrow=m)]
    proto = ctx.protocol(split=ctx.split, n=len(x), transform=name,
                         model=f"shared-encoder two-decoder MLP autoencoder (widths {list(cfg.hidden)}, code "
                               f"{cfg.latent_dim}) trained here; the run's model '{model_name(ctx.model)}' is not used",
                         training=f"{half} images of domain A and the {name} of {len(x_train) - half} other images as "
                                  f"domain B (unpaired), {cfg.epochs} epochs, Adam {cfg.lr:g}, batch {cfg.batch_size}, "
                                  f"seed {ctx.seed}",
                         scored=f"A -> B against {name}(a), B -> A against a, on the first {len(x)} {ctx.split} images",
                         baseline="identity: the input unchanged; same_decoder: the image through its own domain's "
                                  "decoder",
                         reconstruction_psnr_db=recon, code_size=cfg.latent_dim,
                         psnr=f"per image, capped at {PSNR_CAP_DB:g} dB, averaged", scale="pixels in [0, 1]",
                         figures="swap.png rows: A, A -> B, B, B -> A")
    return {"results": results, "protocol": proto, "figures": figures}

