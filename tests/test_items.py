import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hrqtok.errors import InputError
from hrqtok.sources.items import ItemFields, read_items

VEC = ItemFields(embedding_field="vec")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("content, message", [
    ('{"id": "a", "text": "x"}\n{"id": "b", "text": \n', r"items.jsonl:2: malformed JSON"),
    ('{"id": "a", "text": "x"}\n{"text": "y"}\n', r"items.jsonl:2: field 'id' is missing"),
    ('{"id": "a", "text": "x"}\n{"id": "b"}\n', r"items.jsonl:2: field 'text' is missing"),
    ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', r"items.jsonl:2: duplicate id 'a' .*first on line 1"),
    ("\n\n", r"items.jsonl: no items found"),
    ('[1, 2]\n', r"items.jsonl:1: expected a JSON object, found list"),
])
def test_bad_jsonl_names_file_line_and_field(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        read_items(write(tmp_path, "items.jsonl", content))


@pytest.mark.parametrize("vectors, message", [
    ([[1, 2], [1, float("nan")]], r"items.jsonl:2: field 'vec' holds NaN or infinity \(at position 1\)"),
    ([[1, 2], [1, 2, 3]], r"items.jsonl:2: field 'vec' has 3 values, but line 1 has 2"),
    ([[1, 2], "abc"], r"items.jsonl:2: field 'vec' is not a list of numbers"),
])
def test_bad_vectors(tmp_path, vectors, message):
    lines = "".join(json.dumps({"id": str(i), "vec": v}) + "\n"
                    for i, v in enumerate(vectors))
    with pytest.raises(InputError, match=message):
        read_items(write(tmp_path, "items.jsonl", lines), VEC)


def test_same_items_from_jsonl_csv_parquet_and_stdin(tmp_path, monkeypatch):
    rows = [{"id": "a", "title": "Red", "body": "apple"}, {"id": 7, "title": "Blue", "body": "sky"}]
    jsonl = write(tmp_path, "i.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    csv_path = write(tmp_path, "i.csv", "id,title,body\na,Red,apple\n7,Blue,sky\n")
    pq.write_table(pa.Table.from_pylist([{**r, "id": str(r["id"])} for r in rows]), tmp_path / "i.parquet")
    fields = ItemFields(text_fields=("title", "body"))
    expected = (["a", "7"], ["Red. apple", "Blue. sky"])
    for path in (jsonl, csv_path, str(tmp_path / "i.parquet")):
        items = read_items(path, fields)
        assert (items.ids, items.texts) == expected
    import io
    import sys
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(jsonl).read_bytes())))
    items = read_items("-", fields)
    assert (items.ids, items.texts, items.source) == (*expected, "<stdin>")


def test_vectors_from_csv_and_parquet(tmp_path):
    csv_path = write(tmp_path, "v.csv", 'id,vec\na,"[1, 2]"\nb,3 4\n')
    assert read_items(csv_path, VEC).vectors.tolist() == [[1, 2], [3, 4]]
    pq.write_table(pa.table({"id": ["a", "b"], "vec": [[1.0, 2.0], [3.0, 4.0]]}), tmp_path / "v.parquet")
    items = read_items(str(tmp_path / "v.parquet"), VEC)
    assert items.vectors.dtype == np.float32 and items.vectors.tolist() == [[1, 2], [3, 4]]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        read_items(str(tmp_path / "nope.jsonl"))
