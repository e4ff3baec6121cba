"""`hrqtok embed`: a vector table written chunk by chunk, the same vectors as fit embeds, resumed
from the cache, and nothing written on bad input."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from hrqtok.errors import InputError
from hrqtok.pipeline import EmbedSettings, embed_items, embed_with
from hrqtok.sources.items import ItemFields, item_chunks, read_items
from tests.conftest import TINY_FIT
from tests.test_cli import run


def test_embed_writes_the_vectors_fit_would_use(tmp_path, text_items, fake_embedder):
    out = tmp_path / "vectors.parquet"
    summary = embed_items(str(text_items), out, chunk_size=7)  # 60 items: 9 row groups
    table = pq.read_table(out)
    items = read_items(str(text_items))
    assert summary["items"] == 60 and table.column("id").to_pylist() == items.ids
    assert pq.ParquetFile(out).metadata.num_row_groups == 9
    written = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.array_equal(written, embed_with(items.texts, EmbedSettings()))
    assert pq.read_schema(out).metadata[b"hrqtok.embedder"] == b"fake-48"


def test_a_second_run_takes_every_vector_from_the_cache(tmp_path, text_items, fake_embedder):
    embed_items(str(text_items), tmp_path / "a.parquet")
    calls = fake_embedder.calls
    embed_items(str(text_items), tmp_path / "b.parquet")
    assert fake_embedder.calls == calls  # nothing embedded again
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


def test_a_stopped_run_resumes_from_the_cache(tmp_path, text_items, fake_embedder):
    """A bad line (41) stops the run after 5 chunks of 7 and the 5 items read before it (they
    are handed over before the error, so an earlier repeated id is reported first); once the
    line is mended, only the texts after those 40 items are embedded."""
    lines = text_items.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:40] + [json.dumps({"id": "late", "text": None})]
                                 + lines[41:]) + "\n")
    with pytest.raises(InputError):
        embed_items(str(broken), tmp_path / "v.parquet", chunk_size=7)
    assert not (tmp_path / "v.parquet").exists()
    calls = fake_embedder.calls
    embed_items(str(text_items), tmp_path / "v.parquet", chunk_size=7)
    texts = read_items(str(text_items)).texts
    assert fake_embedder.calls - calls == len(set(texts[40:]) - set(texts[:40]))


def test_embed_then_fit_and_encode_from_the_table(tmp_path, text_items, fake_embedder):
    vectors = tmp_path / "vectors.parquet"
    result = run("embed", text_items, "--out", vectors, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dim"] == 48
    model = tmp_path / "m"
    result = run("fit", vectors, "--embedding-field", "embedding", "--model", model, *TINY_FIT)
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct"
    assert run("fit", text_items, "--model", direct, *TINY_FIT).exit_code == 0
    tokens = [pq.read_table(m / "tokens.parquet") for m in (model, direct)]
    assert tokens[0].equals(tokens[1])  # the same vectors, so the same fit
    encoded = tmp_path / "encoded.parquet"
    result = run("encode", vectors, "--model", model, "--out", encoded, "-q")
    assert result.exit_code == 0, result.output
    columns = ["id", "tokens"]
    assert pq.read_table(encoded).select(columns).equals(tokens[0].select(columns))


def test_bad_input_writes_nothing_and_keeps_an_old_table(tmp_path, text_items, fake_embedder):
    out = tmp_path / "vectors.parquet"
    out.write_bytes(b"an older table")
    lines = text_items.read_text().splitlines()
    lines[40] = json.dumps({"id": "late", "text": None})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    result = run("embed", bad, "--out", out, "-q")
    assert result.exit_code == 1
    assert f"{bad}:41: field 'text' is null" in result.output
    assert out.read_bytes() == b"an older table"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_embed_refuses_to_overwrite_its_input_or_write_stdout(tmp_path, text_items):
    assert run("embed", text_items, "--out", text_items).exit_code == 2
    assert run("embed", text_items, "--out", "-").exit_code == 2
    assert run("embed", text_items).exit_code == 2


def test_chunks_check_ids_and_vector_lengths_across_chunks(tmp_path):
    path = tmp_path / "v.jsonl"
    rows = [{"id": f"i{i}", "vec": [1.0, 2.0]} for i in range(10)]
    rows[8]["vec"] = [1.0, 2.0, 3.0]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chunks = item_chunks(str(path), ItemFields(embedding_field="vec"), size=3)
    with pytest.raises(InputError, match=r":9: field 'vec' has 3 values, but line 1 has 2"):
        list(chunks)
    rows[8] = {"id": "i1", "vec": [1.0, 2.0]}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r":9: duplicate id 'i1'"):
        list(item_chunks(str(path), ItemFields(embedding_field="vec"), size=3))
