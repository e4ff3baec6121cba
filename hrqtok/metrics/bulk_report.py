"""``reports.table_report``'s figures for an on-disk token table (``store.bulk.BulkTable``):
code counts a chunk at a time, distinct prefixes and collisions one hash partition at a time,
so memory does not grow with the catalogue. Equal to ``table_report`` on the same table."""

from __future__ import annotations

import numpy as np

from hrqtok.metrics.usage import usage_from_counts
from hrqtok.store.bulk import BulkTable, list_array, list_values
from hrqtok.store.spill import Partitions, rows_hash

CHUNK_ROWS = 1 << 16


def bulk_table_report(table: BulkTable, codebook_size: int) -> dict:
    counts = np.zeros((table.levels, codebook_size), dtype=np.int64)
    largest = 0
    for _, tokens in table.chunks(CHUNK_ROWS):
        for level in range(table.levels):
            counts[level] += np.bincount(tokens[:, level], minlength=codebook_size)[:codebook_size]
        largest = max(largest, int(tokens[:, -1].max(initial=-1)) + 1)
    prefixes, collisions = _prefix_counts(table)
    levels = [{"level": i, **usage_from_counts(counts[i], codebook_size)}
              for i in range(table.levels)]
    previous, stats = 1, []
    for depth, distinct in enumerate(prefixes, start=1):
        stats.append({"depth": depth, "prefixes": distinct, "branching": distinct / max(previous, 1)})
        previous = distinct
    return {"items": table.rows, "levels": levels, "prefixes": stats,
            "collisions": {**collisions, "disambiguation_size": largest}}


def _prefix_counts(table: BulkTable) -> tuple[list[int], dict]:
    """Distinct prefixes per depth, and ``usage.collision_stats`` of the full codes."""
    import pyarrow as pa

    distinct, collided, groups_max = [], 0, 0
    count = table.by_codes.count
    for depth in range(1, table.levels + 1):
        spill = Partitions(table.folder, f"prefix{depth}", count)
        for _, tokens in table.chunks(CHUNK_ROWS):
            prefix = np.ascontiguousarray(tokens[:, :depth])
            spill.write(pa.table({"p": list_array(prefix)}), rows_hash(prefix))
        spill.close()
        found = 0
        for part in range(count):
            rows = spill.read(part)
            if rows is None:
                continue
            _, sizes = np.unique(list_values(rows.column("p"), depth), axis=0, return_counts=True)
            found += len(sizes)
            if depth == table.levels:
                collided += int(sizes[sizes > 1].sum())
                groups_max = max(groups_max, int(sizes.max()))
            spill.remove(part)
        distinct.append(found)
    n = table.rows
    if not n:
        return [0] * table.levels, {"items": 0, "distinct_ids": 0, "collision_rate": 0.0,
                                    "largest_group": 0}
    return distinct, {"items": n, "distinct_ids": distinct[-1], "collision_rate": collided / n,
                      "largest_group": groups_max}
