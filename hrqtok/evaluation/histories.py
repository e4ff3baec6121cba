"""User histories for next-item retrieval (TIGER / HRQ paper Appendix B.2): each user's
interactions in time order, users with fewer than ``min_events`` left out, the last
``max_events`` kept, then leave-one-out: the last item is the test target, the one before it
the validation target, and every earlier item is a training target for the items before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MIN_EVENTS = 5
MAX_EVENTS = 20


def item_rows(items: pa.Array, ids: list[str]) -> np.ndarray:
    """Row of each interaction's item in ``ids`` (a token table's ids); -1 where unknown."""
    rows = pc.index_in(items, value_set=pa.array(ids, type=pa.string()))
    return pc.fill_null(rows, -1).to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class Histories:
    sequences: np.ndarray  # (users, max_events) item rows in time order, -1 after the end
    lengths: np.ndarray  # (users,)

    def __len__(self) -> int:
        return len(self.lengths)


def build_histories(users: np.ndarray, rows: np.ndarray, times: np.ndarray, *,
                    min_events: int = MIN_EVENTS, max_events: int = MAX_EVENTS) -> tuple[Histories, dict]:
    """Histories of the users with at least ``min_events`` known interactions (rows >= 0).
    Ties in time keep input order. Returns the histories and counts of what was left out."""
    if min_events < 3:
        raise ValueError("min_events must be >= 3: leave-one-out needs a train, a validation "
                         "and a test item")
    if max_events < min_events:
        raise ValueError(f"max_events ({max_events}) must be >= min_events ({min_events})")
    known = rows >= 0
    all_users = len(np.unique(users))
    order = np.lexsort((np.arange(len(rows)), times, users))
    order = order[known[order]]
    users, rows = users[order], rows[order]
    user_ids, starts, counts = np.unique(users, return_index=True, return_counts=True)
    keep = counts >= min_events
    kept_counts = np.minimum(counts[keep], max_events)
    ends = starts[keep] + counts[keep]
    sequences = np.full((int(keep.sum()), max_events), -1, dtype=np.int64)
    column = np.arange(max_events)
    inside = column < kept_counts[:, None]
    sequences[inside] = rows[((ends - kept_counts)[:, None] + column)[inside]]
    stats = {"interactions": int(len(known)), "unknown_interactions": int((~known).sum()),
             "users": all_users, "short_users": all_users - int(keep.sum()),
             "kept_users": int(keep.sum()), "kept_interactions": int(kept_counts.sum())}
    return Histories(sequences, kept_counts.astype(np.int64)), stats


@dataclass
class Examples:
    histories: np.ndarray  # (n, max_events - 1) item rows, most recent last, -1 before the start
    targets: np.ndarray  # (n,) item rows

    def __len__(self) -> int:
        return len(self.targets)


def _examples(histories: Histories, users: np.ndarray, positions: np.ndarray) -> Examples:
    """The item at ``positions`` of each user's sequence, after the items before it."""
    width = histories.sequences.shape[1] - 1
    columns = positions[:, None] - width + np.arange(width)  # left-padded window
    window = histories.sequences[users[:, None], np.maximum(columns, 0)]
    return Examples(np.where(columns >= 0, window, -1), histories.sequences[users, positions])


def leave_one_out(histories: Histories) -> dict[str, Examples]:
    """train: targets at positions 1 … n-3; validation: n-2; test: n-1."""
    n = histories.lengths
    users = np.arange(len(histories))
    train_users = np.repeat(users, n - 3)
    train_positions = np.concatenate([np.arange(1, m - 2) for m in n]) if len(n) else np.zeros(0, np.int64)
    return {"train": _examples(histories, train_users, train_positions.astype(np.int64)),
            "validation": _examples(histories, users, n - 2),
            "test": _examples(histories, users, n - 1)}
