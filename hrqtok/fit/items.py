"""Fitting an item tokenizer. An (H)RQ-VAE: autoencoder warm-up, k-means codebook
initialisation, RiemannianAdam, dead-code revival and early stopping on a held-out slice (HRQ
paper Appendix C.2; collision paper §5 for the initialisation and revival), with HyperVQ's
Gumbel temperature annealed per step. A residual k-means tokenizer: k-means level by level on
the input vectors, nothing trained."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from hrqtok.config import ModelConfig, TrainConfig
from hrqtok.devices import CPU
from hrqtok.fit.optimizers import SplitAdam
from hrqtok.fit.revival import revive_dead_codes
from hrqtok.fit.spread import spread_loss
from hrqtok.metrics.usage import collision_stats, level_usage
from hrqtok.models.autoencoder import HRQVAE, ItemModel, ResidualKMeans

MIN_ITEMS_FOR_VALIDATION = 20  # below this every item trains and early stopping uses train loss
RELATIVE_IMPROVEMENT = 1e-4  # a validation loss must beat the best by this much to count

# progress(phase, done, total, info): phase is "warm-up" or "train"; info is the epoch's log row.
ProgressFn = Callable[[str, int, int, dict], None]


class FitResult(NamedTuple):
    model: ItemModel  # with the best weights (lowest validation loss)
    log: list[dict]  # one row per epoch, as written to train_log.jsonl
    best_epoch: int
    stopped: str  # "completed", "early-stopped" or "interrupted"
    train_index: np.ndarray  # rows of the input used for training
    validation_index: np.ndarray  # rows held out for early stopping
    # the deep codes' refit: train collision rate before and after it, and whether it was kept
    refit: dict | None = None


def split_rows(n: int, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Seeded train / validation split of n rows."""
    order = torch.randperm(n, generator=generator)
    n_val = int(round(n * fraction)) if n >= MIN_ITEMS_FOR_VALIDATION else 0
    return order[n_val:].sort().values, order[:n_val].sort().values


def fit_model(
    vectors: Tensor,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    device: torch.device = CPU,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Train an (H)RQ-VAE on ``vectors`` (n, input_dim) float32 (Ctrl-C stops cleanly), or
    fit a residual k-means tokenizer when the config asks for one. The work runs on
    ``device``; the returned model is on the CPU. Random draws come from a CPU generator, so
    the split and the batches are the same on every device."""
    if not model_config.trained:
        return fit_residual_kmeans(vectors, model_config, train_config, device=device,
                                   progress=progress)
    torch.manual_seed(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    train_rows, val_rows = split_rows(len(vectors), train_config.validation_fraction, generator)
    train_x, val_x = vectors[train_rows].to(device), vectors[val_rows].to(device)
    model = HRQVAE(model_config).to(device)
    model.standardise_to(train_x)
    optimizer = SplitAdam(model.parameters(), lr=train_config.learning_rate)
    loop = ItemTraining(model, optimizer, train_x, val_x, train_config, generator, progress)
    stopped = "completed"
    try:
        loop.warm_up()
        loop.initialise_codebooks()
        stopped = loop.train()
    except KeyboardInterrupt:
        stopped = "interrupted"
    model = loop.finish(refit=stopped != "interrupted").cpu()  # Ctrl-C: out at once
    return FitResult(model, loop.log, loop.best_epoch, stopped, train_rows.numpy(),
                     val_rows.numpy(), loop.refit)


def fit_residual_kmeans(vectors: Tensor, model_config: ModelConfig, train_config: TrainConfig,
                        *, device: torch.device = CPU,
                        progress: ProgressFn | None = None) -> FitResult:
    """rq-kmeans / hrq-kmeans: residual k-means on all of ``vectors``, level by level, with
    at most ``kmeans_iters`` Lloyd iterations each. The log has one row per level."""
    generator = torch.Generator().manual_seed(train_config.seed)
    model = ResidualKMeans(model_config).to(device)
    vectors = vectors.to(device)
    model.scale.fill_(float(vectors.norm(dim=-1).mean()) or 1.0)
    iters, levels = train_config.kmeans_iters, model_config.levels

    def level_progress(level: int):
        def report(done: int, total: int, objective: float) -> None:
            if progress:
                progress("k-means", level * iters + done, levels * iters,
                         {"level": level, "objective": objective})
        return report

    start = time.perf_counter()
    # hrq-kmeans runs its Lloyd iterations in float64 and stores the codes in float32: in
    # float32 its hyperbolic centres took other codes on a CPU with other vector instructions
    # (AVX-512 or not). Euclidean k-means gave the same codes on both, and float64 would
    # nearly double its time, so rq-kmeans stays in float32.
    dtype = torch.float64 if model_config.geometry == "hyperbolic" else torch.float32
    model.quantizer.to(dtype)
    summaries = model.quantizer.fit_kmeans(model.latents(vectors).to(dtype), iters=iters,
                                           generator=generator, centroid=train_config.centroid,
                                           balanced_deep=train_config.balanced_kmeans,
                                           progress=level_progress)
    model.quantizer.float()
    model.cpu()
    seconds = time.perf_counter() - start
    if progress:
        progress("k-means", levels * iters, levels * iters, {})
    log = [{"phase": "k-means", "level": s["level"], "iterations": s["iterations"],
            "objective_start": s["objective"][0], "objective": s["objective"][-1]}
           for s in summaries]
    log[-1]["seconds"] = seconds
    model.eval()
    rows = np.arange(len(vectors))
    return FitResult(model, log, 0, "completed", rows, rows[:0])


class ItemTraining:
    """State of one fit: the model, its optimiser, the log and the best weights so far."""

    def __init__(self, model, optimizer, train_x, val_x, config, generator, progress):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.train_x, self.val_x = train_x, val_x
        self.generator = generator
        self.progress = progress
        self.total_epochs = config.warmup_epochs + config.epochs
        self.log: list[dict] = []
        self.initialised = False
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_state: dict | None = None
        self.steps = 0  # optimiser steps with quantization: HyperVQ's temperature schedule
        self.refit: dict | None = None  # what _refit_deep_codes found

    def _epoch(self, *, quantize: bool) -> dict:
        """One pass over shuffled training batches; returns mean losses."""
        self.model.train()
        order = torch.randperm(len(self.train_x), generator=self.generator)
        totals = torch.zeros(4, dtype=torch.float64, device=self.train_x.device)  # no sync per step
        weight = self.config.spread_weight
        choice = self.model.quantizer.choice
        annealed = quantize and choice.temperature is not None  # HyperVQ's Gumbel sampling
        for batch in order.split(self.config.batch_size):
            if annealed:
                choice.temperature = self.config.temperature(self.steps)
                self.steps += 1
            out = self.model(self.train_x[batch.to(self.train_x.device)], quantize=quantize)
            spread = (spread_loss(out.inputs, out.latent, self.model.manifold) if weight
                      else out.loss.new_zeros(()))
            self.optimizer.zero_grad(set_to_none=True)
            (out.loss + weight * spread).backward()
            self.optimizer.step()
            totals += len(batch) * torch.stack([out.loss, out.reconstruction_loss,
                                                out.quantization_loss, spread]).detach().double()
        loss, reconstruction, quantization, spread = (totals / max(len(self.train_x), 1)).tolist()
        row = {"loss": loss, "reconstruction": reconstruction, "quantization": quantization,
               "spread": spread}
        if annealed:
            row["temperature"] = choice.temperature
        return row

    def _emit(self, phase: str, row: dict) -> None:
        self.log.append(row)
        if self.progress:
            self.progress(phase, len(self.log), self.total_epochs, row)

    def warm_up(self) -> None:
        """Autoencoder epochs without quantization, so k-means sees meaningful latents."""
        for _ in range(self.config.warmup_epochs):
            start = time.perf_counter()
            row = {"epoch": len(self.log) + 1, "phase": "warm-up", **self._epoch(quantize=False)}
            row["seconds"] = time.perf_counter() - start
            self._emit("warm-up", row)

    def initialise_codebooks(self) -> None:
        self.model.eval()
        latents = self.model.latents(self.train_x)
        self.model.quantizer.initialise(
            latents, iters=self.config.kmeans_iters, generator=self.generator,
            balanced_deep=self.config.balanced_kmeans)
        self.initialised = True

    def train(self) -> str:
        waited = 0
        for _ in range(self.config.epochs):
            start = time.perf_counter()
            row = {"epoch": len(self.log) + 1, "phase": "train", **self._epoch(quantize=True)}
            row.update(self._evaluate())
            improved = row["validation_loss"] < self.best_loss * (1 - RELATIVE_IMPROVEMENT)
            if improved or self.best_state is None:
                self.best_loss, self.best_epoch = row["validation_loss"], row["epoch"]
                self.best_state = copy.deepcopy(self.model.state_dict())
                waited = 0
            else:
                waited += 1
            row["revived"] = self._revive_dead_codes() if self.config.revive_dead_codes else []
            row["seconds"] = time.perf_counter() - start
            self._emit("train", row)
            if waited >= self.config.patience:
                return "early-stopped"
        return "completed"

    @torch.no_grad()
    def _evaluate(self) -> dict:
        """Validation loss (training loss when nothing is held out) and code usage on train."""
        self.model.eval()
        held_out = self.val_x if len(self.val_x) else self.train_x
        out = self.model(held_out)
        self._details = self.model.quantizer.details(self.model.latents(self.train_x))
        codes = self._details.codes.cpu().numpy()
        size = self.model.config.codebook_size
        usage = [level_usage(codes[:, i], size) for i in range(codes.shape[1])]
        return {
            "validation_loss": out.loss.item(),
            "validation_reconstruction": out.reconstruction_loss.item(),
            "utilisation": [u["utilisation"] for u in usage],
            "perplexity": [u["perplexity"] for u in usage],
            "collision_rate": collision_stats(codes)["collision_rate"],
        }

    def _revive_dead_codes(self) -> list[int]:
        return revive_dead_codes(self.model.quantizer, self._details, self.optimizer)

    def finish(self, *, refit: bool = True) -> HRQVAE:
        """The model with its best weights (deep codes refitted when ``refit`` and the
        config asks for it); an interrupted warm-up still gets codebooks."""
        if not self.initialised:
            self.initialise_codebooks()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        if (refit and self.config.refit_deep_codes and self.model.config.levels > 1
                and self.best_state is not None):
            self._refit_deep_codes()
        return self.model

    @torch.no_grad()
    def _refit_deep_codes(self) -> None:
        """Training moves the encoder under the deep codebooks: its drift, not the items'
        own spread, comes to fill the small residuals of the deep levels, and their codes
        collapse (tight clusters: 24 % collisions right after initialisation, 99 % five
        epochs later). Refitting those levels' codes to the final latents undoes that; the
        refit is kept only when fewer training items collide than before it. It starts at the
        level choice's ``refit_from``: level 2, or level 1 for HyperVQ's MLR levels."""
        quantizer = self.model.quantizer
        latents = self.model.latents(self.train_x)
        before = collision_stats(quantizer.encode(latents).cpu().numpy())["collision_rate"]
        state = copy.deepcopy(quantizer.state_dict())
        quantizer.initialise(latents, iters=self.config.kmeans_iters, generator=self.generator,
                             balanced_deep=self.config.balanced_kmeans,
                             from_level=quantizer.choice.refit_from)
        after = collision_stats(quantizer.encode(latents).cpu().numpy())["collision_rate"]
        kept = after < before
        if not kept:
            quantizer.load_state_dict(state)
        self.refit = {"collision_rate_before": before, "collision_rate": after, "kept": kept}
