"""Rows spilled to disk in hash partitions, so that a pass over a catalogue holds one
partition at a time instead of the whole catalogue.

Each partition is an Arrow IPC stream file that grows by the rows of each chunk that hash to
it. Which partition a row lands in never changes a result: the passes that read them combine
per-partition answers that do not depend on the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


def rows_hash(values: np.ndarray) -> np.ndarray:
    """(m, d) integers -> (m,) uint64: FNV-1a over the columns (equal rows, equal hashes)."""
    out = np.full(len(values), FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in np.asarray(values).T:
            out = (out ^ column.astype(np.uint64)) * FNV_PRIME
    return out


def strings_hash(strings: list[str]) -> np.ndarray:
    """(m,) uint64 hashes of strings; stable within one process, which is all a split needs."""
    return np.fromiter((hash(s) for s in strings), dtype=np.int64, count=len(strings)).view(np.uint64)


class Partitions:
    """``count`` IPC stream files under ``folder``; ``write`` appends a pyarrow Table's rows,
    each to the partition its hash picks; ``read`` gives one partition back whole."""

    def __init__(self, folder: Path, name: str, count: int):
        self.folder, self.name, self.count = folder, name, max(1, count)
        self.writers: dict[int, object] = {}
        self.schema = None

    def _path(self, part: int) -> Path:
        return self.folder / f"{self.name}-{part:05d}.arrow"

    def write(self, table, hashes: np.ndarray) -> None:
        import pyarrow as pa

        if not len(table):
            return
        self.schema = table.schema
        parts = (hashes % np.uint64(self.count)).astype(np.int64)
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(self.count + 1))
        for part in range(self.count):
            lo, hi = bounds[part], bounds[part + 1]
            if lo == hi:
                continue
            if part not in self.writers:
                self.writers[part] = pa.ipc.new_stream(str(self._path(part)), table.schema)
            self.writers[part].write_table(table.take(pa.array(order[lo:hi])))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    def remove(self, part: int) -> None:
        self._path(part).unlink(missing_ok=True)

    def read(self, part: int):
        """Partition ``part`` as a pyarrow Table, or None when no row hashed to it."""
        import pyarrow as pa

        path = self._path(part)
        if not path.exists():
            return None
        with pa.ipc.open_stream(str(path)) as reader:
            return reader.read_all()
