"""Codebook tuning, the last phase of a WordNet fit with a trained quantizer: each node's
multitoken is fixed (its greedy codes after joint training), and only the codebooks train, on
the same softmax ranking loss as the embeddings but with every node at its decoded multitoken
e_0 ⊕ (e_1 ⊕ (… ⊕ e_{k-1})).

Why: joint training pulls nodes onto the code grid, so the quantization term and the ranking
fight (mammals 5-d, 3 × 32 codes: continuous MAP 0.685, its quantized reconstruction 0.382).
The multitokens already say where a node belongs; tuning the few code points (k × s × h
numbers, shared by all nodes) to rank hypernyms directly lifts the tokens' MAP without moving
any node. The decoded points then stop approximating the continuous embedding: they are the
tokens' own embedding, and re-encoding the continuous one against them (``--beam``) would no
longer give the stored multitokens, so a tuned model refuses it.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from hrqtok.fit.contrastive import table_ranking_loss
from hrqtok.fit.node_steps import distinct_nodes
from hrqtok.fit.optimizers import StackedRiemannianAdam
from hrqtok.models.hierarchy import HierarchyModel


class CodebookTuning:
    """RiemannianAdam on the codebooks (at ``learning_rate``) with ``codes`` fixed. ``sampler``
    draws negatives (a ``fit.hierarchy.NegativeSampler``) for groups of ``group`` pairs."""

    def __init__(self, model: HierarchyModel, codes: Tensor, train_pairs: Tensor, sampler, *,
                 batch_size: int, group: int, learning_rate: float, generator: torch.Generator):
        self.model, self.codes, self.train_pairs, self.sampler = model, codes, train_pairs, sampler
        self.batch_size, self.group, self.generator = batch_size, group, generator
        self.learning_rate = learning_rate
        self.optimizer = StackedRiemannianAdam(model.quantizer.parameters(),
                                               lr=learning_rate)

    def epoch(self) -> dict:
        order = torch.randperm(len(self.train_pairs), generator=self.generator)
        loss, start = 0.0, time.perf_counter()
        for batch in order.split(self.batch_size):
            loss += self.step(self.train_pairs[batch])
        seconds = time.perf_counter() - start
        loss /= max(len(order), 1)
        return {"loss": loss, "rank_loss": loss, "learning_rate": self.learning_rate,
                "seconds": seconds, "pairs_per_second": len(order) / max(seconds, 1e-9)}

    def step(self, batch: Tensor) -> float:
        """One optimiser step on a batch of pairs; returns the summed ranking loss."""
        self.optimizer.zero_grad()
        loss = self.gradients(batch)
        self.optimizer.step()
        return loss

    def gradients(self, batch: Tensor) -> float:
        """Adds d(summed ranking loss of the batch)/d(codebooks) to their .grad; returns the
        loss. The ranking loss's gradient at the decoded points is the closed form of
        ``table_ranking_loss``; autograd carries it through the Möbius sums."""
        full = len(batch) - len(batch) % self.group
        parts = [p for p in (batch[:full].view(-1, self.group, 2), batch[full:].view(1, -1, 2))
                 if p.numel()]
        total = 0.0
        for part in parts:
            negatives, masked = self.sampler.sample(part[..., 0])
            # a negative with the anchor's own multitoken sits on the same point: no codebook
            # can move them apart, and the gradient of a distance at 0 is only rounding noise
            masked = masked | (self.codes[part[..., 0]].unsqueeze(2)
                               == self.codes[negatives].unsqueeze(1)).all(-1)
            index = torch.cat([part[..., 0].reshape(-1), part[..., 1].reshape(-1),
                               negatives.reshape(-1)])
            # decode each distinct node once (hub hypernyms recur); autograd to the codebooks
            nodes, inverse, _ = distinct_nodes(index, len(self.codes))
            points = self.model.quantizer.decode_codes(self.codes[nodes])
            pairs = part.shape[0] * part.shape[1]
            shape = part.shape[:2]
            at = (inverse[:pairs].view(shape), inverse[pairs:2 * pairs].view(shape),
                  inverse[2 * pairs:].view(negatives.shape))
            out = table_ranking_loss(points.detach(), *at, masked, manifold=self.model.manifold)
            # each occurrence's gradient, summed onto its distinct node
            points.backward(torch.zeros_like(points).index_add_(
                0, inverse, torch.cat([g.reshape(-1, points.shape[1]) for g in out[1:]])))
            total += out.loss.item()
        return total
