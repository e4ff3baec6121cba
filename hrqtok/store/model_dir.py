"""Model directories: config.json (all settings), model.safetensors, train_log.jsonl,
metrics.json and tokens.parquet.

Loading never unpickles and refuses anything damaged: the weights must match the fingerprint in
config.json and be finite, config.json must be valid as a whole (and match the checksum written
at fit), and a token table must belong to the model it is used with."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from hrqtok import __version__
from hrqtok.atomic import atomic_dir, recover
from hrqtok.config import (
    HierarchyTrainConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
    json_repr,
)
from hrqtok.errors import ArtifactError, OptionError, first_line
from hrqtok.jsonsafe import dumps as json_dumps
from hrqtok.jsonsafe import json_safe
from hrqtok.models.autoencoder import ItemModel, build_model
from hrqtok.models.hierarchy import HierarchyModel
from hrqtok.sources.hierarchy import Hierarchy
from hrqtok.store.hierarchy import read_hierarchy
from hrqtok.store.tables import TokenTable, read_table, write_table
from hrqtok.targets import check_inputs_outside, check_writable_folder, refuse_uri

FORMAT_VERSION = 1
CONFIG, WEIGHTS, LOG, METRICS, TOKENS = (
    "config.json", "model.safetensors", "train_log.jsonl", "metrics.json", "tokens.parquet")
NODES, PAIRS = "nodes.parquet", "pairs.parquet"  # WordNet models: nouns, closure and split
REQUIRED = (CONFIG, WEIGHTS)
MODEL_FILES = frozenset((CONFIG, WEIGHTS, LOG, METRICS, TOKENS, NODES, PAIRS))
ITEMS, WORDNET = "items", "wordnet"  # config["kind"]: what a model was fitted on
KINDS = (ITEMS, WORDNET)
CHECKSUM = "config_sha256"  # of config.json without this key; absent in models before 0.1.1


@dataclass
class ModelDir:
    path: Path
    model: ItemModel | HierarchyModel
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
        return self.check_table(read_table(self.path / TOKENS), self.path / TOKENS)

    def read_table(self, path: str | Path, *, other_model: bool = False) -> TokenTable:
        """A token table checked against this model (see ``check_table``)."""
        return self.check_table(read_table(path), path, other_model=other_model)

    def check_table(self, table: TokenTable, source: str | Path, *,
                    other_model: bool = False) -> TokenTable:
        """Refuse a table of another model (unless ``other_model``), of the wrong width, or
        with codes outside this model's codebooks."""
        k, size = self.model_config.levels, self.model_config.codebook_size
        owner = table.metadata.get("model_fingerprint")
        if not other_model and owner != self.fingerprint:
            raise ArtifactError(
                f"{source}: token table of model {owner or 'unknown'}, but {self.path} is model "
                f"{self.fingerprint}; use that model's tables, or re-encode with this model")
        if table.tokens.shape[1] != k + 1:
            raise ArtifactError(f"{source}: multitokens of {table.tokens.shape[1]} tokens, but "
                                f"{self.path} makes {k} codes + 1 disambiguation token")
        if len(table) and int(table.codes.max(initial=0)) >= size:
            row = int(np.argwhere(table.codes >= size)[0][0])
            raise ArtifactError(f"{source}: row {row + 1} (id {table.ids[row]!r}) has code "
                                f"{int(table.codes[row].max())}, outside this model's {size} codes")
        return table

    def metrics(self) -> dict:
        path = self.path / METRICS
        if not path.exists():
            return {}
        try:
            metrics = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{path}: not valid JSON ({e}); refit with `hrqtok fit`") from None
        if not isinstance(metrics, dict):
            raise ArtifactError(f"{path}: must hold a JSON object; refit with `hrqtok fit`")
        return metrics


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


def _plain_state(model: ItemModel | HierarchyModel) -> dict[str, torch.Tensor]:
    # ManifoldParameters are tensor subclasses; safetensors wants plain contiguous tensors.
    return {k: v.detach().as_subclass(torch.Tensor).contiguous()
            for k, v in model.state_dict().items()}


def check_model_target(path: str | Path, *, force: bool,
                       inputs: tuple[str | Path | None, ...] = ()) -> None:
    """Where ``fit`` may write a model: a new (or empty) folder, or, with ``force``, an
    existing hrqtok model directory. Anything else is refused and left untouched. Checked before
    a fit starts and again before its result takes the place of the old one. A model directory
    is a local folder: a URI is refused."""
    refuse_uri(path, "--model")
    path = Path(path)
    recover(path)  # a replacement that crashed halfway puts the old model back first
    real = Path(os.path.realpath(path))
    if not os.path.lexists(real):
        check_writable_folder(real, "--model")
        return
    if not real.is_dir():
        raise OptionError("--model", f"{path} is a file, not a model directory; name a new folder")
    entries = sorted(entry.name for entry in real.iterdir())
    if not entries:
        check_writable_folder(real, "--model")
        return
    # a model directory (possibly a damaged one) holds its config and only model files
    if CONFIG not in entries or not set(entries) <= MODEL_FILES:
        foreign = [name for name in entries if name not in MODEL_FILES] or entries
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise OptionError("--model", f"{path} holds files that are not an hrqtok model ({shown}); "
                                     "fit writes only new folders or model directories: name a new folder")
    if not force:
        raise OptionError("--model", f"{path} already holds a model; pass --force to replace it, "
                                     "or name a new folder")
    check_inputs_outside(real, inputs, "--model")
    check_writable_folder(real, "--model")


def config_checksum(config: dict) -> str:
    body = {k: v for k, v in config.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def dumps(value) -> str:
    """JSON for the files of a model directory: never NaN or Infinity."""
    return json_dumps(value, indent=2) + "\n"


def save_model_dir(path: str | Path, *, model: ItemModel | HierarchyModel, config: dict,
                   log: list[dict], metrics: dict, table: TokenTable,
                   extra: dict[str, Callable[[Path], None]] | None = None,
                   force: bool = False) -> ModelDir:
    """Write a whole model directory atomically (temporary sibling, then one swap).

    ``config`` holds everything but the format version, versions, fingerprint and checksum,
    which are added here. The fitted items' token table ``table`` is stored with the model's
    metadata. ``extra``: file name -> function writing that file (a WordNet model's nodes and
    pairs). ``force``: an existing model directory at ``path`` may be replaced.
    """
    check_model_target(path, force=force)
    with atomic_dir(path) as tmp:
        for name, write in (extra or {}).items():
            write(tmp / name)
        weights = weights_bytes(model)
        (tmp / WEIGHTS).write_bytes(weights)
        fingerprint = fingerprint_of(weights)
        full = json_safe({"format_version": FORMAT_VERSION, "fingerprint": fingerprint,
                          **config, "versions": versions()})
        full[CHECKSUM] = config_checksum(full)
        (tmp / CONFIG).write_text(dumps(full))
        (tmp / LOG).write_text("".join(json_dumps(row) + "\n" for row in log))
        (tmp / METRICS).write_text(dumps(metrics))
        table = table.with_metadata(table_metadata(fingerprint, model.config))
        write_table(table, str(tmp / TOKENS))
    return ModelDir(Path(path), model, full, model.config)


def weights_bytes(model: torch.nn.Module) -> bytes:
    """model.safetensors' content for ``model``."""
    return safetensors_bytes(_plain_state(model), metadata={"format_version": str(FORMAT_VERSION)})


def fingerprint_of(weights: bytes) -> str:
    return hashlib.sha256(weights).hexdigest()[:16]


def weights_fingerprint(path: Path) -> str:
    return fingerprint_of(path.read_bytes())


def _read_config(path: Path) -> dict:
    file = path / CONFIG
    try:
        config = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{file}: not UTF-8 text (byte {e.start}); refit with `hrqtok fit`") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{file}: malformed JSON ({e.msg} at line {e.lineno}); refit with "
                            "`hrqtok fit`") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{file}: must hold a JSON object, found {type(config).__name__}")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        made_by = config.get("versions", {}).get("hrqtok", "?") if isinstance(
            config.get("versions"), dict) else "?"
        raise ArtifactError(
            f"{path}: model format version {json_repr(version)} (hrqtok {made_by}); this hrqtok "
            f"{__version__} reads version {FORMAT_VERSION}; refit with `hrqtok fit`")
    return config


def _require(config: dict, key: str, check, expected: str, file: Path):
    value = config.get(key)
    if not check(value):
        found = "nothing" if key not in config else json_repr(value)
        raise ArtifactError(f"{file}: key '{key}' must be {expected}, found {found}")
    return value


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value)


def _validate_config(config: dict, file: Path) -> tuple[ModelConfig, str]:
    """The whole config.json: types, ranges, known kind and quantizer. Returns the model
    config and the kind."""
    _require(config, "fingerprint", lambda v: isinstance(v, str) and len(v) == 16 and all(
        ch in "0123456789abcdef" for ch in v), "16 hexadecimal digits", file)
    kind = _require(config, "kind", lambda v: v in KINDS, f"one of {', '.join(KINDS)}",
                    file) if "kind" in config else ITEMS
    train_class = HierarchyTrainConfig if kind == WORDNET else TrainConfig
    try:
        model = config.get("model")
        if isinstance(model, dict) and "standardise" not in model:
            model = {**model, "standardise": False}  # fitted before inputs were standardised
        if isinstance(model, dict) and "code_point" not in model:
            model = {**model, "code_point": "hyperplane"}  # HyperVQ before the mirror point
        model_config = from_dict(ModelConfig, model, where="model")
        if "train" in config:
            from_dict(train_class, config["train"], where="train")
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{file}: {e}") from None
    if kind == WORDNET:
        hierarchy = _require(config, "hierarchy", lambda v: isinstance(v, dict), "an object", file)
        _require(hierarchy, "nodes", lambda v: isinstance(v, int) and not isinstance(v, bool)
                 and v >= 1, "a positive integer", file)
    else:
        fields = _require(config, "input", lambda v: isinstance(v, dict), "an object", file)
        _require(fields, "id_field", _is_text, "a field name", file)
        _require(fields, "text_fields", lambda v: isinstance(v, list) and v and all(
            map(_is_text, v)), "a list of field names", file)
        _require(fields, "embedding_field", lambda v: v is None or _is_text(v),
                 "a field name or null", file)
        from hrqtok.sources.embedder import BACKENDS, PRECISIONS, TORCH_PRECISIONS

        embedder = config.get("embedder")
        if embedder is not None:
            _require(config, "embedder", lambda v: isinstance(v, dict), "an object or null", file)
            _require(embedder, "spec", _is_text, "an embedder name or folder", file)
            backend = embedder.get("backend", "torch")
            if "backend" in embedder:
                _require(embedder, "backend", lambda v: v in BACKENDS,
                         f"one of {', '.join(BACKENDS)}", file)
            usable = PRECISIONS if backend == "openvino" else TORCH_PRECISIONS
            _require(embedder, "precision", lambda v: v in usable,
                     f"one of {', '.join(usable)}", file)
    if CHECKSUM in config and config[CHECKSUM] != config_checksum(config):
        raise ArtifactError(f"{file}: changed since `hrqtok fit` wrote it (its checksum does not "
                            "match); restore it or refit")
    return model_config, kind


def _load_weights(path: Path, fingerprint: str) -> dict[str, torch.Tensor]:
    file = path / WEIGHTS
    if weights_fingerprint(file) != fingerprint:
        raise ArtifactError(f"{file}: does not match the fingerprint {fingerprint} in {CONFIG} "
                            "(damaged or replaced); restore the model directory or refit")
    try:
        state = load_file(file)
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise ArtifactError(f"{file}: not a readable safetensors file ({first_line(e)}); "
                            "refit") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"{file}: tensor '{name}' holds NaN or infinite values; refit")
    return state


def _check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks tensor '{missing[0]}'" if missing else f"has an unknown tensor '{extra[0]}'"
        raise ArtifactError(f"{path / WEIGHTS}: {what} for the model {CONFIG} describes; refit")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ArtifactError(
                f"{path / WEIGHTS}: tensor '{name}' has shape {list(state[name].shape)}, but "
                f"{CONFIG}'s model settings make it {list(shape)}; refit")


def load_model_dir(path: str | Path) -> ModelDir:
    refuse_uri(path, "--model")  # a model directory is a local folder
    path = Path(path)
    recover(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no model directory here; create one with `hrqtok fit` "
                            "or name it with --model DIR")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"{path}: model directory is missing {', '.join(missing)}; "
                            "refit with `hrqtok fit`")
    config = _read_config(path)
    model_config, kind = _validate_config(config, path / CONFIG)
    state = _load_weights(path, config["fingerprint"])
    if kind == WORDNET:
        model = HierarchyModel(model_config, int(config["hierarchy"]["nodes"]))
    else:
        model = build_model(model_config)
    _check_shapes(model, state, path)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as e:
        raise ArtifactError(f"{path}: model files do not match its config ({first_line(e)})") from None
    model.eval()
    return ModelDir(path, model, config, model_config)
