"""A compiled loop (numba) for ``ranking._buckets`` on the CPU: where each of a row's negatives
falls among its few positives, for the closure MR / MAP of every noun.

The tensor path first finds the negatives at or inside each row's farthest positive, then
places those by binary search; when they are many (an embedding that ranks hypernyms
thousands deep, such as a Euclidean one of all nouns), it places every negative of every row.
On all 82,115 nouns that fallback took most of a Euclidean fit's final report (minutes), for
work that is one comparison for most negatives: here each row's negatives are read once, and
only those at or inside its farthest positive walk its sorted positives. Rows run on numba's
threads (torch's thread count, as ``walk_kernels``) and each writes its own counts, so the
result does not depend on the thread count. ``tests/test_ranking.py`` holds it to the tensor
path and to placing every negative plainly.
"""

from __future__ import annotations

import numba


@numba.njit(parallel=True, cache=True, nogil=True)
def place_negatives(negatives, local, positive, valid_counts, below_or_at, below):
    """For chunk row ``local[r]`` of ``negatives`` (R, n) and its sorted positives
    positive[r, :valid_counts[r]]: below_or_at[r, i] += the negatives with i positives <= them,
    below[r, i] += those with i positives < them, over the negatives at or inside the farthest
    positive (the others only fill the columns past the last positive, which callers drop).
    +inf marks a negative that is not one (the row itself, its known ancestors)."""
    for r in numba.prange(len(local)):
        row = negatives[local[r]]
        valid = valid_counts[r]
        if valid == 0:
            continue
        farthest = positive[r, valid - 1]
        for k in range(row.shape[0]):
            value = row[k]
            if value > farthest:
                continue
            at_or_below = 0  # positives <= value
            while at_or_below < valid and positive[r, at_or_below] <= value:
                at_or_below += 1
            strictly = at_or_below  # positives < value: step back over the ties
            while strictly > 0 and positive[r, strictly - 1] == value:
                strictly -= 1
            below_or_at[r, at_or_below] += 1
            below[r, strictly] += 1
