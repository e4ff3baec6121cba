"""How a WordNet fit moves its node embeddings: a sparse step on the rows a batch touched.

``rsgd`` is Nickel & Kiela's Riemannian SGD: each node moves by ``lr`` × its Riemannian gradient
(the gradient summed over the batch's pairs that use the node).

``rmsprop`` divides that step by a running root mean square of the node's own gradient length
(in the manifold's metric, averaged over about its last 1 / (1 − ``rms_decay``) updates; one
number per node, as in Bécigneul & Ganea's Riemannian Adagrad,
because only a node's gradient length is independent of coordinates). Nodes differ by orders
of magnitude in how much gradient they get: a hub such as entity.n.01 is the hypernym in
about one pair in nine and sums hundreds of pair gradients per batch, while a leaf turns up in
a few pairs an epoch and near the boundary its Riemannian gradient is tiny. With one rate for
all, the rate that keeps hubs from jumping leaves most nodes crawling; scaled by its own
gradient size, every node's step is about ``lr`` long. On all WordNet nouns (10-d, 40 epochs,
no quantization) it lifted the train MAP from 0.47 to 0.60 (README, WordNet mode). A longer
memory (``rms_decay`` 0.99 rather than the default 0.9) lifted it to 0.68 by then and 0.71 by
epoch 70: most of a node's updates come from turning up as a sampled negative, with a gradient
far smaller than its rare positive ones, and a short memory scales those small steps up to
full length. On mammals the longer memory was worse.

Both clip each node's step to ``max_length`` in the manifold's metric.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hrqtok.config import NODE_OPTIMIZERS
from hrqtok.geometry import Manifold, poincare

EPS = 1e-10
COMPILED = True  # the CPU steps by node_kernels' loop (tests turn it off)


def distinct_nodes(index: Tensor, n_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.unique(index, return_inverse=True, return_counts=True)`` for node ids in
    [0, n_nodes): the sorted distinct ids, each entry's position among them, and their counts.
    On the CPU by marking a table of one flag per node: at a WordNet batch's few thousand ids
    half the time of unique's sort."""
    if index.device.type != "cpu":
        return torch.unique(index, return_inverse=True, return_counts=True)
    ids = index.numpy()
    present = np.zeros(n_nodes, dtype=bool)
    present[ids] = True
    nodes = np.flatnonzero(present)
    position = np.empty(n_nodes, dtype=np.int64)
    position[nodes] = np.arange(len(nodes))
    inverse = position[ids]
    counts = np.bincount(inverse, minlength=len(nodes))
    return (torch.from_numpy(nodes.astype(np.int64, copy=False)), torch.from_numpy(inverse),
            torch.from_numpy(counts.astype(np.int64, copy=False)))


class NodeSteps:
    """The update rule, and for ``rmsprop`` its state: each node's mean square gradient length."""

    def __init__(self, name: str, n_nodes: int, manifold: Manifold, *, max_length: float,
                 rms_decay: float):
        if name not in NODE_OPTIMIZERS:
            raise ValueError(f"node optimizer must be one of {NODE_OPTIMIZERS}, got {name!r}")
        if not 0 <= rms_decay < 1:
            raise ValueError(f"RMS decay must be in [0, 1), got {rms_decay}")
        self.name, self.manifold, self.max_length = name, manifold, max_length
        self.rms_decay = rms_decay
        self.mean_square = torch.zeros(n_nodes, dtype=torch.float64) if name == "rmsprop" else None
        self._position: np.ndarray | None = None  # the compiled step's scratch, one per node

    def forget(self, nodes: np.ndarray) -> None:
        """Drop what the steps remember of ``nodes`` (their mean square gradient length): they
        were moved elsewhere, where their old gradients say nothing."""
        if self.mean_square is not None:
            self.mean_square[torch.from_numpy(np.asarray(nodes, dtype=np.int64))] = 0.0

    @torch.no_grad()
    def apply(self, table: Tensor, index: Tensor, grad: Tensor, lr: float) -> None:
        """Step the rows ``index`` (m,) of ``table`` (n, dim) in place; a row that occurs
        several times gets the sum of its gradients ``grad`` (m, dim)."""
        if (COMPILED and table.device.type == "cpu" and table.dtype == torch.float64
                and grad.dtype == torch.float64 and table.is_contiguous()):
            self._compiled(table, index, grad, lr)
            return
        touched, inverse, _ = distinct_nodes(index, len(table))
        summed = torch.zeros(len(touched), grad.shape[1], dtype=grad.dtype)
        summed.index_add_(0, inverse, grad)
        points = table.index_select(0, touched)
        if self.mean_square is not None:
            length = self.manifold.gradient_norm(points, summed)
            decay = self.rms_decay
            mean_square = decay * self.mean_square[touched] + (1 - decay) * length.pow(2)
            self.mean_square[touched] = mean_square
            summed = summed / (mean_square.sqrt() + EPS).unsqueeze(1)
        table[touched] = self.manifold.rsgd_step(points, summed, lr, max_length=self.max_length)

    def _compiled(self, table: Tensor, index: Tensor, grad: Tensor, lr: float) -> None:
        from hrqtok.fit import node_kernels  # numba: imported where a WordNet fit steps

        if self._position is None or len(self._position) != len(table):
            self._position = np.full(len(table), -1, dtype=np.int64)
        flat = self.manifold.flat
        c = 0.0 if flat else self.manifold.c
        rmsprop = self.mean_square is not None
        node_kernels.sparse_step(
            table.numpy(), index.to(torch.int64).numpy(), grad.contiguous().numpy(), lr,
            self.mean_square.numpy() if rmsprop else np.zeros(0), rmsprop, self.rms_decay, EPS,
            c, flat, 0.0 if flat else poincare.max_norm(c=c, dtype=table.dtype),
            self.max_length or 0.0, self.max_length is not None, self._position)
