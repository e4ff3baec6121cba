"""Shared helpers for the benchmark scripts: timing and the repository root on sys.path."""

from __future__ import annotations

import os
import statistics
import subprocess
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


def threads_env(jobs: int) -> dict:
    """The environment of one of ``jobs`` concurrent jobs: its share of the cores (torch
    threads fighting over cores make a job many times slower)."""
    return {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}


def hrqtok(*args: str, env: dict | None = None) -> str:
    """Run the CLI as a user would (quietly); its stdout. Fails loudly on a non-zero exit."""
    result = subprocess.run([sys.executable, "-m", "hrqtok", *args, "--quiet"], cwd=ROOT,
                            check=True, capture_output=True, text=True, env=env)
    return result.stdout


def mean_std(values: list[float], fmt: str) -> str:
    """"m ± s" over runs (the sample standard deviation); one run prints alone."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"
