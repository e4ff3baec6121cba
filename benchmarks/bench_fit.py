"""Fit time for both geometries on 768-d vectors: 8,000 items in 64 clusters, latent 32,
3 × 256, defaults (balanced k-means start and refit of the deep codes), 1 warm-up + 5 epochs.
Prints training items per second per epoch (quantized epochs, with evaluation and revival)
and the whole fit's wall time, which includes the k-means starts and the refit.

Then, in the same process, the reference peer: a vector-quantize-pytorch RQ-VAE of the same
shape (the same MLP encoder and decoder, ResidualVQ with 3 × 256 codes of dim 32, k-means
initialised, EMA codebooks), the same optimiser, batch size, split and epochs (1 without
quantization + 5 with, each with a validation pass). `make bench` installs it (the `bench`
extra); without it that line says so.

Usage: python benchmarks/bench_fit.py [--code OLDER_CHECKOUT] (to time another source tree)"""

import sys
import time

import torch
from _common import ROOT

if "--code" in sys.argv:  # an older checkout first on the path, to compare in one session
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])
    for name in [m for m in sys.modules if m.startswith("hrqtok")]:
        del sys.modules[name]

from hrqtok.config import ModelConfig, TrainConfig  # noqa: E402
from hrqtok.fit.items import fit_model  # noqa: E402


def mlp(sizes: list[int]) -> torch.nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def vector_quantize_pytorch_fit(x: torch.Tensor, model: ModelConfig, train: TrainConfig):
    """(seconds per quantized epoch, whole seconds) of the peer RQ-VAE, None if not installed."""
    try:
        from vector_quantize_pytorch import ResidualVQ
    except ImportError:
        return None
    torch.manual_seed(train.seed)
    sizes = [x.shape[1], *model.hidden_dims, model.latent_dim]
    encoder, decoder = mlp(sizes), mlp(sizes[::-1])
    quantizer = ResidualVQ(dim=model.latent_dim, num_quantizers=model.levels,
                           codebook_size=model.codebook_size, kmeans_init=True,
                           kmeans_iters=10, commitment_weight=model.commitment)
    parameters = [*encoder.parameters(), *decoder.parameters(), *quantizer.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=train.learning_rate)
    order = torch.randperm(len(x))
    cut = int(len(x) * (1 - train.validation_fraction))
    train_x, valid_x = x[order[:cut]], x[order[cut:]]
    epoch_seconds = []
    start = time.perf_counter()
    for epoch in range(train.warmup_epochs + train.epochs):
        quantize = epoch >= train.warmup_epochs
        began = time.perf_counter()
        for batch in train_x[torch.randperm(len(train_x))].split(train.batch_size):
            latent = encoder(batch)
            loss = 0.0
            if quantize:
                latent, _, commit = quantizer(latent)
                loss = commit.sum()
            loss = loss + ((decoder(latent) - batch) ** 2).sum(-1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():  # a validation pass, as hrqtok's epochs make one
            latent = encoder(valid_x)
            if quantize:
                latent = quantizer(latent)[0]
            ((decoder(latent) - valid_x) ** 2).sum(-1).mean().item()
        if quantize:
            epoch_seconds.append(time.perf_counter() - began)
    return sum(epoch_seconds) / len(epoch_seconds), time.perf_counter() - start


print(f"hrqtok from {sys.modules['hrqtok.config'].__file__.rsplit('/hrqtok/', 1)[0] or ROOT}")
torch.manual_seed(0)
centers = torch.randn(64, 768)
x = torch.nn.functional.normalize(centers[torch.randint(64, (8000,))] + 0.7 * torch.randn(8000, 768), dim=-1)
train_config = TrainConfig(epochs=5, warmup_epochs=1, patience=100, validation_fraction=0.1)
per_epoch = {}
for geometry in ("hyperbolic", "euclidean"):
    start = time.perf_counter()
    result = fit_model(x, ModelConfig(geometry=geometry), train_config)
    total = time.perf_counter() - start
    rows = [r for r in result.log if r["phase"] == "train"]
    seconds = per_epoch[geometry] = sum(r["seconds"] for r in rows) / len(rows)
    print(f"{geometry:10s}: {len(result.train_index) / seconds:8,.0f} items/s per epoch "
          f"({seconds:.2f} s/epoch for {len(result.train_index)} items, incl. evaluation and "
          f"revival); whole fit {total:.1f} s")
peer = vector_quantize_pytorch_fit(x, ModelConfig(geometry="euclidean"), train_config)
if peer is None:
    print("vector-quantize-pytorch is not installed (pip install '.[bench]'): no peer line")
else:
    seconds, total = peer
    print(f"{'vq-pytorch':10s}: {int(len(x) * 0.9) / seconds:8,.0f} items/s per epoch "
          f"({seconds:.2f} s/epoch, incl. a validation pass); whole fit {total:.1f} s")
    print(f"per epoch: hyperbolic / euclidean {per_epoch['hyperbolic'] / per_epoch['euclidean']:.2f}x; "
          f"hyperbolic / vq-pytorch {per_epoch['hyperbolic'] / seconds:.2f}x; "
          f"euclidean / vq-pytorch {per_epoch['euclidean'] / seconds:.2f}x")
