"""Vectors handed to the Python API in whatever container they live in: numpy arrays, torch
tensors, lists, pyarrow tables or record batches, pandas and polars DataFrames. pandas and
polars are recognised without importing them (hrqtok does not depend on either)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from hrqtok.errors import InputError

ID_COLUMN = "id"


def _from_arrow(table: pa.Table, column: str | None, where: str) -> tuple[np.ndarray, list | None]:
    names = table.column_names
    ids = table.column(ID_COLUMN).to_pylist() if ID_COLUMN in names else None
    if column is None:
        lists = [n for n in names if pa.types.is_list(table.schema.field(n).type)
                 or pa.types.is_fixed_size_list(table.schema.field(n).type)
                 or pa.types.is_large_list(table.schema.field(n).type)]
        numeric = [n for n in names if n != ID_COLUMN and (
            pa.types.is_floating(table.schema.field(n).type)
            or pa.types.is_integer(table.schema.field(n).type))]
        if len(lists) == 1:
            column = lists[0]
        elif not lists and numeric:  # one feature per column
            return np.column_stack([table.column(n).to_numpy(zero_copy_only=False)
                                    for n in numeric]), ids
        else:
            raise InputError(f"cannot tell which column holds the vectors ({', '.join(names)}); "
                             "name it with column=", source=where)
    if column not in names:
        raise InputError(f"no column {column!r} (columns: {', '.join(names)})", source=where)
    values = table.column(column).to_pylist()
    if any(v is None for v in values):
        raise InputError(f"column {column!r} has a missing vector at row "
                         f"{next(i for i, v in enumerate(values) if v is None)}", source=where)
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise InputError(f"column {column!r} holds vectors of {len(lengths)} different lengths",
                         source=where)
    return np.asarray(values, dtype=np.float64).reshape(len(values), -1), ids


def as_vectors(data: Any, *, column: str | None = None,
               where: str = "vectors") -> tuple[np.ndarray, list | None]:
    """(n, dim) float32 vectors and the ids found beside them (an "id" column), or None.

    ``data``: a 2-d numpy array or torch tensor of any float (or integer) dtype, a list of
    equal-length lists, or a table (pyarrow, pandas, polars) with one list column of vectors
    (``column`` names it when there are several) or one numeric column per dimension."""
    kind = type(data).__module__.split(".")[0]
    if kind == "torch":
        data = data.detach().cpu().numpy()
    elif kind == "polars":
        data = data.to_arrow()
    elif kind == "pandas":
        data = pa.Table.from_pandas(data, preserve_index=False)
    ids = None
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        array, ids = _from_arrow(data, column, where)
    else:
        try:
            array = np.asarray(data)
        except ValueError as e:
            raise InputError(f"cannot read vectors: {e}", source=where) from None
    if array.dtype.kind not in "fiu" or array.ndim != 2:
        raise InputError(f"expected a 2-d array of numbers (items × dimensions), got shape "
                         f"{array.shape} of {array.dtype}", source=where)
    if not len(array) or not array.shape[1]:
        raise InputError(f"no vectors (shape {array.shape})", source=where)
    vectors = array.astype(np.float32)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise InputError(f"row {int(np.flatnonzero(bad)[0])} is not finite in float32", source=where)
    return np.ascontiguousarray(vectors), ids


def as_ids(ids: Any, n: int, found: list | None, *, where: str = "ids") -> list[str]:
    """Item ids as unique strings: given ones, else those found beside the vectors, else
    "0" … "n-1"."""
    chosen = ids if ids is not None else found
    if chosen is None:
        return [str(i) for i in range(n)]
    chosen = [str(i) for i in (chosen.tolist() if hasattr(chosen, "tolist") else chosen)]
    if len(chosen) != n:
        raise InputError(f"{len(chosen)} ids for {n} vectors", source=where)
    if len(set(chosen)) != n:
        seen: set[str] = set()
        duplicate = next(i for i in chosen if i in seen or seen.add(i))
        raise InputError(f"id {duplicate!r} occurs more than once", source=where)
    return chosen
