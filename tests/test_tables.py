import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hrqtok.errors import ArtifactError
from hrqtok.store.tables import build_table, read_table, token_string, write_table

META = {"model_fingerprint": "f00", "geometry": "hyperbolic", "levels": 2, "codebook_sizes": [4, 4]}


def test_disambiguation_by_hand():
    ids = ["c", "a", "b", "d"]
    codes = np.array([[1, 2], [1, 2], [3, 0], [1, 2]])
    table = build_table(ids, codes, META)
    # group (1, 2) holds a, c, d: numbered in id order; b is alone
    assert table.tokens.tolist() == [[1, 2, 1], [1, 2, 0], [3, 0, 0], [1, 2, 2]]
    assert table.metadata["disambiguation_size"] == 3


def test_existing_table_keeps_old_multitokens_and_gives_new_items_free_indices():
    old = build_table(["a", "b"], np.array([[1, 2], [1, 2]]), META)  # a -> d 0, b -> d 1
    # The model now gives "a" other codes and a new item "0new" sorts before "a".
    new = build_table(["0new", "a", "c"], np.array([[1, 2], [3, 3], [1, 2]]), META, existing=old)
    rows = dict(zip(new.ids, new.tokens.tolist()))
    assert rows["a"] == [1, 2, 0]  # kept whole
    assert rows["0new"] == [1, 2, 2] and rows["c"] == [1, 2, 3]  # 0 and 1 are taken by a and b
    assert len({tuple(r) for r in rows.values()}) == 3


def test_parquet_schema_metadata_and_round_trip(tmp_path):
    table = build_table(["x", "y"], np.array([[3, 1], [3, 1]]), META)
    write_table(table, str(tmp_path / "t.parquet"))
    arrow = pq.read_table(tmp_path / "t.parquet")
    assert str(arrow.schema.field("id").type) == "string"
    tokens_type = arrow.schema.field("tokens").type
    assert pa.types.is_list(tokens_type) and tokens_type.value_type == pa.int32()
    meta = {k.decode(): json.loads(v) for k, v in arrow.schema.metadata.items() if k.startswith(b"hrqtok.")}
    assert meta["hrqtok.format_version"] == 1 and meta["hrqtok.model_fingerprint"] == "f00"
    assert meta["hrqtok.codebook_sizes"] == [4, 4] and meta["hrqtok.disambiguation_size"] == 2
    assert arrow.column("tokens").to_pylist() == [[3, 1, 0], [3, 1, 1]]
    back = read_table(tmp_path / "t.parquet")
    assert back.ids == table.ids and np.array_equal(back.tokens, table.tokens)


def test_text_formats(tmp_path):
    table = build_table(["x"], np.array([[12, 40]]), META)
    for fmt, expected in [("jsonl", '{"id": "x", "tokens": [12, 40, 0]}\n'),
                          ("csv", "id,tokens\nx,12 40 0\n"), ("strings", "x\t<a_12><b_40><c_0>\n")]:
        write_table(table, str(tmp_path / f"t.{fmt}"), fmt)
        assert (tmp_path / f"t.{fmt}").read_text() == expected
    assert token_string([12, 40, 7, 0]) == "<a_12><b_40><c_7><d_0>"


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import hrqtok.store.tables

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hrqtok.store.tables, "_write_body", broken)
    with pytest.raises(OSError):
        write_table(build_table(["x"], np.array([[1, 1]]), META), str(tmp_path / "t.jsonl"), "jsonl")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".t.jsonl", "t.jsonl"))] == []


def test_reading_a_non_table_is_an_artifact_error(tmp_path):
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(ArtifactError, match="not a readable Parquet token table"):
        read_table(tmp_path / "t.parquet")
