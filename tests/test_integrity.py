"""Damaged or mismatched artefacts are refused with one `Error:` line, never used: weights
against their fingerprint, non-finite weights, config.json as a whole, token tables against the
model they are used with."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

from hrqtok.store.model_dir import CHECKSUM, config_checksum, weights_fingerprint
from tests.conftest import TINY_FIT
from tests.test_cli import run


@pytest.fixture(scope="module")
def models(tmp_path_factory, vector_items_module):
    root = tmp_path_factory.mktemp("models")
    for name, seed in (("a", "0"), ("b", "1")):
        result = run("fit", vector_items_module, "--model", root / name, "--embedding-field", "vec",
                     "--seed", seed, *TINY_FIT)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def vector_items_module(tmp_path_factory):
    from tests.conftest import clustered_vectors

    path = tmp_path_factory.mktemp("items") / "items.jsonl"
    path.write_text("".join(json.dumps({"id": f"item{i:03d}", "vec": v.tolist()}) + "\n"
                            for i, v in enumerate(clustered_vectors())))
    return path


@pytest.fixture
def model(tmp_path, models):
    import shutil

    shutil.copytree(models / "a", tmp_path / "m")
    return tmp_path / "m"


def _error(result, code=1):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _rewrite_config(model, change, *, reseal=True):
    config = json.loads((model / "config.json").read_text())
    if reseal:
        config["fingerprint"] = weights_fingerprint(model / "model.safetensors")
    change(config)
    if reseal:
        config[CHECKSUM] = config_checksum(config)
    (model / "config.json").write_text(json.dumps(config))


def test_a_flipped_byte_in_the_weights_is_refused(model):
    data = bytearray((model / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (model / "model.safetensors").write_bytes(bytes(data))
    assert "fingerprint" in _error(run("decode", "1", "2", "0", "--model", model))


def test_non_finite_weights_are_refused_even_with_a_matching_fingerprint(model):
    state = load_file(model / "model.safetensors")
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in state.items()}, model / "model.safetensors")
    _rewrite_config(model, lambda c: None)
    assert "NaN" in _error(run("encode", "--model", model, "--out", "-"))


def test_truncated_weights_are_one_error_line(model):
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 3])
    _rewrite_config(model, lambda c: None)
    assert "safetensors" in _error(run("inspect", "--model", model))


@pytest.mark.parametrize("content, words", [
    (b"[1, 2]", "JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"{", "malformed JSON"),
])
def test_config_that_is_not_a_json_object(model, content, words):
    (model / "config.json").write_bytes(content)
    assert words in _error(run("inspect", "--model", model))


@pytest.mark.parametrize("change, words", [
    (lambda c: c["model"].__setitem__("curvature", "abc"), "model.curvature"),
    (lambda c: c["model"].__setitem__("levels", 2.5), "model.levels"),
    (lambda c: c["model"].__setitem__("quantizer", "vq"), "quantizer"),
    (lambda c: c.__setitem__("kind", "images"), "kind"),
    (lambda c: c["model"].__setitem__("latent_dim", 5), "shape"),
    (lambda c: c["model"].__setitem__("curvature", 1e9), "curvature"),
    (lambda c: c["input"].__setitem__("text_fields", []), "text_fields"),
    (lambda c: c.__setitem__("fingerprint", 7), "fingerprint"),
])
def test_config_is_validated_as_a_whole(model, change, words):
    _rewrite_config(model, change)
    assert words in _error(run("inspect", "--model", model))


def test_a_config_edit_is_caught_by_its_checksum(model):
    _rewrite_config(model, lambda c: c["model"].__setitem__("curvature", 2.0), reseal=False)
    assert "checksum" in _error(run("encode", "--model", model, "--out", "-"))


def test_tables_of_another_model_are_refused(tmp_path, models, vector_items_module):
    other = models / "b" / "tokens.parquet"
    a = models / "a"
    assert "model" in _error(run("decode", "1", "1", "0", "--model", a, "--tokens", other))
    assert "model" in _error(run("inspect", "--model", a, "--tokens", other))
    refused = run("encode", vector_items_module, "--model", a, "--existing", other, "--out", "-")
    assert "token table of model" in _error(refused)
    allowed = run("encode", vector_items_module, "--model", a, "--existing", other,
                  "--existing-other-model", "--out", "-", "-q")
    assert allowed.exit_code == 0
    kept = {json.loads(line)["id"]: json.loads(line)["tokens"] for line in allowed.stdout.splitlines()}
    old = dict(zip(*(pq.read_table(other).column(c).to_pylist() for c in ("id", "tokens"))))
    assert kept == old  # every id kept its earlier multitoken


def _table(path, ids, tokens, meta):
    schema = pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.int32()))],
                       metadata={f"hrqtok.{k}": json.dumps(v) for k, v in meta.items()})
    pq.write_table(pa.Table.from_pydict({"id": ids, "tokens": tokens}, schema=schema), path)


@pytest.mark.parametrize("ids, tokens, words", [
    (["x", "y"], [[1, 2, 0], [1, 2, 1]], "3 tokens"),  # TINY_FIT has 2 levels: width 3 is right
    (["x", "y"], [[1, 0], [2, 0]], "tokens"),
    (["x", "y"], [[1, 99, 0], [1, 2, 0]], "code 99"),
    (["x", "x"], [[1, 2, 0], [1, 2, 1]], "more than once"),
    (["x", None], [[1, 2, 0], [1, 2, 1]], "no id"),
    (["x", "y"], [[1, -2, 0], [1, 2, 0]], "token -2"),
])
def test_damaged_tables_are_refused_everywhere(tmp_path, models, ids, tokens, words):
    a = models / "a"
    fingerprint = json.loads((a / "config.json").read_text())["fingerprint"]
    path = tmp_path / "t.parquet"
    _table(path, ids, tokens, {"format_version": 1, "model_fingerprint": fingerprint,
                               "levels": 2, "codebook_sizes": [8, 8]})
    items = tmp_path / "paths.jsonl"
    items.write_text('{"id": "x", "path": "A > B"}\n{"id": "y", "path": "A > C"}\n')
    results = [run("decode", "1", "2", "0", "--model", a, "--tokens", path),
               run("inspect", "--model", a, "--tokens", path),
               run("eval", "taxonomy", "--tokens", path, "--items", items)]
    if words == "3 tokens":  # a good table: decode finds x
        assert results[0].exit_code == 0 and results[0].stdout == "x\n"
        return
    for result in results:
        assert words in _error(result)


def test_a_wordnet_style_kind_without_its_files_is_refused(model):
    _rewrite_config(model, lambda c: c.__setitem__("kind", "wordnet"))
    _error(run("inspect", "--model", model))


def test_decode_vectors_are_finite_json(model):
    result = run("decode", "1", "2", "0", "--vectors", "--model", model, "-q")
    row = json.loads(result.stdout)
    assert np.isfinite(row["vector"]).all()
