"""Shared helpers for the benchmark scripts: timing and the repository root on sys.path."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_time(fn, *, repeat: int = 5, warmup: int = 1) -> float:
    """Fastest of ``repeat`` timed calls, seconds (the least disturbed by other load)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
