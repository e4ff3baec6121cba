"""A token table as a folder of Parquet part files (`encode --out tokens/`;
``store.part_folders``): ``part-00000.parquet``, ``part-00001.parquet``, …, each with the table's
schema and metadata and at most ``PART_ROWS`` rows, the rows in order across the parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hrqtok.errors import ArtifactError, first_line
from hrqtok.locations import output_location, parquet_source
from hrqtok.store.part_folders import PartWriter, TableKind, part_files, part_places
from hrqtok.store.part_folders import check_replaceable as check_folder

PART_ROWS = 1 << 20  # rows per part file (16 row groups of encode's 65,536)


def _token_metadata(keys: list[bytes]) -> bool:
    from hrqtok.store.tables import META_PREFIX

    return any(k.decode("utf-8", "replace").startswith(META_PREFIX) for k in keys)


TOKENS = TableKind("token table", _token_metadata)


def check_replaceable(folder: str | Path, option: str = "--out") -> None:
    """A folder may receive a token table when it is new, empty, or a token folder hrqtok
    wrote (only part files with hrqtok's metadata): anything else is the user's."""
    check_folder(folder, TOKENS, option)


def write_folder(chunks: Iterable[tuple[list[str], np.ndarray]], metadata: dict,
                 folder: str | Path, *, part_rows: int | None = None) -> None:
    """Write (ids, tokens) chunks as part files of at most ``part_rows`` rows, a row group
    per chunk (cut where a part is full), then put the folder in place. An empty table is one
    part without rows, so the folder still says what it holds. ``part_rows``: default
    ``PART_ROWS``."""
    import pyarrow as pa

    from hrqtok.store.tables import _schema, _tokens_array

    folder = output_location(str(folder))
    check_replaceable(folder)
    schema = _schema(metadata)
    with part_places(folder) as place:
        writer = PartWriter(place, part_rows or PART_ROWS, schema)
        try:
            for ids, tokens in chunks:
                writer.write_table(pa.Table.from_arrays(
                    [pa.array(ids, type=pa.string()), _tokens_array(tokens)], schema=schema))
        finally:
            writer.close()


def read_folder(folder: str | Path):
    """The token table of a folder of part files, checked as one table (``tables.read_table``
    checks each row and the ids over all parts); the parts must share their metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hrqtok.store.tables import _from_arrow

    parts = part_files(folder)
    if not parts:
        raise ArtifactError(f"{folder}: a folder without part-NNNNN.parquet files; name a "
                            "token table file or a folder written by `hrqtok encode --out DIR/`")
    tables = []
    for part in parts:
        try:
            tables.append(pq.read_table(parquet_source(part)))
        except (pa.ArrowException, OSError) as e:
            raise ArtifactError(f"{part}: not a readable Parquet token table "
                                f"({first_line(e)})") from None
        if tables[-1].schema.metadata != tables[0].schema.metadata:
            first = str(parts[0]).partition("?")[0].rsplit("/", 1)[-1]
            raise ArtifactError(f"{part}: its metadata differs from {first}'s; the "
                                "parts come from different encodes: encode again")
    try:
        whole = pa.concat_tables(tables)
    except pa.ArrowException as e:
        raise ArtifactError(f"{folder}: parts with different columns ({first_line(e)})") from None
    return _from_arrow(whole, folder)
