"""Vector tables (`hrqtok embed`'s output): Parquet with an ``id`` string column and an
``embedding`` column of float32 lists, written one row group per chunk so that memory stays that
of one chunk. `fit` and `encode` read them back with ``--embedding-field embedding``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ID_COLUMN, VECTOR_COLUMN = "id", "embedding"


class VectorWriter:
    """Appends (ids, vectors) chunks to a Parquet file as row groups; ``embedder`` (the model
    that made the vectors) is kept in the file's metadata."""

    def __init__(self, path, embedder: str):
        """``path``: a file's path, or a binary stream (``remote_writes.remote_file``'s)."""
        self.path, self.embedder = path, embedder
        self.writer = None
        self.rows, self.dim = 0, 0

    def write(self, ids: list[str], vectors: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        table = pa.table({ID_COLUMN: pa.array(ids, pa.string()), VECTOR_COLUMN: column})
        if self.writer is None:
            schema = table.schema.with_metadata({"hrqtok.embedder": self.embedder})
            where = str(self.path) if isinstance(self.path, Path) else self.path
            self.writer = pq.ParquetWriter(where, schema)
        self.writer.write_table(table.replace_schema_metadata(self.writer.schema.metadata))
        self.rows, self.dim = self.rows + len(ids), int(vectors.shape[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
