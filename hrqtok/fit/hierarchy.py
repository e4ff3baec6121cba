"""Joint training of node embeddings and (H)RQ codebooks on closure pairs (HRQ paper §4.1).

For a train pair (u, v), v a hypernym of u, the loss is
    −log( e^{−d(u,v)} / Σ_{v' ∈ {v} ∪ N(u)} e^{−d(u,v')} ) + w · (L_RQ(u) + L_RQ(v)),
N(u) being ``negatives`` nodes sampled uniformly among those that are not u and not a train
hypernym of u (Nickel & Kiela's ground-truth negatives). Everything is batched: negatives are
drawn for a whole batch and checked against the train pairs in one vectorised test; a
sampled hypernym is redrawn once and masked out of the softmax if it hits again.

Embeddings take sparse Riemannian steps (only the rows a batch touches; ``fit.node_steps``),
with burn-in epochs at a reduced rate before the codebooks exist; codebooks start from k-means
on the burnt-in embeddings and then train with RiemannianAdam alongside. Then the nodes'
multitokens are fixed: in the release the embeddings alone train on the ranking loss, free of
the (H)RQ term's pull, and optional rounds then re-seat nodes stuck far from a hypernym
beside it (``fit.reseat``); last, the codebooks alone are tuned on the ranking loss of the
decoded multitokens (``fit.codebook_tuning``). With a k-means quantizer (rq-kmeans,
hrq-kmeans) the embeddings train alone and residual k-means of the final embeddings gives the
codebooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from hrqtok.config import HierarchyTrainConfig, ModelConfig
from hrqtok.fit.codebook_tuning import CodebookTuning
from hrqtok.fit.contrastive import table_ranking_loss
from hrqtok.fit.node_steps import NodeSteps, distinct_nodes
from hrqtok.fit.optimizers import StackedRiemannianAdam
from hrqtok.fit.reseat import reseat_stuck_nodes
from hrqtok.fit.revival import revive_dead_codes
from hrqtok.fit.tree_init import tree_start
from hrqtok.metrics.ranking import closure_ranking
from hrqtok.metrics.usage import collision_stats, level_usage
from hrqtok.models.hierarchy import HierarchyModel
from hrqtok.sources.hierarchy import PairSet

ProgressFn = Callable[[str, int, int, dict], None]


class HierarchyFitResult(NamedTuple):
    model: HierarchyModel
    codes: Tensor  # (nodes, levels): the multitokens (fixed before codebook tuning)
    log: list[dict]  # one row per epoch, as written to train_log.jsonl
    stopped: str  # "completed" or "interrupted"
    seconds: float  # training time, without the final evaluation
    pairs_per_second: float  # train pairs (each with its negatives) per second of stepping


class NegativeSampler:
    """Negatives shared by groups of pairs, uniform over the nodes, or with ``by_frequency`` in
    proportion to each node's train hyponyms (how often it is a train pair's hypernym: Nickel
    & Kiela's burn-in sampler); a (pair, negative) where the negative is the pair's anchor u or
    one of u's train hypernyms is masked out of that pair's softmax."""

    def __init__(self, n_nodes: int, train_pairs: np.ndarray, negatives: int,
                 generator: torch.Generator):
        self.n, self.k, self.generator = n_nodes, negatives, generator
        self.pairs = PairSet(train_pairs, n_nodes)
        hyponyms = np.bincount(train_pairs[:, 1], minlength=n_nodes).astype(np.float64)
        # inverse transform sampling: the first node whose cumulative share exceeds a uniform
        self.cumulative = torch.from_numpy(np.cumsum(hyponyms) / max(hyponyms.sum(), 1.0))
        self.by_frequency = False

    def sample(self, anchors: Tensor) -> tuple[Tensor, Tensor]:
        """anchors (g, G) -> negatives (g, K) and the mask (g, G, K)."""
        shape = (anchors.shape[0], self.k)
        if self.by_frequency and self.cumulative[-1] > 0:
            uniform = torch.rand(shape, generator=self.generator, dtype=torch.float64)
            negatives = torch.searchsorted(self.cumulative, uniform, right=True)
            negatives.clamp_max_(self.n - 1)  # rounding may leave the last share below 1
        else:
            negatives = torch.randint(self.n, shape, generator=self.generator)
        return negatives, self.pairs.negative_hits(anchors, negatives)


def fit_hierarchy(pairs: np.ndarray, test: np.ndarray, n_nodes: int, model_config: ModelConfig,
                  config: HierarchyTrainConfig, *,
                  progress: ProgressFn | None = None) -> HierarchyFitResult:
    """Train on ``pairs[~test]`` (closure rows (hyponym, hypernym)). Ctrl-C keeps the model
    as it is (with codebooks) and returns."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = HierarchyModel(model_config, n_nodes)
    model.reset(generator)
    if config.init == "tree":
        model.start_from(tree_start(pairs[~test], n_nodes, model_config.latent_dim,
                                    curvature=model_config.curvature if model.manifold.name != "euclidean" else None,
                                    generator=generator))
    loop = HierarchyTraining(model, pairs, test, config, generator, progress)
    stopped = "completed"
    try:
        loop.run()
    except KeyboardInterrupt:
        stopped = "interrupted"
    if not loop.initialised:
        loop.initialise_codebooks()
    pairs_per_second = loop.pairs_stepped / max(loop.step_seconds, 1e-9)
    codes = model.encode() if loop.codes is None else loop.codes
    return HierarchyFitResult(model, codes, loop.log, stopped, loop.train_seconds,
                              pairs_per_second)


class HierarchyTraining:
    """State of one WordNet fit: embeddings, codebook optimiser, log and timings."""

    def __init__(self, model: HierarchyModel, pairs: np.ndarray, test: np.ndarray,
                 config: HierarchyTrainConfig, generator: torch.Generator,
                 progress: ProgressFn | None):
        self.model, self.config, self.generator, self.progress = model, config, generator, progress
        self.pairs, self.test = pairs, test
        self.train_pairs = torch.from_numpy(np.ascontiguousarray(pairs[~test]))
        self.sampler = NegativeSampler(len(model.embeddings), pairs[~test], config.negatives,
                                       generator)
        self.node_steps = NodeSteps(config.node_optimizer, len(model.embeddings), model.manifold,
                                    max_length=config.max_step, rms_decay=config.node_rms_decay)
        self.codebook_optimizer: StackedRiemannianAdam | None = None
        self.initialised = False
        self.codes: Tensor | None = None  # set when codebook tuning fixes the multitokens
        self.log: list[dict] = []
        self.pairs_stepped, self.step_seconds, self.train_seconds = 0, 0.0, 0.0
        sample = np.random.default_rng(config.seed).permutation(n := len(model.embeddings))
        self.eval_rows = np.sort(sample[:min(config.eval_sample, n)])

    @property
    def tune_epochs(self) -> int:
        """Codebook tuning needs codebooks that train (not k-means ones) and the epochs."""
        return self.config.tune_epochs if self.model.config.trained else 0

    @property
    def release_epochs(self) -> int:
        """The release needs codebooks that trained with the embeddings (not k-means ones)."""
        return self.config.release_epochs if self.model.config.trained else 0

    @property
    def reseat_rounds(self) -> int:
        """Re-seating rounds follow a release; without one there are none."""
        if not self.release_epochs or not self.config.reseat_epochs:
            return 0
        return self.config.reseat_rounds

    @property
    def total_epochs(self) -> int:
        return (self.config.burn_in_epochs + self.config.epochs + self.release_epochs
                + self.reseat_rounds * self.config.reseat_epochs + self.tune_epochs)

    def run(self) -> None:
        start = time.perf_counter()
        joint = self.model.config.trained  # codebooks train with the embeddings
        # at weight 0 the (H)RQ term moves nothing (it is the codebooks' only gradient): skip it
        quantize = joint and self.config.quantize_weight > 0
        trained = self.config.burn_in_epochs + self.config.epochs
        released = trained + self.release_epochs + self.reseat_rounds * self.config.reseat_epochs
        tuning = None
        for epoch in range(1, self.total_epochs + 1):
            burn_in = epoch <= self.config.burn_in_epochs
            self.sampler.by_frequency = burn_in and self.config.burn_in_negatives == "frequency"
            if joint and not burn_in and not self.initialised:
                self.initialise_codebooks()
            if epoch > trained and self.codes is None:
                # the multitokens are fixed here, as the (H)RQ term left them: the release
                # then moves only the embeddings, the tuning only the codebooks
                self.codes = self.model.encode()
            if epoch > released:
                tuning = tuning or self._start_tuning()
                row = {"epoch": epoch, "phase": "tune", **tuning.epoch()}
            elif epoch > trained:
                row = {"epoch": epoch, "phase": "release", **self._release_epoch(epoch - trained)}
            else:
                row = {"epoch": epoch, "phase": "burn-in" if burn_in else "train",
                       **self._epoch(self._learning_rate(epoch), quantize=quantize and not burn_in)}
                if self.initialised:
                    row.update(self._usage())
            every = self.config.eval_every
            if every and (epoch % every == 0 or epoch == self.total_epochs):
                row.update(self._check())
            self.train_seconds = time.perf_counter() - start
            self.log.append(row)
            if self.progress:
                self.progress(row["phase"], epoch, self.total_epochs, row)

    def _release_epoch(self, epoch: int) -> dict:
        """The release's ``epoch``-th epoch: its own epochs, then each re-seating round's
        (stuck nodes moved at its start), each with the rate from full down again."""
        if epoch <= self.release_epochs:
            return self._epoch(self._decaying(epoch, self.release_epochs), quantize=False)
        every = self.config.reseat_epochs
        within = (epoch - self.release_epochs - 1) % every + 1
        row = {}
        if within == 1:
            stuck = reseat_stuck_nodes(self.model.embeddings.detach(), self.pairs[~self.test],
                                       self.pairs, manifold=self.model.manifold,
                                       max_rank=self.config.reseat_rank, generator=self.generator)
            self.node_steps.forget(stuck)
            row["reseated"] = len(stuck)
        return {**row, **self._epoch(self._decaying(within, every), quantize=False)}

    def _start_tuning(self) -> CodebookTuning:
        """Tune the codebooks to the fixed multitokens."""
        return CodebookTuning(self.model, self.codes, self.train_pairs, self.sampler,
                              batch_size=self.config.batch_size,
                              group=self.config.negative_group,
                              learning_rate=self.config.tune_learning_rate,
                              generator=self.generator)

    def initialise_codebooks(self) -> None:
        """k-means codebooks: a start for joint training, or the whole of a k-means quantizer
        (fitted once the embeddings are final)."""
        points = self.model.embeddings.detach()
        if not self.model.config.trained:
            summaries = self.model.quantizer.fit_kmeans(
                points, iters=self.config.kmeans_iters, generator=self.generator,
                centroid=self.config.centroid)
            self.log.append({"phase": "k-means", "iterations": [s["iterations"] for s in summaries],
                             "objective": [s["objective"][-1] for s in summaries]})
            self.initialised = True
            return
        self.model.quantizer.initialise(points, iters=self.config.kmeans_iters,
                                        generator=self.generator)
        self.codebook_optimizer = StackedRiemannianAdam(
            self.model.quantizer.parameters(), lr=self.config.codebook_learning_rate)
        self.initialised = True

    def _learning_rate(self, epoch: int) -> float:
        """Burn-in: reduced rate. Then the full rate, decaying linearly to ``final_factor``
        of it by the last epoch: the SGD noise floor, not the rate, limits the final ranks."""
        cfg = self.config
        if epoch <= cfg.burn_in_epochs:
            return cfg.learning_rate * cfg.burn_in_factor
        return self._decaying(epoch - cfg.burn_in_epochs, cfg.epochs)

    def _decaying(self, epoch: int, epochs: int) -> float:
        """The rate of a phase's ``epoch``-th of ``epochs`` epochs: the full rate, then
        linearly down to ``final_factor`` of it at the last."""
        progress = (epoch - 1) / max(epochs - 1, 1)
        return self.config.learning_rate * (1 - progress * (1 - self.config.final_factor))

    def _epoch(self, lr: float, *, quantize: bool) -> dict:
        cfg = self.config
        order = torch.randperm(len(self.train_pairs), generator=self.generator)
        totals = np.zeros(2)
        start = time.perf_counter()
        for batch in order.split(cfg.batch_size):
            totals += self.step(self.train_pairs[batch], lr, quantize=quantize)
        seconds = time.perf_counter() - start
        self.pairs_stepped += len(order)
        self.step_seconds += seconds
        m = max(len(order), 1)
        return {"loss": float((totals[0] + cfg.quantize_weight * totals[1]) / m), "rank_loss": float(totals[0] / m),
                "quantization": float(totals[1] / m), "learning_rate": lr, "seconds": seconds,
                "pairs_per_second": len(order) / max(seconds, 1e-9)}

    @torch.inference_mode()  # nothing here is differentiated by autograd: skip its bookkeeping
    def step(self, batch: Tensor, lr: float, *, quantize: bool) -> np.ndarray:
        """One batch: losses summed over its pairs; returns (rank loss, quantization loss)."""
        model, size, group = self.model, len(batch), self.config.negative_group
        table = model.embeddings.detach()
        # groups of `group` pairs share negatives; a remainder forms one smaller group
        full = size - size % group
        parts = [p for p in (batch[:full].view(-1, group, 2), batch[full:].view(1, -1, 2))
                 if p.numel()]
        index, grads, ends, rank_loss = [], [], [], 0.0
        for part in parts:
            negatives, masked = self.sampler.sample(part[..., 0])
            out = table_ranking_loss(table, part[..., 0], part[..., 1], negatives, masked,
                                     manifold=model.manifold)
            rank_loss += out.loss.item()
            part_index = [part[..., 0].reshape(-1), part[..., 1].reshape(-1), negatives.reshape(-1)]
            index += part_index
            ends += part_index[:2]
            grads += [g.reshape(-1, table.shape[1]) for g in out[1:]]
        quantization = 0.0
        if quantize:  # the (H)RQ loss of both ends of every pair
            quantization = self.quantizer_step(torch.cat(ends), index, grads)
        self.node_steps.apply(model.embeddings, torch.cat(index), torch.cat(grads), lr)
        return np.array([rank_loss, quantization])

    def quantizer_step(self, ends: Tensor, index: list, grads: list) -> float:
        """Σ over pair ends of L_RQ, computed once per distinct node weighted by how often it
        occurs (hub hypernyms recur in most batches); steps the codebooks and appends the
        nodes' gradients to the sparse update."""
        nodes, _, counts = distinct_nodes(ends, len(self.model.embeddings))
        points = self.model.embeddings.detach().index_select(0, nodes)
        out = self.model.quantizer.loss_grads(points, counts.to(points.dtype))
        # a weighted mean over rows; x the number of ends makes it a sum like L_rank
        scale = self.config.quantize_weight * len(ends)
        for level, grad in enumerate(out.grad_codebooks):
            (codebook,) = self.model.quantizer.level_parameters(level)
            codebook.grad = grad.mul_(scale)
        self.codebook_optimizer.step()
        index.append(nodes)
        grads.append(out.grad_x.mul_(scale))
        return out.loss.item() * len(ends)

    @torch.no_grad()
    def _usage(self) -> dict:
        details = self.model.quantizer.details(self.model.embeddings.detach())
        codes = details.codes.numpy()
        size = self.model.config.codebook_size
        usage = [level_usage(codes[:, i], size) for i in range(codes.shape[1])]
        row = {"utilisation": [u["utilisation"] for u in usage],
               "collision_rate": collision_stats(codes)["collision_rate"]}
        if self.config.revive_dead_codes:
            row["revived"] = revive_dead_codes(self.model.quantizer, details,
                                               self.codebook_optimizer)
        return row

    def _check(self) -> dict:
        """MR / MAP on a sample of hyponyms (train and test): of the continuous embedding, and
        once the multitokens are fixed, of their decoded points too (``quantized_`` keys)."""
        keep = np.isin(self.pairs[:, 0], self.eval_rows)
        evaluated = {"train": self.pairs[keep & ~self.test], "test": self.pairs[keep & self.test]}
        points = {"": self.model.embeddings}
        if self.codes is not None:
            points["quantized_"] = self.model.decode_codes(self.codes)
        return {f"{prefix}{name}_{metric}": scores[name][metric]
                for prefix, at in points.items()
                for scores in [closure_ranking(at, evaluated, self.pairs,
                                               manifold=self.model.manifold)]
                for name in ("train", "test") for metric in ("mean_rank", "map")}
