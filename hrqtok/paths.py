"""Where hrqtok keeps assembled model weights and the embedding cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$HRQTOK_CACHE, else $XDG_CACHE_HOME/hrqtok, else ~/.cache/hrqtok."""
    if os.environ.get("HRQTOK_CACHE"):
        return Path(os.environ["HRQTOK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hrqtok"
