import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrqtok.errors import InputError
from hrqtok.sources.items import ItemFields, item_chunks, read_items

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


def test_a_text_is_a_vector_only_in_a_csv_cell(tmp_path):
    """JSONL and Parquet hold typed values: a string there is refused, not read as digits (the
    fuzzer found a Parquet "0" read as the vector [0])."""
    message = r"field 'vec' is not a list of numbers but a text \(only a CSV cell"
    with pytest.raises(InputError, match=r"v.jsonl:1: " + message):
        read_items(write(tmp_path, "v.jsonl", json.dumps({"id": "a", "vec": "0.1 0.2"}) + "\n"), VEC)
    pq.write_table(pa.table({"id": ["a"], "vec": ["0"]}), tmp_path / "v.parquet")
    with pytest.raises(InputError, match=r"v.parquet:1: " + message):
        read_items(str(tmp_path / "v.parquet"), VEC)
    with pytest.raises(InputError, match=r"v.parquet:1: " + message):
        list(item_chunks(str(tmp_path / "v.parquet"), VEC))
    csv_path = write(tmp_path, "v.csv", 'id,vec\na,0.1 0.2\n')
    assert read_items(csv_path, VEC).vectors.shape == (1, 2)
    assert next(item_chunks(csv_path, VEC)).vectors.shape == (1, 2)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        read_items(str(tmp_path / "nope.jsonl"))


def _vector_file(path, n, bad_line=None, duplicate_line=None):
    lines = []
    for i in range(n):
        record = {"id": f"item-{i}", "vec": [float(i), 1.0]}
        if i + 1 == bad_line:
            record["vec"] = "oops"
        if i + 1 == duplicate_line:
            record["id"] = "item-0"
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


VECTORS = ItemFields(embedding_field="vec")


def test_a_sample_is_seeded_in_input_order_and_holds_its_own_vectors(tmp_path):
    path = _vector_file(tmp_path / "v.jsonl", 200)
    first = read_items(path, VECTORS, sample=30, seed=4)
    again = read_items(path, VECTORS, sample=30, seed=4)
    other = read_items(path, VECTORS, sample=30, seed=5)
    assert len(first) == 30 and first.read == 200
    assert first.ids == again.ids and first.ids != other.ids
    rows = [int(i.split("-")[1]) for i in first.ids]
    assert rows == sorted(rows) and len(set(rows)) == 30
    assert first.lines == [r + 1 for r in rows]
    assert first.vectors[:, 0].tolist() == rows  # each id kept its own vector


def test_a_sample_as_large_as_the_input_is_the_input(tmp_path):
    path = _vector_file(tmp_path / "v.jsonl", 50)
    whole, sampled = read_items(path, VECTORS), read_items(path, VECTORS, sample=50, seed=9)
    assert sampled.ids == whole.ids and sampled.lines == whole.lines
    assert np.array_equal(sampled.vectors, whole.vectors)


@pytest.mark.parametrize("where", ["bad", "duplicate"])
def test_a_sample_still_checks_every_record(tmp_path, where):
    """A bad record or a repeated id far past the sample's first items is still reported."""
    path = _vector_file(tmp_path / "v.jsonl", 300, bad_line=280 if where == "bad" else None,
                        duplicate_line=280 if where == "duplicate" else None)
    with pytest.raises(InputError, match=r"v\.jsonl:280: "):
        read_items(path, VECTORS, sample=10, seed=0)


def test_the_reservoir_keeps_every_item_equally_often():
    """Over many seeds each of 20 items is kept in 5 / 20 of the samples: the binomial
    standard deviation over 4,000 seeds is 0.007, and the bound is 5 of them."""
    from hrqtok.sources.sample import Reservoir

    kept = np.zeros(20)
    for seed in range(4000):
        reservoir, slots = Reservoir(5, seed), [None] * 5
        for item in range(20):
            slot = reservoir.slot()
            if slot is not None:
                slots[slot] = item
        kept[slots] += 1
    assert np.abs(kept / 4000 - 0.25).max() < 0.035, kept / 4000


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 60), size=st.integers(1, 80), seed=st.integers(0, 2**32))
def test_any_sample_is_an_ordered_subset_of_the_input(tmp_path, n, size, seed):
    path = _vector_file(tmp_path / "v.jsonl", n)
    whole, sampled = read_items(path, VECTORS), read_items(path, VECTORS, sample=size, seed=seed)
    position = {item: i for i, item in enumerate(whole.ids)}
    rows = [position[item] for item in sampled.ids]
    assert len(rows) == min(n, size) and rows == sorted(set(rows)) and sampled.read == n
    assert np.array_equal(sampled.vectors, whole.vectors[rows])


def test_parquet_is_read_in_batches_and_rows_count_across_them(tmp_path):
    from hrqtok.sources.records import PARQUET_BATCH

    n = PARQUET_BATCH + 500
    vectors = [[float(i), 0.5] for i in range(n)]
    vectors[PARQUET_BATCH + 100] = [1.0]  # a row of the second batch
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({"id": [f"i{i}" for i in range(n)], "vec": vectors}), path)
    with pytest.raises(InputError, match=rf"v\.parquet:{PARQUET_BATCH + 101}: field 'vec' has 1"):
        read_items(str(path), VECTORS)
    vectors[PARQUET_BATCH + 100] = [1.0, 2.0]
    pq.write_table(pa.table({"id": [f"i{i}" for i in range(n)], "vec": vectors}), path)
    items = read_items(str(path), VECTORS)
    assert len(items) == n and items.lines[-1] == n and items.vectors[-1, 0] == n - 1
