"""The public Python API (hrqtok.Tokenizer): the same models as the CLI, byte for byte; every
container a user holds vectors in; save / load round trips both ways with the CLI; and the
README's Python examples, run as written."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import hrqtok
from hrqtok.errors import ArtifactError, InputError, OptionError
from tests.conftest import clustered_vectors
from tests.test_cli import run

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = dict(levels=2, codebook_size=8, seed=0)
NETWORK = dict(latent_dim=4, hidden_dims=(16,), epochs=3, warmup_epochs=2, batch_size=32)
CLI_SMALL = ["--levels", "2", "--codebook-size", "8", "--seed", "0"]
CLI_NETWORK = ["--latent-dim", "4", "--hidden-dims", "16", "--epochs", "3", "--warmup-epochs", "2",
               "--batch-size", "32"]


def _vectors():
    return clustered_vectors()  # (120, 16) float32


def _ids(n=120):
    return [f"item{i:03d}" for i in range(n)]


@pytest.mark.parametrize("quantizer", ["hrq", "hypervq", "rq-kmeans"])
def test_api_fit_is_the_cli_fit_byte_for_byte(tmp_path, vector_items, quantizer):
    network = quantizer != "rq-kmeans"
    tok = hrqtok.Tokenizer.fit(_vectors(), ids=_ids(), quantizer=quantizer, **SMALL,
                               **(NETWORK if network else {}))
    result = run("fit", vector_items, "--embedding-field", "vec", "--model", tmp_path / "cli",
                 "--quantizer", quantizer, *CLI_SMALL, *(CLI_NETWORK if network else []), "-q")
    assert result.exit_code == 0, result.output
    cli = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert tok.fingerprint == cli["fingerprint"]
    saved = tok.save(tmp_path / "api")
    assert (saved / "model.safetensors").read_bytes() == (tmp_path / "cli" / "model.safetensors").read_bytes()
    ours, theirs = pq.read_table(saved / "tokens.parquet"), pq.read_table(tmp_path / "cli" / "tokens.parquet")
    assert ours.equals(theirs) and ours.schema.metadata == theirs.schema.metadata


def test_every_container_and_dtype_gives_the_same_tokens():
    x = _vectors()
    tok = hrqtok.Tokenizer.fit(x, **SMALL, **NETWORK)
    ids = _ids()
    expected = tok.encode(x, ids=ids).tokens
    containers = [
        x.astype(np.float64), torch.from_numpy(x),
        torch.from_numpy(x).double(), x.tolist(),
        pa.table({"id": ids, "vec": pa.array(list(x), pa.list_(pa.float32()))}),
        pa.table({"id": ids, "v": pa.FixedSizeListArray.from_arrays(
            pa.array(x.reshape(-1)).cast(pa.float64()), 16)}),
        pa.record_batch({"id": ids, "vec": list(x)}),
        pd.DataFrame({"id": ids, "vec": list(x)}), pd.DataFrame(x, columns=[f"d{i}" for i in range(16)]),
        pl.DataFrame({"id": ids, "vec": x.tolist()}),
    ]
    for data in containers:
        table = tok.encode(data, ids=None if hasattr(data, "schema") or hasattr(data, "columns") else ids)
        assert np.array_equal(table.tokens[:, :-1], expected[:, :-1]), type(data)
    found = tok.encode(pd.DataFrame({"id": ids, "vec": list(x)}))
    assert found.ids == ids  # the "id" column becomes the ids
    half = tok.encode(x.astype(np.float16))  # any float dtype: rounded to half, then float32
    assert half.tokens.shape == expected.shape
    assert (half.tokens[:, :-1] == expected[:, :-1]).all(axis=1).mean() > 0.9


def test_encode_returns_a_token_table_with_the_disambiguation_token(tmp_path):
    x = np.repeat(_vectors()[:10], 3, axis=0)  # every vector three times: three-way collisions
    tok = hrqtok.Tokenizer.fit(x, quantizer="rq-kmeans", **SMALL)
    table = tok.encode(x, ids=_ids(30))
    assert table.tokens.shape == (30, 3) and table.tokens.dtype == np.int32
    groups = {}
    for row in table.tokens.tolist():
        groups.setdefault(tuple(row[:-1]), []).append(row[-1])
    assert all(sorted(d) == list(range(len(d))) for d in groups.values())
    assert max(len(d) for d in groups.values()) >= 3
    frame = table.to_pandas()
    assert list(frame.columns) == ["id", "tokens"] and frame["tokens"][0].tolist() == table.tokens[0].tolist()
    assert table.to_arrow().schema.metadata[b"hrqtok.model_fingerprint"] == json.dumps(tok.fingerprint).encode()


def test_decode_inverts_encode_and_reconstructs():
    x = _vectors()
    tok = hrqtok.Tokenizer.fit(x, ids=_ids(), **SMALL, **NETWORK)
    table = tok.table
    assert tok.decode(table.tokens) == table.ids
    assert tok.decode(torch.from_numpy(table.tokens)) == table.ids
    first = table.tokens[table.tokens[:, -1] == 0][:5]
    assert tok.decode(first[:, :-1]) == tok.decode(first)  # k codes mean d = 0
    assert tok.decode([[7, 7, 99]]) == [None]
    rebuilt = tok.decode(table.tokens, vectors=True)
    codes = torch.from_numpy(table.codes.astype(np.int64))
    assert np.array_equal(rebuilt, tok.model.decode_codes(codes).numpy())
    assert rebuilt.shape == (120, 16)
    assert np.array_equal(tok.reconstruct(x), tok.decode(tok.encode(x).tokens, vectors=True))
    with pytest.raises(InputError, match="2 or 3 tokens"):
        tok.decode([[1, 2, 3, 4]])
    with pytest.raises(InputError, match="0..7"):
        tok.decode([[1, 9]], vectors=True)


def test_save_load_round_trip_and_the_cli_reads_it(tmp_path):
    x = _vectors()
    tok = hrqtok.Tokenizer.fit(x, ids=_ids(), **SMALL, **NETWORK)
    path = tok.save(tmp_path / "m")
    loaded = hrqtok.Tokenizer.load(path)
    assert loaded.fingerprint == tok.fingerprint and loaded.model_config == tok.model_config
    assert np.array_equal(loaded.encode(x).tokens, tok.encode(x).tokens)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": i, "embedding": v.tolist()}) + "\n"
                             for i, v in zip(_ids(), x)))
    # the CLI reads the API's model: the fitted table, new items by the stored field, inspect
    result = run("encode", items, "--model", path, "--out", tmp_path / "t.parquet", "-q")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.array(pq.read_table(tmp_path / "t.parquet")["tokens"].to_pylist()),
                          loaded.encode(x, ids=_ids()).tokens)
    assert run("inspect", "--model", path, "--json").exit_code == 0
    with pytest.raises(OptionError, match="already holds a model"):
        hrqtok.Tokenizer.fit(x, **SMALL, **NETWORK).save(path)
    with pytest.raises(ArtifactError, match="saved at .* already"):
        loaded.save(tmp_path / "elsewhere")


def test_a_cli_model_loads_and_encodes_like_the_cli(tmp_path, vector_items):
    model = tmp_path / "m"
    assert run("fit", vector_items, "--embedding-field", "vec", "--model", model,
               *CLI_SMALL, *CLI_NETWORK, "-q").exit_code == 0
    assert run("encode", vector_items, "--model", model, "--beam", "3", "--out",
               tmp_path / "t.parquet", "-q").exit_code == 0
    tok = hrqtok.load(model)
    table = tok.encode(_vectors(), ids=_ids(), beam=3)
    theirs = hrqtok.read_tokens(tmp_path / "t.parquet")
    assert table.ids == theirs.ids and np.array_equal(table.tokens, theirs.tokens)
    assert table.metadata == theirs.metadata
    # an earlier table keeps its multitokens; another model's table is refused
    again = tok.encode(_vectors()[:5], ids=["new1", "new2", "new3", "new4", "new5"], existing=theirs)
    assert again.metadata["model_fingerprint"] == tok.fingerprint
    other = hrqtok.Tokenizer.fit(_vectors(), quantizer="rq-kmeans", **SMALL)
    with pytest.raises(ArtifactError, match="token table of model"):
        other.encode(_vectors()[:5], existing=theirs)


def test_fit_texts_embeds_and_records_the_embedder(tmp_path, fake_embedder):
    texts = [f"{w} and {v}" for w in ("cat", "dog", "car", "bus", "rice", "soup") for v in range(10)]
    tok = hrqtok.Tokenizer.fit_texts(texts, embedder="fake-model", quantizer="rq-kmeans", **SMALL)
    assert tok.config["embedder"] == {"spec": "fake-model", "precision": "float32"}
    assert len(tok.table) == 60 and tok.table.ids[:2] == ["0", "1"]
    assert np.array_equal(tok.encode_texts(texts).tokens[:, :-1], tok.table.codes)
    tok.save(tmp_path / "m")
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    result = run("encode", items, "--model", tmp_path / "m", "--out", "-", "-q")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["tokens"] for line in result.stdout.splitlines()] == tok.table.tokens.tolist()


def test_wordnet_through_the_same_class(tmp_path):
    tok = hrqtok.Tokenizer.fit_wordnet(root="feline.n.01", epochs=2, burn_in_epochs=1,
                                       latent_dim=3, levels=2, codebook_size=4, eval_every=0)
    assert tok.kind == "wordnet" and "cat.n.01" in tok.table.ids
    assert np.array_equal(tok.encode().tokens, tok.table.tokens)
    with pytest.raises(OptionError, match="tuned"):  # its codebooks follow the multitokens
        tok.encode(beam=3)
    assert tok.decode(tok.table.tokens[:3]) == tok.table.ids[:3]
    with pytest.raises(InputError, match="own nouns"):
        tok.encode(np.zeros((2, 3)))
    path = tok.save(tmp_path / "wn")
    assert run("eval", "hypernyms", "--model", path, "--epochs", "1", "--d-model", "16", "--heads",
               "2", "--layers", "1", "--feedforward", "32", "--json", "-q").exit_code == 0


@pytest.mark.parametrize("call,error,message", [
    (lambda x: hrqtok.Tokenizer.fit(x, levles=3), TypeError, "levles"),
    (lambda x: hrqtok.Tokenizer.fit(x, negatives=5), OptionError, "--wordnet"),
    (lambda x: hrqtok.Tokenizer.fit(x, quantizer="rq-kmeans", latent_dim=4), OptionError, "latent"),
    (lambda x: hrqtok.Tokenizer.fit(x, quantizer="nope"), OptionError, "hrq, rq"),
    (lambda x: hrqtok.Tokenizer.fit(x, curvature=200.0), OptionError, "curvature"),
    (lambda x: hrqtok.Tokenizer.fit(x[0]), InputError, "2-d"),
    (lambda x: hrqtok.Tokenizer.fit(np.array([["a", "b"]])), InputError, "2-d"),
    (lambda x: hrqtok.Tokenizer.fit(np.vstack([x, [np.nan] * 16])), InputError, "row 120"),
    (lambda x: hrqtok.Tokenizer.fit(x, ids=["a"] * 120), InputError, "more than once"),
    (lambda x: hrqtok.Tokenizer.fit(x, ids=["a"]), InputError, "1 ids for 120"),
    (lambda x: hrqtok.Tokenizer.fit(pa.table({"a": list(x), "b": list(x)})), InputError, "column="),
    (lambda x: hrqtok.Tokenizer.fit_wordnet(quantizer="hypervq"), OptionError, "no decoder"),
    (lambda x: hrqtok.Tokenizer.fit_wordnet(node_optimizer="rsgd", node_rms_decay=0.9),
     OptionError, "applies only to --node-optimizer rmsprop"),
    (lambda x: hrqtok.Tokenizer.fit_wordnet(node_rms_decay=1.0), OptionError, "[0, 1)"),
])
def test_bad_calls_say_what_is_wrong(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call(_vectors())


def test_wrong_dimension_is_refused():
    tok = hrqtok.Tokenizer.fit(_vectors(), quantizer="rq-kmeans", **SMALL)
    with pytest.raises(InputError, match="fitted on 16"):
        tok.encode(np.zeros((3, 8)))


def _readme_python_blocks() -> list[str]:
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    blocks = _readme_python_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(README.parent / "data")
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace["tok"], hrqtok.Tokenizer)
