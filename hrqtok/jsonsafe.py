"""JSON that is always valid: a non-finite number (a coefficient of variation over zero norms,
a metric over no rows) becomes null, and the report says where and why."""

from __future__ import annotations

import json
import math
from typing import Any

NULL_REASONS = "null_reasons"


def _clean(value: Any, path: str, reasons: dict[str, str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        reasons[path or "."] = f"not a finite number ({value})"
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{path}.{k}" if path else str(k), reasons) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}[{i}]", reasons) for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return _clean(value.item(), path, reasons)
    return value


def json_safe(report: Any) -> Any:
    """``report`` with NaN and infinities replaced by null; a dict report gains
    ``null_reasons``: {dotted path: why} for each replaced value."""
    reasons: dict[str, str] = {}
    clean = _clean(report, "", reasons)
    if reasons and isinstance(clean, dict):
        clean[NULL_REASONS] = {**clean.get(NULL_REASONS, {}), **reasons}
    return clean


def dumps(report: Any, **kwargs) -> str:
    return json.dumps(json_safe(report), allow_nan=False, **kwargs)
