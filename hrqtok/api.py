"""The Python API: ``Tokenizer`` (fit, fit_texts, fit_wordnet, encode, encode_texts, decode,
save, load), minbpe-style.

    import hrqtok
    tok = hrqtok.Tokenizer.fit(vectors, quantizer="hrq", levels=3, codebook_size=256, seed=0)
    table = tok.encode(vectors, ids=ids)     # a TokenTable: ids + multitokens (k codes + 1)
    tok.decode(table.tokens)                 # ids; vectors=True for reconstructions
    tok.save("model-dir"); tok = hrqtok.Tokenizer.load("model-dir")

Keyword arguments are named like the `hrqtok fit` options (``latent_dim``, ``epochs``,
``curvature``, ``tau_max``, …) and mean the same; a saved Tokenizer is a model directory the
CLI reads, and a model directory the CLI wrote loads here.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrqtok.config import HierarchyTrainConfig, ModelConfig, TrainConfig
from hrqtok.devices import resolve_device
from hrqtok.errors import ArtifactError, InputError
from hrqtok.fit.fitted import Fitted, fit_item_vectors, fit_wordnet_nouns
from hrqtok.fit.items import ProgressFn
from hrqtok.fit.options import TRAIN_FIELDS, FitOptions
from hrqtok.sources.arrays import as_ids, as_vectors
from hrqtok.sources.items import ItemFields
from hrqtok.sources.packaged import DEFAULT_EMBEDDER
from hrqtok.store.model_dir import (
    WORDNET,
    ModelDir,
    fingerprint_of,
    load_model_dir,
    table_metadata,
    weights_bytes,
)
from hrqtok.store.tables import TokenTable, build_table, read_table

MODEL_OPTIONS = ("quantizer", "geometry", "levels", "codebook_size", "latent_dim", "hidden_dims",
                 "curvature", "commitment", "balance", "standardise", "code_point", "seed")
_OPTION_OF = {config_field: option for option, config_field in TRAIN_FIELDS.items()}
# training options by CLI name (tau_max for TrainConfig.temperature_max, …); each mode takes its own
TRAIN_OPTIONS = sorted({_OPTION_OF.get(f.name, f.name) for cls in (TrainConfig, HierarchyTrainConfig)
                        for f in dataclass_fields(cls) if f.name != "seed"})


def _options(wordnet: bool, given: dict[str, Any]) -> FitOptions:
    """FitOptions from keyword arguments; an unknown keyword is a TypeError, as in Python."""
    unknown = sorted(set(given) - set(MODEL_OPTIONS) - set(TRAIN_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}; fit options are "
                        f"{', '.join(MODEL_OPTIONS + tuple(TRAIN_OPTIONS))}")
    model = {k: v for k, v in given.items() if k in MODEL_OPTIONS}
    if model.get("hidden_dims") is not None:
        model["hidden_dims"] = tuple(int(d) for d in model["hidden_dims"])
    train = {k: v for k, v in given.items() if k in TRAIN_OPTIONS}
    return FitOptions(wordnet=wordnet, **model, train=train)


class Tokenizer:
    """A fitted tokenizer: its model, its config and the multitokens of the items it was
    fitted on. Build one with ``fit``, ``fit_texts``, ``fit_wordnet`` or ``load``."""

    def __init__(self, model: torch.nn.Module, config: dict, table: TokenTable, *,
                 metrics: dict | None = None, log: list[dict] | None = None,
                 path: Path | None = None, fitted: Fitted | None = None):
        self.model = model  # ItemModel (items) or HierarchyModel (WordNet), in eval mode
        self.config = config  # config.json's content
        self.model_config: ModelConfig = model.config
        self.table = table  # the fitted items' TokenTable
        self.metrics = metrics or {}
        self.log = log or []
        self.path = path  # where it was saved or loaded from
        self._fitted = fitted  # kept until saved: the files a model directory needs
        self._fingerprint: str | None = config.get("fingerprint")

    def __repr__(self) -> str:
        cfg = self.model_config
        return (f"Tokenizer({cfg.quantizer}, {cfg.levels} × {cfg.codebook_size} codes, latent "
                f"{cfg.latent_dim}, {len(self.table)} {self.kind}{' at ' + str(self.path) if self.path else ''})")

    # --- building ------------------------------------------------------------------------------
    @classmethod
    def fit(cls, vectors: Any, *, ids: Any = None, column: str | None = None,
            device: str = "auto", progress: ProgressFn | None = None,
            **options: Any) -> Tokenizer:
        """Fit on ``vectors`` (n, dim): a numpy array or torch tensor of any float dtype, a
        list of lists, or a pyarrow / pandas / polars table (its "id" column gives the ids;
        ``column`` names the vector column when there are several). ``options`` are the
        `hrqtok fit` options by name: quantizer="hrq", levels=3, codebook_size=256,
        latent_dim=32, epochs=200, seed=0, … Ids default to "0" … "n-1". ``device``: where
        training runs ("auto": the GPU when torch sees one; the tokenizer comes back on the
        CPU)."""
        device = resolve_device(device)
        x, found = as_vectors(vectors, column=column)
        item_ids = as_ids(ids, len(x), found)
        fit_options = _options(False, options)
        model_config, train_config = fit_options.configs(input_dim=x.shape[1], items=len(x))
        from hrqtok.pipeline import input_record

        # the CLI then reads new items' vectors from this field
        inputs = input_record(ItemFields(embedding_field=column or "embedding"), None)
        return cls._from_fitted(fit_item_vectors(x, item_ids, model_config, train_config,
                                                 inputs=inputs, device=device,
                                                 progress=progress))

    @classmethod
    def fit_texts(cls, texts: list[str], *, ids: Any = None, embedder: str = DEFAULT_EMBEDDER,
                  precision: str = "float32", batch_size: int = 32, device: str = "auto",
                  backend: str = "torch", progress: ProgressFn | None = None,
                  **options: Any) -> Tokenizer:
        """Embed ``texts`` with the sentence model ``embedder`` (the packaged MPNet by default,
        through the embedding cache; ``backend="openvino"`` with ``precision`` "bfloat16" or
        "int8" runs it on OpenVINO), then ``fit`` on the vectors. The saved model remembers
        the embedder, so `hrqtok encode items.jsonl` embeds new items the same way."""
        from hrqtok.pipeline import EmbedSettings, embed_with, input_record

        device = resolve_device(device)
        settings = EmbedSettings(embedder, precision, batch_size, backend)
        x = embed_with(list(texts), settings, device=device, progress=progress)
        item_ids = as_ids(ids, len(x), None)
        model_config, train_config = _options(False, options).configs(input_dim=x.shape[1],
                                                                      items=len(x))
        return cls._from_fitted(fit_item_vectors(
            x, item_ids, model_config, train_config,
            inputs=input_record(ItemFields(), settings), device=device, progress=progress))

    @classmethod
    def fit_wordnet(cls, *, root: str | None = None, progress: ProgressFn | None = None,
                    **options: Any) -> Tokenizer:
        """WordNet mode: embeddings and codebooks of the noun hierarchy (the subtree under
        ``root``, e.g. "mammal.n.01"; all nouns when None), like `hrqtok fit --wordnet`."""
        from hrqtok.sources.wordnet import load_nouns

        fit_options = _options(True, options)
        nouns = load_nouns(root)
        model_config, train_config = fit_options.configs(input_dim=0, items=len(nouns))
        return cls._from_fitted(fit_wordnet_nouns(nouns, model_config, train_config, root=root,
                                                  progress=progress))

    @classmethod
    def _from_fitted(cls, fitted: Fitted) -> Tokenizer:
        return cls(fitted.model, fitted.config, fitted.table, metrics=fitted.metrics,
                   log=fitted.log, fitted=fitted)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """A model directory written by ``save`` or `hrqtok fit`, checked as the CLI checks it."""
        loaded = load_model_dir(path)
        return cls(loaded.model, loaded.config, loaded.table(), metrics=loaded.metrics(),
                   path=loaded.path)

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the model directory (atomically). ``force`` replaces a model already there;
        anything else at ``path`` is refused."""
        from hrqtok.pipeline import save_fitted

        if self._fitted is None:
            raise ArtifactError(f"this tokenizer is saved at {self.path} already; copy that folder "
                                "to keep another copy")
        saved = save_fitted(path, self._fitted, force=force)
        self.config, self.path, self._fitted = saved.config, saved.path, None
        self._fingerprint = saved.fingerprint
        self.table = saved.table()
        return saved.path

    # --- what it holds -------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """"items", or "wordnet" for a model of the WordNet nouns."""
        return self.config.get("kind", "items")

    @property
    def warnings(self) -> list[str]:
        """The quality gate's warnings about the fitted items' tokens (collapsed levels,
        frequent collisions); empty when there are none."""
        return list(self.metrics.get("quality", {}).get("warnings", []))

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint, as stored in config.json and every token table."""
        if self._fingerprint is None:  # not saved yet: what saving will store
            self._fingerprint = fingerprint_of(weights_bytes(self.model))
        return self._fingerprint

    def _view(self) -> ModelDir:
        return ModelDir(self.path or Path("<unsaved tokenizer>"), self.model,
                        {**self.config, "fingerprint": self.fingerprint}, self.model_config)

    # --- encoding and decoding -----------------------------------------------------------------
    def encode(self, vectors: Any = None, *, ids: Any = None, column: str | None = None,
               beam: int = 1, existing: TokenTable | str | Path | None = None,
               existing_other_model: bool = False, device: str = "auto") -> TokenTable:
        """Multitokens of ``vectors`` (any container ``fit`` takes), or of the fitted items
        when None: a TokenTable with ``ids`` and ``tokens`` (n, k + 1) int32, the last token
        disambiguating items that share k codes. ``beam`` > 1: beam search over code paths.
        ``existing``: an earlier table (or its file) whose ids keep their multitokens.
        ``device``: where the vectors are encoded (the tokenizer stays on the CPU)."""
        from hrqtok.pipeline import check_beam

        device = resolve_device(device)
        check_beam(self.model_config, beam, self.config)
        if isinstance(existing, (str, Path)):
            existing = self._view().read_table(existing, other_model=existing_other_model)
        elif existing is not None:
            existing = self._view().check_table(existing, "existing table",
                                                other_model=existing_other_model)
        if vectors is None:
            if self.kind != WORDNET and beam > 1:
                raise InputError("a tokenizer keeps codes, not vectors, of its fitted items: "
                                 "pass the vectors to encode them with beam search")
            if existing is None and beam == 1:
                return self.table.with_metadata(table_metadata(self.fingerprint, self.model_config))
            ids_, codes = self.table.ids, (self.table.codes if beam == 1
                                           else self.model.encode(beam=beam).numpy())
        else:
            if self.kind == WORDNET:
                raise InputError("a WordNet tokenizer has multitokens for its own nouns only: "
                                 "call encode() without vectors")
            x, found = as_vectors(vectors, column=column)
            if x.shape[1] != self.model_config.input_dim:
                raise InputError(f"vectors have {x.shape[1]} dimensions but this tokenizer was "
                                 f"fitted on {self.model_config.input_dim}", source="vectors")
            ids_ = as_ids(ids, len(x), found)
            try:
                codes = self.model.to(device).encode(torch.from_numpy(x), beam=beam).numpy()
            finally:
                self.model.cpu()
        return build_table(ids_, codes, table_metadata(self.fingerprint, self.model_config, beam),
                           existing)

    def encode_texts(self, texts: list[str], *, ids: Any = None, beam: int = 1,
                     device: str = "auto", progress: ProgressFn | None = None) -> TokenTable:
        """Embed ``texts`` with the embedder this tokenizer was fitted with, then ``encode``."""
        from hrqtok.pipeline import EmbedSettings, embed_with

        record = self.config.get("embedder")
        if not record:
            raise InputError("this tokenizer was fitted on given vectors, not texts: embed "
                             "them yourself and call encode()")
        x = embed_with(list(texts), EmbedSettings.from_record(record), device=device,
                       progress=progress)
        return self.encode(x, ids=ids, beam=beam, device=device)

    def decode(self, tokens: Any, *, vectors: bool = False,
               table: TokenTable | str | Path | None = None) -> list[str | None] | np.ndarray:
        """Multitokens (n, k + 1) — or (n, k), meaning disambiguation token 0 — to the ids of
        the items holding them (None where none does), looked up in ``table`` (default: the
        fitted items'). ``vectors=True``: the reconstructions (n, input_dim) of their k codes
        instead (for a WordNet tokenizer, the quantized points)."""
        if isinstance(tokens, TokenTable):
            tokens = tokens.tokens
        rows = np.asarray(tokens.detach().cpu() if isinstance(tokens, torch.Tensor) else tokens)
        k, size = self.model_config.levels, self.model_config.codebook_size
        if rows.ndim != 2 or rows.shape[1] not in (k, k + 1) or rows.dtype.kind not in "iu":
            raise InputError(f"expected integer multitokens of {k} or {k + 1} tokens per row, got "
                             f"shape {rows.shape} of {rows.dtype}", source="tokens")
        if vectors:
            codes = rows[:, :k].astype(np.int64)
            if len(codes) and (codes.min() < 0 or codes.max() >= size):
                raise InputError(f"codes must lie in 0..{size - 1}", source="tokens")
            return self.model.decode_codes(torch.from_numpy(codes)).numpy()
        if isinstance(table, (str, Path)):
            table = self._view().read_table(table)
        return (table or self.table).ids_of(rows.tolist(), k)

    def reconstruct(self, vectors: Any, *, column: str | None = None) -> np.ndarray:
        """``vectors`` through their codes: decode(encode(vectors).tokens, vectors=True)."""
        return self.decode(self.encode(vectors, column=column).tokens, vectors=True)


def load(path: str | Path) -> Tokenizer:
    """Shorthand for ``Tokenizer.load``."""
    return Tokenizer.load(path)


def read_tokens(path: str | Path) -> TokenTable:
    """A token table file (Parquet, as `hrqtok encode` writes)."""
    return read_table(path)
