"""Uniform samples of a stream of unknown length (`fit --sample`), decided one item at a time."""

from __future__ import annotations

import numpy as np

# the sample's random stream, apart from the fit's own (both from the fit's seed)
SAMPLE_STREAM = 2


class Reservoir:
    """Which items a uniform sample of ``size`` keeps, deciding one item at a time without
    knowing how many come (Vitter's algorithm R): the first ``size`` items fill it; item i
    (from 0) then takes a uniformly drawn slot j < i + 1 when j < size."""

    def __init__(self, size: int, seed: int):
        if size < 1:
            raise ValueError(f"a sample needs at least 1 item, got {size}")
        self.size, self.seen = size, 0
        self.rng = np.random.default_rng([seed, SAMPLE_STREAM])

    def slot(self) -> int | None:
        """The slot the next item goes to: len-so-far to append, another to replace, None
        to leave it out."""
        self.seen += 1
        if self.seen <= self.size:
            return self.seen - 1
        j = int(self.rng.integers(self.seen))
        return j if j < self.size else None
