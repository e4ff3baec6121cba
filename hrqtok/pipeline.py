"""One library function per command: fit, encode, decode, inspect. The CLI only parses options
and renders what these return; they never print."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch

from hrqtok.atomic import is_special
from hrqtok.config import ModelConfig
from hrqtok.devices import resolve_device
from hrqtok.engines import RaySettings, work_chunks, work_device
from hrqtok.engines.work import EmbedWork
from hrqtok.errors import HrqtokError, InputError, OptionError
from hrqtok.fit.fitted import Fitted, fit_item_vectors, fit_wordnet_nouns
from hrqtok.fit.options import FitOptions
from hrqtok.metrics.quality import (
    QualityLimits,
    check_limits,
    quality_report,
    quality_warnings,
)
from hrqtok.metrics.reports import codebook_report, table_report, vector_report
from hrqtok.sources.datasets import input_files
from hrqtok.sources.embed_settings import EmbedSettings, make_embedder
from hrqtok.sources.embedder import (
    EmbeddingCache,
    ProgressFn,
    embed_texts,
    embedding_cache_path,
)
from hrqtok.sources.items import IdRegister, ItemFields, Items, read_items
from hrqtok.sources.records import count_records
from hrqtok.store.model_dir import (
    WORDNET,
    ModelDir,
    check_model_target,
    load_model_dir,
    save_model_dir,
    table_metadata,
)
from hrqtok.store.tables import TokenTable, build_table

log = logging.getLogger("hrqtok")  # warnings; the CLI prints each as one `warning:` line


def embed_with(texts: list[str], settings: EmbedSettings, *, device: str = "auto",
               progress: ProgressFn | None = None) -> np.ndarray:
    """Embeddings (n, dim) float32 of ``texts`` through the on-disk cache."""
    embedder = make_embedder(settings, device)
    cache = EmbeddingCache()
    try:
        return embed_texts(texts, embedder, cache=cache, progress=progress)
    finally:
        cache.close()


def embed_items(source: str, out: str | Path, *, fields: ItemFields = ItemFields(),
                fmt: str | None = None, embed: EmbedSettings = EmbedSettings(),
                chunk_size: int = 4096, device: str = "auto", engine: RaySettings | None = None,
                progress: ProgressFn | None = None) -> dict:
    """Embed the items' texts into a vector table at ``out`` (Parquet: id, embedding; a file, or
    a folder of part files when ``out`` ends in ``/``; local or a URI), a chunk at a time, so
    memory does not grow with the input. ``source``: a file, ``-``, or a folder
    of Parquet files. Every vector also goes to the embedding cache as it is made: a run that
    is stopped leaves no file, and the next run takes those vectors from the cache.
    ``engine``: embed on the actors of a Ray cluster (``engines.ray_data``); the file is the
    same. Returns a summary."""
    from hrqtok.store.vectors import vector_output

    device, gpu = work_device(device, engine)
    # names the model; loads it on first use (a slow first load reports to progress)
    embedder = make_embedder(embed, device, None if engine else progress)
    work = EmbedWork(partial(make_embedder, embed), embedding_cache_path(), device,
                     embedder=embedder)
    files = input_files(source)
    counts = [count_records(file, fmt) for file in files]
    total = None if None in counts else sum(counts)
    seen = IdRegister(fields.id_field)
    with vector_output(str(out), embedder.identity) as writer:
        for chunk in work_chunks(files, fmt, fields, work, chunk_rows=chunk_size,
                                 engine=engine, total=total, gpu=gpu):
            seen.add_all(chunk.ids, chunk.source, chunk.lines)
            writer.write(chunk.ids, chunk.values)
            if progress:
                progress("embed", writer.rows, max(total or 0, writer.rows), None)
    if progress:  # the line count was an upper bound
        progress("embed", writer.rows, writer.rows, None)
    return {"items": writer.rows, "dim": writer.dim, "embedder": embedder.identity,
            "out": str(out)}


def item_vectors(items: Items, settings: EmbedSettings, *, expected_dim: int | None = None,
                 model_path: Path | None = None, device: str = "auto",
                 progress: ProgressFn | None = None) -> np.ndarray:
    """The items' vectors: given ones, or embeddings through the on-disk cache."""
    if items.vectors is not None:
        vectors = items.vectors
    else:
        vectors = embed_with(items.texts, settings, device=device, progress=progress)
    if expected_dim is not None and vectors.shape[1] != expected_dim:
        raise InputError(
            f"vectors have {vectors.shape[1]} dimensions but the model at {model_path} was "
            f"fitted on {expected_dim}; use the same embedder or --embedding-field as at fit",
            source=items.source, line=items.lines[0])
    return vectors


def fit_items(source: str, *, model_dir: str | Path, options: FitOptions = FitOptions(),
              fields: ItemFields = ItemFields(), fmt: str | None = None,
              embed: EmbedSettings = EmbedSettings(), force: bool = False,
              limits: QualityLimits = QualityLimits(), sample: int | None = None,
              device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Read items, embed them, fit the model ``options`` describe, write the model directory.
    Returns the metrics written to metrics.json. ``force``: replace an existing model at
    ``model_dir`` (anything else there is always refused, before any work). ``sample``: fit
    on a uniform sample of that many items, drawn with the fit's seed (only they are
    embedded; the token table is theirs, and `encode` tokenizes the rest). ``device``:
    where embedding and training run (``hrqtok.devices``)."""
    check_model_target(model_dir, force=force, inputs=(source,))
    device = resolve_device(device)
    items = read_items(source, fields, fmt=fmt, sample=sample, seed=options.seed)
    vectors = item_vectors(items, embed, device=device, progress=progress)
    model_config, train_config = options.configs(input_dim=int(vectors.shape[1]), items=len(items))
    fitted = fit_item_vectors(vectors, items.ids, model_config, train_config,
                              inputs=input_record(fields, embed), device=device,
                              progress=progress)
    if sample is not None:  # in metrics.json and config.json: both hold this summary
        fitted.metrics["fit"]["sample"] = {"size": sample, "items_read": items.read}
    quality_gate(fitted.metrics["table"], limits, where=str(model_dir))
    save_fitted(model_dir, fitted, force=force)
    return fitted.metrics


def quality_gate(report: dict, limits: QualityLimits, *, where: str) -> None:
    """The quality gate: warnings on the `hrqtok` logger, and limits that stop a command before
    it writes anything."""
    for warning in quality_warnings(report):
        log.warning(warning)
    check_limits(report, limits, where=where)


def input_record(fields: ItemFields, embed: EmbedSettings | None) -> dict:
    """config.json's record of how items were read and embedded (reused by encode)."""
    return {"input": {"id_field": fields.id_field, "text_fields": list(fields.text_fields),
                      "embedding_field": fields.embedding_field},
            "embedder": None if fields.embedding_field or embed is None else embed.record()}


def save_fitted(model_dir: str | Path, fitted: Fitted, *, force: bool = False) -> ModelDir:
    return save_model_dir(model_dir, model=fitted.model, config=fitted.config, log=fitted.log,
                          metrics=fitted.metrics, table=fitted.table, extra=fitted.extra,
                          force=force)


def fit_wordnet(*, model_dir: str | Path, options: FitOptions = FitOptions(wordnet=True),
                root: str | None = None, force: bool = False,
                limits: QualityLimits = QualityLimits(), device: str = "cpu",
                progress: ProgressFn | None = None) -> dict:
    """Train node embeddings and (H)RQ codebooks on the WordNet noun closure (all nouns, or
    the subtree under ``root``); write the model directory with the nouns, the split pairs and
    every noun's multitoken. Returns the metrics written to metrics.json. It runs on the CPU:
    ``device`` "auto" means the CPU here, and a CUDA device is refused."""
    from hrqtok.sources.wordnet import load_nouns

    if device != "auto" and resolve_device(device).type != "cpu":
        raise OptionError("--device", "the WordNet fit runs on the CPU only (its per-batch "
                                      "sparse updates are not ported to CUDA); use --device cpu")
    check_model_target(model_dir, force=force)
    nouns = load_nouns(root)
    model_config, train_config = options.configs(input_dim=0, items=len(nouns))
    fitted = fit_wordnet_nouns(nouns, model_config, train_config, root=root, progress=progress)
    quality_gate(fitted.metrics["table"], limits, where=str(model_dir))
    save_fitted(model_dir, fitted, force=force)
    return fitted.metrics


def refuse_wordnet_items(loaded: ModelDir, source: str | None) -> None:
    if source is not None and loaded.kind == WORDNET:
        raise HrqtokError(f"{loaded.path} is a WordNet model: it has multitokens for its own "
                          "nouns only; leave out ITEMS")


def fields_for(loaded: ModelDir, fields: ItemFields | None) -> ItemFields:
    """Input fields as given, else as stored at fit time."""
    if fields is not None:
        return fields
    saved = loaded.config.get("input", {})
    return ItemFields(saved.get("id_field", "id"), tuple(saved.get("text_fields", ["text"])),
                      saved.get("embedding_field"))


def embed_settings_for(loaded: ModelDir, embed: EmbedSettings | None) -> EmbedSettings:
    if embed is not None:
        return embed
    return EmbedSettings.from_record(loaded.config.get("embedder") or {})


def encode_items(model_dir: str | Path, source: str | None = None, *, fields: ItemFields | None = None,
                 fmt: str | None = None, embed: EmbedSettings | None = None,
                 existing: str | Path | None = None, existing_other_model: bool = False,
                 beam: int = 1, limits: QualityLimits = QualityLimits(), device: str = "auto",
                 progress: ProgressFn | None = None) -> TokenTable:
    """Token table of ``source`` items, or of the fitted items when ``source`` is None.

    ``existing``: an earlier table whose ids keep their multitokens (see tables.build_table);
    it must come from this model unless ``existing_other_model``.
    ``beam`` > 1: beam search over residual code paths instead of greedy codes.
    """
    device = resolve_device(device)
    loaded = load_model_dir(model_dir)
    refuse_wordnet_items(loaded, source)
    check_beam(loaded.model_config, beam, loaded.config)
    old = loaded.read_table(existing, other_model=existing_other_model) if existing else None
    if source is None:
        fitted = loaded.table()
        if beam > 1 and loaded.kind != WORDNET:
            raise HrqtokError(f"{loaded.path} keeps codes, not vectors, of its fitted items: give "
                              "ITEMS to encode them with --beam")
        if old is None and beam == 1:
            if limits != QualityLimits():  # the fitted table was gated at fit: limits only
                check_limits(table_report(fitted, loaded.model_config.codebook_size), limits,
                             where=str(loaded.path))
            return fitted
        # a WordNet model holds its nouns' embeddings, in the order of its table
        ids, codes = fitted.ids, (fitted.codes if beam == 1 else loaded.model.encode(beam=beam).numpy())
    else:
        items = read_items(source, fields_for(loaded, fields), fmt=fmt)
        vectors = item_vectors(items, embed_settings_for(loaded, embed),
                               expected_dim=loaded.model_config.input_dim,
                               model_path=loaded.path, device=device, progress=progress)
        loaded.model.to(device)
        ids, codes = items.ids, loaded.model.encode(torch.from_numpy(vectors), beam=beam).numpy()
    table = build_table(ids, codes, table_metadata(loaded.fingerprint, loaded.model_config, beam), old)
    report = table_report(table, loaded.model_config.codebook_size)
    if source is None:  # the fitted items' table was gated at fit: only limits apply
        check_limits(report, limits, where=str(loaded.path))
    else:
        quality_gate(report, limits, where=str(source))
    return table


# WordNet phases after which a model's embeddings no longer give its stored multitokens:
# train-config field -> what it did
BEAM_REFUSALS = {"tune_epochs": "codebooks were tuned to its multitokens",
                 "release_epochs": "embeddings trained on after its multitokens were fixed"}


def check_beam(config: ModelConfig, beam: int, saved: dict | None = None) -> None:
    """Beam search ranks each item's own code paths; a balanced model assigns codes over all
    the items encoded together, which no per-item search keeps. A WordNet model whose
    codebooks were tuned to its fixed multitokens (config.json ``saved``) has code points that
    no longer approximate its nodes' embeddings, and one whose embeddings trained on after the
    multitokens were fixed (``release_epochs``) no longer has the embeddings they were chosen
    from, so a search would not be meaningful."""
    if beam > 1 and config.balance != "none":
        raise OptionError("--beam", f"this model assigns codes balanced ({config.balance}) over "
                                    "the items encoded together; beam search cannot keep that: "
                                    "leave out --beam")
    trained = (saved or {}).get("train", {})
    for phase, why in BEAM_REFUSALS.items():
        if beam > 1 and trained.get(phase, 0) > 0:
            raise OptionError("--beam", f"this WordNet model's {why} (--{phase.replace('_', '-')}"
                                        "), so a search over them would not give its stored "
                                        "multitokens: leave out --beam (a WordNet model searched "
                                        "by beam needs --tune-epochs 0 --release-epochs 0)")


def decode_tokens(model_dir: str | Path, multitokens: list[list[int]], *,
                  table: str | Path | None = None, vectors: bool = False,
                  where: list[str] | None = None) -> dict:
    """Multitokens -> item ids (None when no item has it) and optionally decoder vectors.

    A multitoken has k codes and the disambiguation token; k codes alone mean d = 0; any other
    length is an InputError naming ``where[i]`` (its file and line) when given. Returns
    {"results": [{"tokens", "id"[, "vector"]}], "invalid": count}.
    """
    loaded = load_model_dir(model_dir)
    k, size = loaded.model_config.levels, loaded.model_config.codebook_size
    for number, tokens in enumerate(multitokens, start=1):
        if len(tokens) not in (k, k + 1):
            raise InputError(f"{len(tokens)} tokens, but {loaded.path} makes {k} codes + 1 "
                             f"disambiguation token (give {k} or {k + 1})",
                             source=where[number - 1] if where else f"multitoken {number}")
    found = (loaded.read_table(table) if table else loaded.table()).ids_of(multitokens, k)
    results = [{"tokens": list(tokens), "id": item_id}
               for tokens, item_id in zip(multitokens, found)]
    invalid = sum(item_id is None for item_id in found)
    if vectors:
        for row in results:
            codes = row["tokens"][:k]
            ok = len(codes) == k and all(0 <= t < size for t in codes)
            row["vector"] = (
                loaded.model.decode_codes(torch.tensor([codes])).squeeze(0).tolist() if ok else None)
    return {"results": results, "invalid": invalid}


def inspect_model(model_dir: str | Path, source: str | None = None, *,
                  fields: ItemFields | None = None, fmt: str | None = None,
                  embed: EmbedSettings | None = None, table: str | Path | None = None,
                  prefix: list[int] | None = None, plot: str | Path | None = None,
                  device: str = "auto", progress: ProgressFn | None = None) -> dict:
    """The inspect report: the fitted items' (or ``source`` items') codes, geometry and
    reconstruction, the codebooks, the quality gate's verdict and the training summary.
    ``prefix``: also list the items whose multitokens start with these tokens. ``plot``: also
    draw the report's figure there (``metrics.plots``)."""
    device = resolve_device(device)
    loaded = load_model_dir(model_dir)
    refuse_wordnet_items(loaded, source)
    cfg = loaded.model_config
    metrics = loaded.metrics()
    if source is not None:
        item_fields = fields_for(loaded, fields)
        items = read_items(source, item_fields, fmt=fmt)
        vectors = item_vectors(items, embed_settings_for(loaded, embed), expected_dim=cfg.input_dim,
                               model_path=loaded.path, device=device, progress=progress)
        codes = loaded.model.to(device).encode(torch.from_numpy(vectors)).numpy()
        tokens = build_table(items.ids, codes, {})
        vector_stats = vector_report(loaded.model, vectors)
        loaded.model.cpu()  # the codebook report and the plot read it
        texts = _texts_for_prefix(items, item_fields, source, fmt) if prefix is not None else {}
    else:
        tokens = loaded.read_table(table) if table else loaded.table()
        vector_stats = metrics.get("vectors")
        texts = {}
    report = table_report(tokens, cfg.codebook_size)
    if plot is not None:
        from hrqtok.metrics.plots import plot_report

        report["plot"] = plot_report(loaded, tokens, plot)
    extra = {"prefix": prefix_items(tokens, prefix, texts)} if prefix is not None else {}
    return inspect_report(loaded, report, vector_stats, extra)


def inspect_report(loaded: ModelDir, report: dict, vector_stats: dict | None,
                   extra: dict | None = None) -> dict:
    """The inspect report around a table report and vector statistics (``extra``: the
    --prefix listing)."""
    cfg = loaded.model_config
    return {
        "model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint, "kind": loaded.kind,
                  **{k: getattr(cfg, k) for k in ("quantizer", "geometry", "levels", "codebook_size",
                                                  "latent_dim", "curvature", "input_dim")},
                  "fit": loaded.config.get("fit", {})},
        **report,
        "quality": quality_report(report),
        **(extra or {}),
        "codebooks": codebook_report(loaded.model),
        "vectors": vector_stats,
        **({"hierarchy": loaded.metrics().get("hierarchy")} if loaded.kind == WORDNET else {}),
    }


def _texts_for_prefix(items: Items, fields: ItemFields, source: str,
                      fmt: str | None) -> dict[str, str]:
    """Item texts to show beside their ids: the items' own, or, for items given as vectors,
    the file's text field read once more when there is one (not from stdin or a pipe)."""
    if items.texts is not None:
        return dict(zip(items.ids, items.texts))
    if source == "-" or is_special(source):
        return {}
    try:
        texts = read_items(source, ItemFields(fields.id_field, fields.text_fields), fmt=fmt)
    except InputError:
        return {}
    return dict(zip(texts.ids, texts.texts))


def prefix_items(table: TokenTable, prefix: list[int], texts: dict[str, str]) -> dict:
    """The items whose multitokens start with ``prefix``, with their texts when known."""
    width = table.tokens.shape[1]
    if not 1 <= len(prefix) <= width:
        raise OptionError("--prefix", f"give 1 to {width} tokens, got {len(prefix)}")
    rows = np.flatnonzero((table.tokens[:, :len(prefix)] == np.asarray(prefix)).all(axis=1))
    return {"tokens": list(prefix), "count": int(len(rows)),
            "items": [{"id": table.ids[i], "tokens": table.tokens[i].tolist(),
                       **({"text": texts[table.ids[i]]} if table.ids[i] in texts else {})}
                      for i in rows]}
