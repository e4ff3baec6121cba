"""Vector tables (`hrqtok embed`'s output): Parquet with an ``id`` string column and an
``embedding`` column of float32 lists, written one row group per chunk so that memory stays that
of one chunk; a file, or a folder of part files (``embed --out DIR/``, ``store.part_folders``),
local or at a URI. `fit` and `encode` read them back with ``--embedding-field embedding``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from hrqtok.remote_writes import PartPlace, output_file
from hrqtok.store.part_folders import PartWriter, TableKind, check_replaceable, part_places

ID_COLUMN, VECTOR_COLUMN = "id", "embedding"
EMBEDDER_KEY = b"hrqtok.embedder"
# a part of a vector folder holds about this many bytes of floats: 349,525 rows of 768-d, well
# under the 5 GiB that S3 copies in one request
VECTOR_PART_BYTES = 1 << 30
VECTORS = TableKind("vector table", lambda keys: EMBEDDER_KEY in keys)


class VectorWriter:
    """Appends (ids, vectors) chunks as row groups to a Parquet file at ``where`` (a binary
    stream, or a path), or with ``place`` to the part files of a folder; ``embedder`` (the model
    that made the vectors) is kept in the metadata."""

    def __init__(self, where=None, embedder: str = "", *, place: PartPlace | None = None):
        self.where, self.place, self.embedder = where, place, embedder
        self.writer = None
        self.rows, self.dim = 0, 0

    def write(self, ids: list[str], vectors: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        table = pa.table({ID_COLUMN: pa.array(ids, pa.string()), VECTOR_COLUMN: column})
        if self.writer is None:
            schema = table.schema.with_metadata({EMBEDDER_KEY: self.embedder})
            if self.place is None:
                self.writer = pq.ParquetWriter(self.where, schema)
            else:
                rows = max(1, VECTOR_PART_BYTES // (4 * max(int(vectors.shape[1]), 1)))
                self.writer = PartWriter(self.place, rows, schema)
        self.writer.write_table(table.replace_schema_metadata(self.writer.schema.metadata))
        self.rows, self.dim = self.rows + len(ids), int(vectors.shape[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextmanager
def vector_output(out: str, embedder: str) -> Iterator[VectorWriter]:
    """A VectorWriter for ``out``: a file, or a folder of parts when ``out`` names one (ends in
    ``/`` or is a folder), local or at a URI. The vectors take the old output's place only when
    the block ends without error."""
    from hrqtok.locations import output_location
    from hrqtok.targets import names_a_folder

    out = output_location(str(out))
    if names_a_folder(out):
        check_replaceable(out, VECTORS)
        with part_places(out) as place:
            writer = VectorWriter(embedder=embedder, place=place)
            try:
                yield writer
            finally:
                writer.close()
        return
    with output_file(out) as target:
        writer = VectorWriter(target, embedder)
        try:
            yield writer
        finally:
            writer.close()
