"""Where the per-item work of `encode` and `embed` runs: in this process (``engines.local``) or
on the actors of a Ray cluster (``engines.ray_data``). Both hand back the same chunks in the
same order, so the driver builds the same table from either."""

from __future__ import annotations

from collections.abc import Iterator

from hrqtok.devices import resolve_device
from hrqtok.engines.local import local_chunks
from hrqtok.engines.ray_data import RaySettings, run_chunks
from hrqtok.engines.work import Chunk
from hrqtok.sources.items import ItemFields


def work_device(device: str, engine: RaySettings | None) -> tuple[str, bool]:
    """(the torch device the work runs on, whether each Ray actor needs a GPU of its own):
    ``device`` resolved here; on Ray a CUDA device is "cuda", the GPU that Ray gives the actor."""
    resolved = str(resolve_device(device))
    gpu = engine is not None and resolved.startswith("cuda")
    return ("cuda" if gpu else resolved), gpu


def work_chunks(files: list[str], fmt: str | None, fields: ItemFields, work, *, chunk_rows: int,
                engine: RaySettings | None = None, total: int | None = None,
                gpu: bool = False) -> Iterator[Chunk]:
    """``work`` done on every chunk of ``files``' items, in input order: here when ``engine``
    is None, else on its Ray cluster (``total``: the records, to size its parts; ``gpu``: one
    GPU per actor)."""
    if engine is None:
        return local_chunks(files, fmt, fields, work, chunk_rows=chunk_rows)
    return run_chunks(files, fmt, fields, work, chunk_rows=chunk_rows, settings=engine,
                      total=total, gpu=gpu)
