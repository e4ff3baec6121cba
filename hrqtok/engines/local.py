"""The local engine: the work done on each chunk in this process, file after file."""

from __future__ import annotations

from collections.abc import Iterator

from hrqtok.engines.work import Chunk
from hrqtok.sources.items import ItemFields, item_chunks


def local_chunks(files: list[str], fmt: str | None, fields: ItemFields, work, *,
                 chunk_rows: int) -> Iterator[Chunk]:
    """Every chunk of ``files``' items with ``work(items)``'s values, in input order. Ids are
    checked within a chunk only: the caller checks them over the whole input."""
    work.setup()
    try:
        for file in files:
            for items in item_chunks(file, fields, fmt=fmt, size=chunk_rows, unique_ids=False):
                yield Chunk(-1, items.source, items.ids, items.lines, work(items))
    finally:
        work.close()
