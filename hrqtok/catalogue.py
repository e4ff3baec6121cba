"""`hrqtok encode ITEMS --out F` and `hrqtok inspect ITEMS` for catalogues of any size: items are read, embedded (through
the cache) and encoded a chunk at a time, the token table is built on disk (``store.bulk``) and
written a row group at a time, so memory does not grow with the catalogue. ITEMS may be a
Parquet dataset folder. A catalogue that fits in memory gets the table ``pipeline.encode_items``
makes, byte for byte (up to ``OUTPUT_ROWS`` rows the Parquet file too; past that it holds the
same rows in more row groups).
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

from hrqtok.devices import resolve_device
from hrqtok.engines import RaySettings, work_chunks, work_device
from hrqtok.engines.work import EmbedWork, EncodeWork
from hrqtok.errors import OptionError
from hrqtok.metrics.bulk_report import bulk_table_report
from hrqtok.metrics.quality import QualityLimits
from hrqtok.metrics.reports import VectorStats, table_report
from hrqtok.pipeline import (
    EmbedSettings,
    check_beam,
    embed_settings_for,
    encode_items,
    fields_for,
    inspect_model,
    inspect_report,
    make_embedder,
    quality_gate,
    refuse_wordnet_items,
)
from hrqtok.sources.datasets import input_files
from hrqtok.sources.embedder import ProgressFn, embedding_cache_path
from hrqtok.sources.items import ItemFields
from hrqtok.sources.records import count_records
from hrqtok.store.bulk import BulkTable
from hrqtok.store.model_dir import ModelDir, load_model_dir, table_metadata
from hrqtok.store.tables import write_chunks, write_table

INPUT_ROWS = 4096  # items read, embedded and encoded at a time
OUTPUT_ROWS = 65536  # rows per Parquet row group (and per chunk of text output)


def inspect_catalogue(model_dir: str | Path, source: str | None = None, *,
                      fields: ItemFields | None = None, input_format: str | None = None,
                      embed: EmbedSettings | None = None, table: str | Path | None = None,
                      prefix: list[int] | None = None, plot: str | Path | None = None,
                      scratch: str | Path | None = None, partitions: int | None = None,
                      device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """``pipeline.inspect_model``, streamed for ITEMS: the table and vector figures of a
    catalogue of any size, a chunk at a time. ``--prefix`` and ``--plot`` need the whole
    table, so with them (or without ITEMS) the in-memory report is made."""
    if source is None or prefix is not None or plot is not None:
        return inspect_model(model_dir, source, fields=fields, fmt=input_format, embed=embed,
                             table=table, prefix=prefix, plot=plot, device=device,
                             progress=progress)
    device = resolve_device(device)
    loaded = load_model_dir(model_dir)
    refuse_wordnet_items(loaded, source)
    fields = fields_for(loaded, fields)
    files = input_files(source)
    counts = [count_records(f, input_format) for f in files]
    total = None if None in counts else sum(counts)
    stats = VectorStats()
    with tempfile.TemporaryDirectory(prefix="hrqtok-inspect-", dir=scratch) as folder:
        with BulkTable(Path(folder), loaded.model_config.levels, id_field=fields.id_field,
                       expected_rows=total, partitions=partitions) as bulk:
            _encode_into(bulk, files, loaded, fields, input_format, embed, 1, total, device,
                         progress, stats)
            bulk.finish()
        report = bulk_table_report(bulk, loaded.model_config.codebook_size)
    loaded.model.cpu()  # the codebook report reads it
    return inspect_report(loaded, report, stats.report())


def encode_catalogue(model_dir: str | Path, source: str | None, out: str, fmt: str = "parquet",
                     *, fields: ItemFields | None = None, input_format: str | None = None,
                     embed: EmbedSettings | None = None, existing: str | Path | None = None,
                     existing_other_model: bool = False, beam: int = 1,
                     limits: QualityLimits = QualityLimits(), scratch: str | Path | None = None,
                     partitions: int | None = None, device: str = "auto",
                     engine: RaySettings | None = None,
                     progress: ProgressFn | None = None) -> dict:
    """Encode ``source`` (a file, ``-``, or a Parquet dataset folder; the fitted items when
    None) with the model at ``model_dir`` and write the token table to ``out`` in ``fmt``.
    Scratch files go under ``scratch`` (default: the system's temporary folder). Returns the
    table report (``metrics.reports.table_report``'s figures). ``device``: where embedding and
    encoding run (``hrqtok.devices``; with ``engine``, on each Ray actor). ``engine``: encode
    on a Ray cluster (``engines.ray_data``) rather than in this process."""
    if engine is not None and source is None:
        raise OptionError("--engine", "ray encodes ITEMS; the fitted items' table is the "
                                      "model's own, encoded without Ray")
    device = resolve_device(device)
    loaded = load_model_dir(model_dir)
    config = loaded.model_config
    if source is None:  # the fitted items' table is the model's own, already in memory
        table = encode_items(model_dir, None, existing=existing, beam=beam, limits=limits,
                             existing_other_model=existing_other_model, device=device,
                             progress=progress)
        write_table(table, out, fmt)
        return table_report(table, config.codebook_size)
    refuse_wordnet_items(loaded, source)
    check_beam(config, beam, loaded.config)
    # the earlier table is read (and checked) whole: its rows are one int32 row per item
    old = loaded.read_table(existing, other_model=existing_other_model) if existing else None
    fields = fields_for(loaded, fields)
    files = input_files(source)
    counts = [count_records(f, input_format) for f in files]
    total = None if None in counts else sum(counts)
    with tempfile.TemporaryDirectory(prefix="hrqtok-encode-", dir=scratch) as folder:
        with BulkTable(Path(folder), config.levels, id_field=fields.id_field,
                       expected_rows=total, partitions=partitions) as table:
            _encode_into(table, files, loaded, fields, input_format, embed, beam, total, device,
                         progress, engine=engine)
            table.finish(old)
        report = bulk_table_report(table, config.codebook_size)
        quality_gate(report, limits, where=str(source))
        metadata = {**table_metadata(loaded.fingerprint, config, beam),
                    "disambiguation_size": report["collisions"]["disambiguation_size"]}
        write_chunks(table.chunks(OUTPUT_ROWS), metadata, out, fmt)
    return report


def _encode_into(table: BulkTable, files: list[str], loaded: ModelDir, fields: ItemFields,
                 input_format: str | None, embed: EmbedSettings | None, beam: int,
                 total: int | None, device: torch.device | str, progress: ProgressFn | None,
                 stats: VectorStats | None = None, engine: RaySettings | None = None) -> None:
    """Pass 1: every chunk of every file read, embedded (texts) and encoded on ``device`` into
    ``table`` (and into ``stats``' sums when given), here or on the Ray actors of ``engine``
    (each on a GPU of its own when ``device`` is a CUDA one)."""
    device, gpu = work_device(device, engine)
    embedding = EmbedWork(partial(make_embedder, embed_settings_for(loaded, embed),
                                  progress=None if engine else progress),  # Ray: no callback
                          embedding_cache_path(), device)
    work = EncodeWork(str(Path(loaded.path).resolve()), loaded.fingerprint,
                      loaded.model_config.input_dim, beam, embedding, model=loaded.model)
    if stats is not None:
        work = _Measured(work, stats)
    for chunk in work_chunks(files, input_format, fields, work, chunk_rows=INPUT_ROWS,
                             engine=engine, total=total, gpu=gpu):
        table.add(chunk.ids, chunk.values, source=chunk.source, lines=chunk.lines)
        if progress:
            progress("encode", table.rows, max(total or 0, table.rows), None)


class _Measured:
    """Encode work that also adds every chunk's vectors to ``stats`` (streamed inspect)."""

    def __init__(self, work: EncodeWork, stats: VectorStats):
        self.work, self.stats = work, stats

    def setup(self) -> None:
        self.work.setup()

    def __call__(self, items) -> np.ndarray:
        vectors = self.work.vectors(items)
        self.stats.add(self.work.model, vectors)
        return self.work.codes(vectors)

    def close(self) -> None:
        self.work.close()
