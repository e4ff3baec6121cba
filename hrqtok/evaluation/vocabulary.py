"""Multitokens as transformer vocabulary, and the prefix trie that keeps generation on real items.

Each position of a multitoken ``[t_0, …, t_{k-1}, d]`` has its own range of vocabulary ids
(level j's code c is ``offset_j + c``), so a model never confuses level 0's code 5 with level
1's. Ids 0 and 1 are padding and the start token.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

PAD, BOS = 0, 1
SPECIAL = 2


class Vocabulary:
    """Vocabulary ids for multitokens whose positions have ``sizes`` symbols each."""

    def __init__(self, sizes: list[int]):
        self.sizes = [int(s) for s in sizes]
        self.offsets = np.concatenate([[SPECIAL], SPECIAL + np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    @classmethod
    def for_tokens(cls, tokens: np.ndarray) -> Vocabulary:
        """The smallest vocabulary holding every position of ``tokens`` (n, L)."""
        return cls([int(tokens[:, j].max(initial=0)) + 1 for j in range(tokens.shape[1])])

    @property
    def length(self) -> int:
        return len(self.sizes)

    def __len__(self) -> int:
        return SPECIAL + sum(self.sizes)

    def ids(self, tokens: np.ndarray) -> np.ndarray:
        """(…, L) multitokens -> (…, L) vocabulary ids."""
        return np.asarray(tokens, dtype=np.int64) + self.offsets

    def tokens(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64) - self.offsets


class _Step(NamedTuple):
    keys: Tensor  # (p,) sorted distinct prefix keys of this length
    starts: Tensor  # (p + 1,) CSR offsets into ``following``
    following: Tensor  # vocabulary ids that may follow each prefix


class PrefixTrie:
    """The valid continuations of every prefix of a set of multitokens (vocabulary ids, (n, L)),
    stored per length as sorted prefix keys with CSR lists of next ids: one searchsorted per
    decoding step finds them for a whole beam."""

    def __init__(self, sequences: np.ndarray, vocabulary_size: int):
        sequences = np.unique(np.asarray(sequences, dtype=np.int64), axis=0)
        self.vocabulary_size = vocabulary_size
        self.steps: list[_Step] = []
        for t in range(sequences.shape[1]):
            pairs = np.unique(np.column_stack([self._keys(sequences[:, :t]), sequences[:, t]]), axis=0)
            keys, first = np.unique(pairs[:, 0], return_index=True)
            starts = np.append(first, len(pairs))
            self.steps.append(_Step(torch.from_numpy(keys), torch.from_numpy(starts),
                                    torch.from_numpy(pairs[:, 1].copy())))

    def _keys(self, prefixes) -> np.ndarray | Tensor:
        """Mixed-radix key of each prefix row (exact in int64 while V^t < 2^63)."""
        key = (torch.zeros(len(prefixes), dtype=torch.int64) if isinstance(prefixes, Tensor)
               else np.zeros(len(prefixes), np.int64))
        for j in range(prefixes.shape[1]):
            key = key * self.vocabulary_size + prefixes[:, j]
        return key

    def allowed(self, prefixes: Tensor) -> Tensor:
        """(m, t) prefixes -> (m, V) bool: which ids may come next (none for a dead prefix)."""
        step = self.steps[prefixes.shape[1]]
        keys = self._keys(prefixes)
        where = torch.searchsorted(step.keys, keys).clamp_max(max(len(step.keys) - 1, 0))
        found = step.keys[where] == keys if len(step.keys) else torch.zeros_like(keys, dtype=torch.bool)
        lo = torch.where(found, step.starts[where], 0)
        hi = torch.where(found, step.starts[where + 1], 0)
        counts = hi - lo
        rows = torch.repeat_interleave(torch.arange(len(prefixes)), counts)
        index = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        mask = torch.zeros(len(prefixes), self.vocabulary_size, dtype=torch.bool)
        mask[rows, step.following[torch.repeat_interleave(lo, counts) + index]] = True
        return mask
