"""Model directories: config.json (all settings), model.safetensors, train_log.jsonl,
metrics.json and tokens.parquet. Loading never unpickles and checks the format version."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hrqtok import __version__
from hrqtok.atomic import atomic_dir
from hrqtok.config import ModelConfig, from_dict
from hrqtok.errors import ArtifactError
from hrqtok.hierarchy import Hierarchy, read_hierarchy
from hrqtok.hierarchy_model import HierarchyModel
from hrqtok.model import Tokenizer, build_model
from hrqtok.tables import TokenTable, build_table, read_table, write_table

FORMAT_VERSION = 1
CONFIG, WEIGHTS, LOG, METRICS, TOKENS = (
    "config.json", "model.safetensors", "train_log.jsonl", "metrics.json", "tokens.parquet")
NODES, PAIRS = "nodes.parquet", "pairs.parquet"  # WordNet models: nouns, closure and split
REQUIRED = (CONFIG, WEIGHTS)
ITEMS, WORDNET = "items", "wordnet"  # config["kind"]: what a model was fitted on


@dataclass
class ModelDir:
    path: Path
    model: Tokenizer | HierarchyModel
    config: dict  # the whole config.json
    model_config: ModelConfig

    @property
    def fingerprint(self) -> str:
        return self.config["fingerprint"]

    @property
    def kind(self) -> str:
        return self.config.get("kind", ITEMS)

    def hierarchy(self) -> tuple[Hierarchy, np.ndarray]:
        """A WordNet model's nodes and closure pairs, and the mask of held-out pairs."""
        if self.kind != WORDNET:
            raise ArtifactError(f"{self.path}: not a WordNet model (fit with `hrqtok fit --wordnet`)")
        return read_hierarchy(self.path / NODES, self.path / PAIRS)

    def table(self) -> TokenTable:
        """The fitted items' token table."""
        if not (self.path / TOKENS).exists():
            raise ArtifactError(f"{self.path}: missing {TOKENS}; refit with `hrqtok fit`")
        return read_table(self.path / TOKENS)

    def metrics(self) -> dict:
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.exists() else {}


def versions() -> dict:
    import geoopt

    return {"hrqtok": __version__, "torch": torch.__version__, "geoopt": geoopt.__version__,
            "python": platform.python_version()}


def table_metadata(fingerprint: str, model_config: ModelConfig, beam: int = 1) -> dict:
    return {"model_fingerprint": fingerprint, "geometry": model_config.geometry,
            "quantizer": model_config.quantizer,
            "levels": model_config.levels,
            "codebook_sizes": [model_config.codebook_size] * model_config.levels,
            "beam": beam}


def _plain_state(model: Tokenizer | HierarchyModel) -> dict[str, torch.Tensor]:
    # ManifoldParameters are tensor subclasses; safetensors wants plain contiguous tensors.
    return {k: v.detach().as_subclass(torch.Tensor).contiguous()
            for k, v in model.state_dict().items()}


def save_model_dir(path: str | Path, *, model: Tokenizer | HierarchyModel, config: dict,
                   log: list[dict], metrics: dict, ids: list[str], codes,
                   extra: dict[str, Callable[[Path], None]] | None = None) -> ModelDir:
    """Write a whole model directory atomically (temporary sibling, then rename).

    ``config`` holds everything but the format version, versions and fingerprint, which are
    added here. The token table of the fitted items (``ids``, ``codes``) is built and stored.
    ``extra``: file name -> function writing that file (a WordNet model's nodes and pairs).
    """
    with atomic_dir(path) as tmp:
        for name, write in (extra or {}).items():
            write(tmp / name)
        save_file(_plain_state(model), tmp / WEIGHTS, metadata={"format_version": str(FORMAT_VERSION)})
        fingerprint = hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest()[:16]
        full = {"format_version": FORMAT_VERSION, "fingerprint": fingerprint, **config,
                "versions": versions()}
        (tmp / CONFIG).write_text(json.dumps(full, indent=2) + "\n")
        (tmp / LOG).write_text("".join(json.dumps(row) + "\n" for row in log))
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
        table = build_table(ids, codes, table_metadata(fingerprint, model.config))
        write_table(table, str(tmp / TOKENS))
    return ModelDir(Path(path), model, full, model.config)


def load_model_dir(path: str | Path) -> ModelDir:
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no model directory here; create one with `hrqtok fit` "
                            "or name it with --model DIR")
    missing = [name for name in REQUIRED if not (path / name).exists()]
    if missing:
        raise ArtifactError(f"{path}: model directory is missing {', '.join(missing)}; "
                            "refit with `hrqtok fit`")
    try:
        config = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path / CONFIG}: malformed JSON ({e.msg} at line {e.lineno})") from None
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: model format version {version} (hrqtok {config.get('versions', {}).get('hrqtok', '?')}); "
            f"this hrqtok {__version__} reads version {FORMAT_VERSION}; refit with `hrqtok fit`")
    try:
        model_config = from_dict(ModelConfig, config["model"])
        if config.get("kind", ITEMS) == WORDNET:
            model = HierarchyModel(model_config, int(config["hierarchy"]["nodes"]))
        else:
            model = build_model(model_config)
        model.load_state_dict(load_file(path / WEIGHTS), strict=True)
    except (KeyError, ValueError, RuntimeError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArtifactError(f"{path}: model files do not match its config ({first})") from None
    model.eval()
    return ModelDir(path, model, config, model_config)
