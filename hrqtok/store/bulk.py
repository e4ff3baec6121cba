"""Token tables of catalogues that need not fit in memory.

``BulkTable`` takes a catalogue's ids and codes a chunk at a time, in input order, and keeps them
on disk: the tokens in one flat int32 file (n × (k+1)), the ids in an Arrow stream, and the
rows again in hash partitions. ``finish`` then makes, one partition in memory at a time:
1. the duplicate-id check (partitions by id), reporting the first repeat in input order;
2. the ``existing`` table's kept multitokens (its ids keep theirs whole), by the same split;
3. the disambiguation tokens (partitions by codes): within a group of items sharing all k
   codes, 0, 1, 2, … in id order, skipping indices the existing table holds for those codes.
This is ``tables.build_table``'s rule, so a catalogue that fits in memory gets the same table
either way; ``metrics.bulk_report`` computes ``table_report``'s figures from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hrqtok.errors import InputError
from hrqtok.store.spill import Partitions, rows_hash, strings_hash
from hrqtok.store.tables import TokenTable

PARTITION_ROWS = 1 << 20  # rows aimed at per partition: about 100 MB of one pass in memory
UNKNOWN_ROWS_PARTITIONS = 16  # partitions when the catalogue's size is not known in advance
MAX_PARTITIONS = 1024


def partition_count(expected_rows: int | None) -> int:
    if expected_rows is None:
        return UNKNOWN_ROWS_PARTITIONS
    return min(MAX_PARTITIONS, max(1, math.ceil(expected_rows / PARTITION_ROWS)))


class BulkTable:
    """A token table under construction in ``folder`` (an empty scratch folder)."""

    def __init__(self, folder: Path, levels: int, *, id_field: str = "id",
                 expected_rows: int | None = None, partitions: int | None = None):
        import pyarrow as pa

        self.folder, self.levels, self.rows, self.id_field = Path(folder), levels, 0, id_field
        count = partitions or partition_count(expected_rows)
        self.by_id = Partitions(self.folder, "ids", count)
        self.by_codes = Partitions(self.folder, "codes", count)
        self.tokens_path = self.folder / "tokens.i32"
        self._tokens = open(self.tokens_path, "wb")
        self._ids = pa.ipc.new_stream(str(self.folder / "ids.arrow"),
                                      pa.schema([pa.field("id", pa.string())]))
        self.sources: list[str] = []
        self.finished = False

    def __enter__(self) -> BulkTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the spill files (done by ``finish``; again, or after an error, harmless)."""
        if not self._tokens.closed:
            self._tokens.close()
            self._ids.close()
        self.by_id.close()
        self.by_codes.close()

    def add(self, ids: list[str], codes: np.ndarray, *, source: str, lines: list[int]) -> None:
        """The next chunk: ``ids`` with their ``codes`` (m, k), read from ``lines`` of
        ``source`` (for the duplicate-id message)."""
        import pyarrow as pa

        codes = np.asarray(codes, dtype=np.int32).reshape(len(ids), self.levels)
        if source not in self.sources:
            self.sources.append(source)
        positions = np.arange(self.rows, self.rows + len(ids), dtype=np.int64)
        tokens = np.zeros((len(ids), self.levels + 1), dtype=np.int32)
        tokens[:, :-1] = codes
        self._tokens.write(tokens.tobytes())
        id_array = pa.array(ids, type=pa.string())
        self._ids.write_table(pa.table({"id": id_array}))
        self.by_id.write(pa.table({"id": id_array, "position": positions,
                                   "source": np.full(len(ids), self.sources.index(source), np.int32),
                                   "line": np.asarray(lines, dtype=np.int64)}),
                         strings_hash(ids))
        self.by_codes.write(pa.table({"id": id_array, "position": positions,
                                      "codes": list_array(codes)}), rows_hash(codes))
        self.rows += len(ids)

    def finish(self, existing: TokenTable | None = None) -> None:
        """Check ids, keep ``existing``'s multitokens, add the disambiguation tokens."""
        import pyarrow as pa

        self.close()
        old_by_id = Partitions(self.folder, "old-ids", self.by_id.count)
        old_by_codes = Partitions(self.folder, "old-codes", self.by_codes.count)
        if existing is not None and len(existing):
            if existing.codes.shape[1] != self.levels:
                from hrqtok.errors import ArtifactError
                raise ArtifactError(
                    f"the existing table has {existing.codes.shape[1]} levels but the model has "
                    f"{self.levels}; it belongs to another model")
            old_by_id.write(pa.table({"id": pa.array(existing.ids, type=pa.string()),
                                      "tokens": list_array(existing.tokens)}),
                            strings_hash(existing.ids))
            old_by_codes.write(pa.table({"codes": list_array(existing.codes),
                                         "index": existing.tokens[:, -1].astype(np.int32)}),
                               rows_hash(existing.codes))
            old_by_id.close()
            old_by_codes.close()
        kept = np.zeros(self.rows, dtype=bool)
        self._check_ids_and_keep(old_by_id, kept)
        self._disambiguate(old_by_codes, kept)
        self.finished = True

    def _memmap(self):
        return np.memmap(self.tokens_path, dtype=np.int32, mode="r+",
                         shape=(self.rows, self.levels + 1)) if self.rows else np.zeros(
                             (0, self.levels + 1), np.int32)

    def _check_ids_and_keep(self, old_by_id: Partitions, kept: np.ndarray) -> None:
        """Raise for the first repeated id in input order; copy kept multitokens in."""
        first_repeat = None  # (position, source, line, first line)
        for part in range(self.by_id.count):
            rows = self.by_id.read(part)
            if rows is None:
                continue
            ids = np.asarray(rows.column("id").to_pylist(), dtype=object)
            positions = rows.column("position").to_numpy()
            order = np.lexsort((positions, ids.astype(str))) if len(ids) else positions
            ids, positions = ids[order], positions[order]
            repeat = np.flatnonzero(ids[1:] == ids[:-1]) + 1
            if len(repeat):
                at = repeat[np.argmin(positions[repeat])]
                start = at
                while start > 0 and ids[start - 1] == ids[at]:
                    start -= 1
                sources = rows.column("source").to_numpy()[order]
                lines = rows.column("line").to_numpy()[order]
                found = (positions[at], sources[at], lines[at], sources[start], lines[start],
                         ids[at])
                if first_repeat is None or found[0] < first_repeat[0]:
                    first_repeat = found
            old = old_by_id.read(part)
            if old is None or first_repeat is not None:
                continue
            old_tokens = dict(zip(old.column("id").to_pylist(),
                                  list_values(old.column("tokens"), self.levels + 1)))
            matches = [(p, old_tokens[i]) for i, p in zip(ids, positions) if i in old_tokens]
            if matches:
                where = np.array([p for p, _ in matches], dtype=np.int64)
                tokens = self._memmap()
                tokens[where] = np.stack([t for _, t in matches])
                tokens.flush()
                del tokens
                kept[where] = True
        if first_repeat is not None:
            _, source, line, first_source, first_line, item_id = first_repeat
            first = (f"line {first_line}" if first_source == source
                     else f"{self.sources[first_source]} line {first_line}")
            raise InputError(f"duplicate id {item_id!r} in field '{self.id_field}' (first on "
                             f"{first}); ids must be unique", source=self.sources[source],
                             line=int(line))

    def _disambiguate(self, old_by_codes: Partitions, kept: np.ndarray) -> None:
        """Within each group of new (not kept) rows sharing all k codes: 0, 1, 2, … in id
        order, skipping the indices existing rows with those codes hold."""
        for part in range(self.by_codes.count):
            rows = self.by_codes.read(part)
            if rows is None:
                continue
            positions = rows.column("position").to_numpy()
            new = ~kept[positions]
            codes = list_values(rows.column("codes"), self.levels)[new]
            ids = np.asarray(rows.column("id").to_pylist(), dtype=str)[new] if new.any() else np.zeros(0, str)
            positions = positions[new]
            if not len(positions):
                continue
            order = np.lexsort((ids, *codes.T[::-1]))
            codes, positions = codes[order], positions[order]
            starts = np.r_[True, (codes[1:] != codes[:-1]).any(axis=1)]
            group = np.cumsum(starts) - 1
            first = np.flatnonzero(starts)
            index = np.arange(len(positions)) - first[group]
            taken = self._taken(old_by_codes.read(part))
            if taken:
                ends = np.r_[first[1:], len(positions)]
                for lo, hi in zip(first.tolist(), ends.tolist()):
                    used = taken.get(tuple(codes[lo].tolist()))
                    if used:
                        index[lo:hi] = _free_indices(used, hi - lo)
            if index.any():
                tokens = self._memmap()
                tokens[positions, -1] = index
                tokens.flush()
                del tokens

    def _taken(self, old) -> dict[tuple, set[int]]:
        taken: dict[tuple, set[int]] = {}
        if old is None:
            return taken
        for key, index in zip(map(tuple, list_values(old.column("codes"), self.levels).tolist()),
                              old.column("index").to_numpy().tolist()):
            taken.setdefault(key, set()).add(index)
        return taken

    def chunks(self, rows: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, tokens) of ``rows`` rows at a time, in input order (the last may be shorter)."""
        import pyarrow as pa

        assert self.finished, "finish() first"
        tokens = np.memmap(self.tokens_path, dtype=np.int32, mode="r",
                           shape=(self.rows, self.levels + 1)) if self.rows else None
        pending: list[str] = []
        start = 0
        with pa.ipc.open_stream(str(self.folder / "ids.arrow")) as reader:
            for batch in reader:
                pending += batch.column(0).to_pylist()
                while len(pending) >= rows:
                    yield pending[:rows], np.array(tokens[start:start + rows])
                    pending, start = pending[rows:], start + rows
        if pending or not self.rows:
            yield pending, (np.array(tokens[start:]) if tokens is not None
                            else np.zeros((0, self.levels + 1), np.int32))


def _free_indices(used: set[int], count: int) -> np.ndarray:
    """The ``count`` smallest indices not in ``used``."""
    out, index = [], 0
    while len(out) < count:
        if index not in used:
            out.append(index)
        index += 1
    return np.array(out, dtype=np.int64)


def list_array(values: np.ndarray):
    """(m, w) int32 -> a pyarrow list<int32> array."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.int32)
    width = values.shape[1]
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=pa.int32()))


def list_values(column, width: int) -> np.ndarray:
    """A list<int32> column of fixed ``width`` -> (m, width) int32."""
    flat = column.combine_chunks().flatten()
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.int32).reshape(-1, width)
