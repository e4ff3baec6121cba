"""`hrqtok encode ITEMS` streamed (hrqtok.catalogue): chunked reading, the on-disk table and
row-group writing give the in-memory table byte for byte; Parquet dataset folders as input;
nothing left behind."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hrqtok import catalogue
from hrqtok.catalogue import encode_catalogue
from hrqtok.cli import app
from hrqtok.errors import InputError
from hrqtok.pipeline import encode_items
from hrqtok.store.tables import read_table, write_table

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv", "strings"])
def test_small_chunks_and_partitions_give_the_in_memory_bytes(tmp_path, fitted, vector_items,
                                                              monkeypatch, fmt):
    # 120 items with 4 levels of collisions: 7-row input chunks, 16-row output chunks, 3
    # partitions exercise every boundary of the streamed path
    monkeypatch.setattr(catalogue, "INPUT_ROWS", 7)
    monkeypatch.setattr(catalogue, "OUTPUT_ROWS", 16)
    expected = tmp_path / f"memory.{fmt}"
    write_table(encode_items(fitted, str(vector_items)), str(expected), fmt)
    got = tmp_path / f"streamed.{fmt}"
    report = encode_catalogue(fitted, str(vector_items), str(got), fmt, partitions=3)
    assert report["items"] == 120
    if fmt == "parquet":  # more row groups, the same table
        assert pq.ParquetFile(got).metadata.num_row_groups == 8
        a, b = read_table(got), read_table(expected)
        assert a.ids == b.ids and a.metadata == b.metadata
        np.testing.assert_array_equal(a.tokens, b.tokens)
    else:
        assert got.read_bytes() == expected.read_bytes()


def test_existing_table_rule_holds_when_streamed(tmp_path, fitted, vector_items, monkeypatch):
    monkeypatch.setattr(catalogue, "INPUT_ROWS", 9)
    old = tmp_path / "old.parquet"
    encode_catalogue(fitted, None, str(old))
    grown = tmp_path / "grown.jsonl"
    lines = vector_items.read_text().splitlines()
    # new ids with the vectors (so the codes) of old items: they must skip taken indices
    extra = [json.dumps(json.loads(lines[i]) | {"id": f"new{i}"}) for i in range(0, 120, 5)]
    grown.write_text("\n".join(extra + lines[::-1]) + "\n")
    memory, streamed = tmp_path / "memory.jsonl", tmp_path / "streamed.jsonl"
    write_table(encode_items(fitted, str(grown), existing=old), str(memory), "jsonl")
    encode_catalogue(fitted, str(grown), str(streamed), "jsonl", existing=old, partitions=4)
    assert streamed.read_bytes() == memory.read_bytes()
    old_rows = {r["id"]: r["tokens"] for r in rows_of(memory) if not r["id"].startswith("new")}
    assert old_rows == {i: list(map(int, t)) for i, t in zip(
        read_table(old).ids, read_table(old).tokens.tolist())}


def parquet_dataset(folder, vector_items, parts):
    rows = rows_of(vector_items)
    (folder / "sub").mkdir(parents=True)
    bounds = np.linspace(0, len(rows), parts + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        place = folder / "sub" if i % 2 else folder
        pq.write_table(pa.Table.from_pylist(rows[lo:hi]), place / f"part-{i:03d}.parquet")
    return rows


def test_a_parquet_dataset_folder_encodes_like_one_file(tmp_path, fitted, vector_items):
    folder = tmp_path / "vectors"
    parquet_dataset(folder, vector_items, 4)  # parts in path order keep the rows' order
    one = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pylist(rows_of(vector_items)), one)
    for source, out in ((one, "a.jsonl"), (folder, "b.jsonl")):
        result = run("encode", source, "--model", fitted, "--out", tmp_path / out, "-q")
        assert result.exit_code == 0, result.output
    paths = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.parquet"))
    assert paths == ["part-000.parquet", "part-002.parquet", "sub/part-001.parquet",
                     "sub/part-003.parquet"]
    a, b = rows_of(tmp_path / "a.jsonl"), rows_of(tmp_path / "b.jsonl")
    assert sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)) and len(b) == 120


def test_a_duplicate_id_across_dataset_parts_names_both_places(tmp_path, fitted, vector_items):
    folder = tmp_path / "vectors"
    rows = parquet_dataset(folder, vector_items, 2)
    clash = folder / "sub" / "part-001.parquet"
    moved = pq.read_table(clash).to_pylist()
    moved[3]["id"] = rows[0]["id"]
    pq.write_table(pa.Table.from_pylist(moved), clash)
    out = tmp_path / "tokens.parquet"
    result = run("encode", folder, "--model", fitted, "--out", out, "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {clash}:4: duplicate id 'item000' in field 'id' (first on "
        f"{folder / 'part-000.parquet'} line 1); ids must be unique")
    assert not out.exists()


def test_scratch_files_are_removed_after_success_and_failure(tmp_path, fitted, vector_items):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    encode_catalogue(fitted, str(vector_items), str(tmp_path / "t.parquet"), scratch=scratch)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(vector_items.read_text() + '{"id": "item000", "vec": [0.0]}\n')
    with pytest.raises(InputError):
        encode_catalogue(fitted, str(bad), str(tmp_path / "u.parquet"), scratch=scratch)
    assert list(scratch.iterdir()) == [] and not (tmp_path / "u.parquet").exists()


def test_an_empty_folder_is_a_clear_error(tmp_path, fitted):
    (tmp_path / "empty").mkdir()
    result = run("encode", tmp_path / "empty", "--model", fitted, "--out", tmp_path / "t.parquet")
    assert result.exit_code == 1
    assert "is a folder without .parquet files" in result.stderr


def test_streamed_inspect_of_items_equals_the_in_memory_report(tmp_path, fitted, vector_items,
                                                               monkeypatch):
    import math

    from hrqtok.catalogue import inspect_catalogue
    from hrqtok.pipeline import inspect_model

    monkeypatch.setattr(catalogue, "INPUT_ROWS", 11)
    memory = inspect_model(fitted, str(vector_items))
    streamed = inspect_catalogue(fitted, str(vector_items), partitions=3)
    vectors_memory, vectors_streamed = memory.pop("vectors"), streamed.pop("vectors")
    assert streamed == memory  # codes, collisions, prefixes, quality verdict, codebooks
    for group in ("latent_norm", "reconstruction"):
        for key, value in vectors_memory[group].items():
            assert math.isclose(vectors_streamed[group][key], value, rel_tol=1e-5, abs_tol=1e-7), key


def test_inspect_reads_a_parquet_dataset_folder(tmp_path, fitted, vector_items):
    folder = tmp_path / "vectors"
    parquet_dataset(folder, vector_items, 3)
    result = run("inspect", folder, "--model", fitted, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == 120


def fitted_table(model):
    table = pq.read_table(model / "tokens.parquet")
    return table.column("id").to_pylist(), table.column("tokens").to_pylist()


@pytest.mark.parametrize("sample", [None, 50])
def test_fit_reads_a_parquet_dataset_folder_like_one_file(tmp_path, vector_items, sample):
    from tests.conftest import TINY_FIT

    folder = tmp_path / "vectors"
    parquet_dataset(folder, vector_items, 4)
    # the folder is read part by part in path order: one file of the rows in that order
    parts = sorted(str(p) for p in folder.rglob("*.parquet"))
    rows = [row for part in parts for row in pq.read_table(part).to_pylist()]
    one = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pylist(rows), one)
    extra = ["--sample", sample] if sample else []
    for source, model in ((one, "a"), (folder, "b")):
        result = run("fit", source, "--model", tmp_path / model, "--embedding-field", "vec",
                     *TINY_FIT, *extra, "-q")
        assert result.exit_code == 0, result.output
    ids, tokens = fitted_table(tmp_path / "b")
    assert (ids, tokens) == fitted_table(tmp_path / "a")
    order = [row["id"] for row in rows]
    assert len(ids) == (sample or 120) and sorted(ids, key=order.index) == ids  # input order
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["fit"].get("sample", {}).get("items_read", 120) == 120


def test_fit_on_a_dataset_folder_names_the_part_and_row_of_a_bad_record(tmp_path, vector_items):
    folder = tmp_path / "vectors"
    rows = parquet_dataset(folder, vector_items, 2)
    bad = folder / "sub" / "part-001.parquet"
    part = pq.read_table(bad).to_pylist()
    part[4]["vec"] = part[4]["vec"][:3]
    pq.write_table(pa.Table.from_pylist(part), bad)
    result = run("fit", folder, "--model", tmp_path / "m", "--embedding-field", "vec", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {bad}:5: field 'vec' has 3 values, but {folder / 'part-000.parquet'} line 1 has "
        "16; all vectors need the same length")
    part[4]["vec"], part[2]["id"] = rows[0]["vec"], rows[0]["id"]
    pq.write_table(pa.Table.from_pylist(part), bad)
    result = run("fit", folder, "--model", tmp_path / "m", "--embedding-field", "vec", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {bad}:3: duplicate id 'item000' in field 'id' (first on "
        f"{folder / 'part-000.parquet'} line 1); ids must be unique")
    assert not (tmp_path / "m").exists()
