"""`--engine ray`: the input files cut into parts (``sources.splits``), a Ray dataset of those
parts, and ``map_batches`` over it with a pool of actors that each set up the work (load the
model) once and send back every chunk of a part: its ids, lines and values (codes or vectors),
or the error a local run would raise there. Order is kept, so the driver sees chunks and errors
in input order and builds the same table as the local engine; it keeps the checks that need
the whole input (duplicate ids, files without items) and does the disambiguation pass.

Every worker must see the input files and the cache path at the same paths as the driver: one
machine, or a shared file system.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from hrqtok.engines.work import Chunk
from hrqtok.errors import HrqtokError, OptionError, first_line
from hrqtok.sources.items import ItemFields, record_chunks
from hrqtok.sources.splits import Split, check_cuttable, plan_splits, split_chunks

MAX_PART_ROWS = 65536  # records per part at most: a task of seconds (vectors) to minutes (texts)
PARTS_PER_WORKER = 4  # at least, when the input is large enough: the pool stays busy to the end


@dataclass(frozen=True)
class RaySettings:
    """``address``: a running cluster (``auto``: the one ``ray start`` made on this machine);
    None starts a local one for the run. A process that already called ``ray.init()`` uses
    that cluster, whatever ``address`` says.
    ``workers``: actors in the pool (default: one per CPU of the cluster). ``split_rows``:
    records per part (default: the input shared out as ``PARTS_PER_WORKER`` parts per
    worker, at most ``MAX_PART_ROWS``)."""

    address: str | None = None
    workers: int | None = None
    split_rows: int | None = None


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[int]:
    """Ray, initialised for the run (and shut down after it only if this call started it);
    yields the cluster's CPU count."""
    try:
        import ray
        import ray.data  # configures its loggers on import: before the level below
    except ImportError:
        raise HrqtokError("--engine ray needs Ray: pip install 'hrqtok[ray]'") from None
    started = not ray.is_initialized()
    if started:
        options = dict(include_dashboard=False, logging_level=logging.WARNING,
                       configure_logging=True)
        try:
            if settings.address:
                ray.init(address=settings.address, **options)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = settings.address or "this machine"
            raise OptionError("--ray-address", f"cannot start or join a Ray cluster at {where} "
                                               f"({first_line(e)})") from None
    data_log = logging.getLogger("ray.data")  # per-run notices; hrqtok reports the run itself
    level = data_log.level
    data_log.setLevel(logging.ERROR)
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        data_log.setLevel(level)
        if started:
            ray.shutdown()


def run_chunks(files: list[str], fmt: str | None, fields: ItemFields, work, *, chunk_rows: int,
               settings: RaySettings, total: int | None = None,
               gpu: bool = False) -> Iterator[Chunk]:
    """Every chunk of ``files``' items with ``work(items)``'s values, in input order, made on
    the actors; raises the error a local run would raise first. ``total``: the input's records
    (an upper bound is fine), to size the parts. ``gpu``: one GPU per actor."""
    for file in files:  # before a cluster starts
        check_cuttable(file)
    with ray_session(settings) as cpus:
        import ray

        workers = settings.workers or cpus
        if workers > cpus:
            raise OptionError("--ray-workers", f"the cluster has {cpus} CPUs; ask for at most "
                                               f"{cpus} workers (one CPU each)")
        rows = settings.split_rows or part_rows(total, workers)
        splits = [split for file in files for split in plan_splits(file, fmt, rows)]
        threads = max(1, cpus // workers)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # chunks come back in input order
        context.enable_progress_bars = False  # the CLI draws its own
        context.print_on_execution_start = False
        parts = ray.data.from_items([split.as_row() | {"index": i} for i, split in
                                     enumerate(splits)], override_num_blocks=len(splits))
        chunks = parts.map_batches(
            _Actor, fn_constructor_args=(work, fields, chunk_rows, threads), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(splits))),
            num_cpus=threads, num_gpus=1 if gpu else 0)
        yield from _in_order(chunks, splits, fields)


def part_rows(total: int | None, workers: int) -> int:
    """Records per part: ``PARTS_PER_WORKER`` parts per worker, at most ``MAX_PART_ROWS``
    (and that when the size is not known). A part smaller than a chunk is one short chunk."""
    if total is None:
        return MAX_PART_ROWS
    return min(MAX_PART_ROWS, max(1, math.ceil(total / (workers * PARTS_PER_WORKER))))


def _in_order(chunks, splits: list[Split], fields: ItemFields) -> Iterator[Chunk]:
    """The actors' chunks, with the check a whole read makes per file: a file that gave no
    items is reported when the input reaches its end, as a local run would."""
    last_split = {split.path: i for i, split in enumerate(splits)}
    pending = list(dict.fromkeys(split.path for split in splits))  # files not yet seen
    for batch in _cluster_checked(chunks.iter_batches(batch_size=None, batch_format="numpy")):
        for blob in batch["chunk"]:
            chunk: Chunk = pickle.loads(blob)
            path = splits[chunk.split].path
            if pending and last_split[pending[0]] < chunk.split:  # passed a file's end
                _no_items(splits[last_split[pending[0]]], fields)
            if pending and pending[0] == path and chunk.error is None:
                pending.pop(0)
            if chunk.error is not None:
                raise chunk.error
            yield chunk
    if pending:
        _no_items(splits[last_split[pending[0]]], fields)


def _cluster_checked(batches: Iterator[dict]) -> Iterator[dict]:
    """The batches, with the cluster's own failures (an actor, worker or node lost, memory
    exhausted) as one HrqtokError line rather than Ray's traceback; errors of the work itself
    come back inside the chunks."""
    from ray import exceptions

    lost = (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.NodeDiedError,
            exceptions.ObjectLostError, exceptions.OutOfMemoryError, exceptions.RaySystemError)
    try:
        yield from batches
    except lost as e:
        raise HrqtokError(f"--engine ray: the cluster failed ({type(e).__name__}: "
                          f"{first_line(e)}); run again, or with --engine local") from None


def _no_items(split: Split, fields: ItemFields) -> None:
    """Raise the error a whole read of an empty file raises."""
    for _ in record_chunks([], split.source, fields, fmt=split.fmt):
        pass


class _Actor:
    """One actor of the pool: sets the work up once, then reads, checks and processes parts."""

    def __init__(self, work, fields: ItemFields, chunk_rows: int, threads: int):
        import torch

        torch.set_num_threads(threads)  # the actors share the machine's cores
        self.work, self.fields, self.chunk_rows = work, fields, chunk_rows
        self.setup_error: HrqtokError | None = None
        try:  # a failed setup goes back with the first part, as its error, not as Ray's
            self.work.setup()
        except HrqtokError as error:
            self.setup_error = error

    def __call__(self, batch: dict) -> Iterator[dict]:
        index = int(batch["index"][0])
        split = Split(str(batch["path"][0]), str(batch["source"][0]), str(batch["fmt"][0]),
                      int(batch["start"][0]), int(batch["stop"][0]), int(batch["before"][0]))
        if self.setup_error is not None:
            yield _batch(Chunk(index, split.source, [], [], error=self.setup_error))
            return
        try:
            for items in split_chunks(split, self.fields, self.chunk_rows):
                yield _batch(Chunk(index, items.source, items.ids, items.lines,
                                   self.work(items)))
        except (HrqtokError, OSError) as error:  # bad input, a model that cannot load, a file
            # gone: the driver raises it where a local run would
            yield _batch(Chunk(index, split.source, [], [], error=error))


def _batch(chunk: Chunk) -> dict:
    return {"chunk": np.array([pickle.dumps(chunk)], dtype=object)}
