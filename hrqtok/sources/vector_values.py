"""Vector values of items: a JSON or Parquet list, or a CSV cell, checked and made float32."""

from __future__ import annotations

import json

import numpy as np


def parse_vector(value, error, *, text: bool = False) -> np.ndarray:
    """A flat, non-empty list of finite numbers (or, with ``text``, a CSV cell spelling them)
    as float32; ``error(message)`` makes the exception to raise. Booleans and texts are not
    numbers (a JSONL or Parquet string is refused, not read as digits), and a value that
    overflows float32 is refused rather than turned into infinity."""
    if isinstance(value, str) and not text:
        raise error("is not a list of numbers but a text (only a CSV cell may spell a vector "
                    "as text)")
    if isinstance(value, str):  # CSV cells: "[0.1, 0.2]" or "0.1 0.2"
        text = value.strip()
        try:
            if text.startswith("["):
                array = np.asarray(json.loads(text))
            else:
                array = np.asarray(text.replace(",", " ").split(), dtype=np.float64)
        except (json.JSONDecodeError, ValueError, RecursionError, OverflowError):
            raise error("is not a list of numbers") from None
    else:
        if not isinstance(value, (list, tuple)):
            raise error(f"must be a list of numbers, found {type(value).__name__}")
        try:
            array = np.asarray(value)
        except (ValueError, OverflowError):
            raise error("must be a flat list of numbers") from None
    if array.ndim != 1 or array.size == 0:
        raise error("must be a non-empty flat list of numbers")
    if array.dtype.kind == "b":
        raise error("holds true/false values, not numbers")
    if array.dtype.kind == "O":  # mixed types, or integers beyond 64 bits
        for position, v in enumerate(array):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise error(f"holds {type(v).__name__} at position {position}, not a number")
        try:
            array = np.asarray([float(v) for v in array])
        except OverflowError:
            raise error("holds a number too large for a vector") from None
    elif array.dtype.kind not in "iuf":
        raise error(f"holds {array.dtype.kind in 'US' and 'text' or array.dtype}, not a number")
    vector = array.astype(np.float64)
    if not np.isfinite(vector).all():
        bad = int(np.flatnonzero(~np.isfinite(vector))[0])
        raise error(f"holds NaN or infinity (at position {bad})")
    with np.errstate(over="ignore"):
        single = vector.astype(np.float32)
    if not np.isfinite(single).all():
        bad = int(np.flatnonzero(~np.isfinite(single))[0])
        raise error(f"holds {vector[bad]:g} at position {bad}, beyond float32's range (±3.4e38)")
    return single
