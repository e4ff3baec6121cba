"""What every evaluation shares: the systems it scores ("model": the tokens under test,
"random": random multitokens of the same shape), repeated over seeds and summarised."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hrqtok.store.tables import TokenTable, build_table

SYSTEMS = ("model", "random")


def random_multitokens(n: int, sizes: list[int], seed: int) -> np.ndarray:
    """The random baseline: uniform codes per level (same k and s as the model), then the
    disambiguation token as for real tables. (n, k + 1)."""
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, s, n) for s in sizes]) if n else np.zeros((0, len(sizes)))
    return build_table([f"{i:012d}" for i in range(n)], codes, {}).tokens


def table_sizes(table: TokenTable) -> list[int]:
    """Codes per level of a token table: from its metadata, else the largest code seen."""
    return table.metadata.get("codebook_sizes") or [int(c) + 1 for c in table.codes.max(0)]


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation of every field over runs (std 0 for a single run), with the
    runs' own values in seed order: systems scored at one seed share their samples, so their
    per-seed differences compare them more sharply than the two means do."""
    out: dict = {"runs": len(runs)}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(runs) > 1 else 0.0,
                    "values": values.tolist()}
    return out


def score_systems(tokens: np.ndarray, sizes: list[int], evaluate: Callable[[np.ndarray, int], dict],
                  *, systems: tuple[str, ...], seed: int, runs: int) -> dict:
    """``evaluate(multitokens (n, k + 1), seed)`` for each system and each of the seeds
    seed … seed + runs - 1 (the random baseline draws new tokens per seed); summaries by system."""
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    return {system: summarise([
        evaluate(tokens if system == "model" else random_multitokens(len(tokens), sizes, s), s)
        for s in range(seed, seed + runs)]) for system in systems}
