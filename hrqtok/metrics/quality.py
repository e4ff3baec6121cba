"""The quality gate: whether a token table's codes collapsed or collide, said as warnings with
what to try, and limits that make `fit` and `encode` fail (nothing written) for pipelines.

A level is collapsed when its perplexity exp(H) — the number of equally used codes it amounts
to — falls below ``MIN_PERPLEXITY_SHARE`` of the codes it could use, min(s, items). Collisions
are items whose k codes another item shares; they need the disambiguation token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hrqtok.errors import HrqtokError

MIN_PERPLEXITY_SHARE = 0.1  # below 10 % of the usable codes a level is collapsed
WARN_COLLISION_RATE = 0.1  # above 10 % of items colliding, the tokens hardly identify items
# `--codebook-size auto`: s^k about this many times the catalogue, so that items spread over
# distinct ids, with s a power of two in [AUTO_MIN, AUTO_MAX]
AUTO_ROOM = 8.0
AUTO_MIN, AUTO_MAX = 8, 1024


class QualityError(HrqtokError):
    """A table beyond a limit the user set (--max-collision-rate, --max-disambiguation)."""


@dataclass(frozen=True)
class QualityLimits:
    max_collision_rate: float | None = None  # in [0, 1]; None: no limit
    max_disambiguation: int | None = None  # largest disambiguation vocabulary allowed

    def __post_init__(self) -> None:
        if self.max_collision_rate is not None and not 0 <= self.max_collision_rate <= 1:
            raise ValueError(f"max collision rate must be in [0, 1], got {self.max_collision_rate}")
        if self.max_disambiguation is not None and self.max_disambiguation < 1:
            raise ValueError(f"max disambiguation must be >= 1, got {self.max_disambiguation}")


def quality_warnings(report: dict) -> list[str]:
    """Warnings for a ``table_report``: collapsed levels and frequent collisions, each saying
    what to try."""
    items = report["items"]
    out = []
    for row in report["levels"]:
        usable = min(row["size"], items)
        if items > 1 and usable > 1 and row["perplexity"] < MIN_PERPLEXITY_SHARE * usable:
            out.append(f"level {row['level']} collapsed: perplexity {row['perplexity']:.1f} of "
                       f"{usable} usable codes ({row['used']} used); try a smaller "
                       "--codebook-size or fewer --levels")
    collisions = report["collisions"]
    if collisions["collision_rate"] > WARN_COLLISION_RATE:
        levels = report["levels"]
        capacity = math.prod(row["size"] for row in levels) if levels else 1
        advice = (f"only {capacity:,} distinct ids exist for {items:,} items: raise "
                  "--codebook-size or --levels" if capacity < items else
                  "try a smaller --codebook-size or fewer --levels, or --codebook-size auto")
        out.append(f"{collisions['collision_rate']:.1%} of items share their codes with another "
                   f"(disambiguation vocabulary {collisions['disambiguation_size']}); {advice}")
    return out


def check_limits(report: dict, limits: QualityLimits, *, where: str) -> None:
    """QualityError when ``report`` (a table_report) breaks one of ``limits``."""
    collisions = report["collisions"]
    rate, vocabulary = collisions["collision_rate"], collisions["disambiguation_size"]
    if limits.max_collision_rate is not None and rate > limits.max_collision_rate:
        raise QualityError(f"{where}: {rate:.2%} of items collide, above --max-collision-rate "
                           f"{limits.max_collision_rate:g}; nothing written")
    if limits.max_disambiguation is not None and vocabulary > limits.max_disambiguation:
        raise QualityError(f"{where}: the disambiguation token needs {vocabulary} values, above "
                           f"--max-disambiguation {limits.max_disambiguation}; nothing written")


def auto_codebook_size(items: int, levels: int) -> int:
    """The codebook size `--codebook-size auto` picks: the smallest power of two s with
    s^levels >= AUTO_ROOM × items, within [AUTO_MIN, AUTO_MAX]."""
    wanted = (AUTO_ROOM * max(items, 1)) ** (1 / levels)
    size = 2 ** math.ceil(math.log2(max(wanted, 2)))
    return int(min(max(size, AUTO_MIN), AUTO_MAX))


def depth_note(report: dict) -> str | None:
    """A note when s^k dwarfs the catalogue: prefixes are nearly unique above the last level,
    so the hierarchy the tokens carry is shallow."""
    items, prefixes = report["items"], report["prefixes"]
    for row in prefixes[:-1]:
        if items and row["prefixes"] >= 0.9 * items:
            return (f"{row['prefixes']:,} distinct depth-{row['depth']} prefixes for {items:,} "
                    f"items: s^k dwarfs the catalogue, so the first {row['depth']} tokens "
                    "already tell items apart and the levels after them carry little hierarchy; "
                    "a smaller --codebook-size (or auto) gives a deeper one")
    return None


def quality_report(report: dict) -> dict:
    """What metrics.json and inspect say of a table_report: the warnings and the depth note."""
    return {"warnings": quality_warnings(report), "depth": depth_note(report)}
