"""`encode --out DIR/`: a token table as a folder of Parquet part files (hrqtok.store.
token_folders), read back with pyarrow.dataset and with hrqtok itself (`--existing`, inspect
--tokens, decode --tokens); replaced whole or not at all; a user's folder never touched."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from hrqtok import catalogue
from hrqtok.catalogue import encode_catalogue
from hrqtok.errors import ArtifactError, InputError, OptionError
from hrqtok.store import token_folders
from hrqtok.store.tables import build_table, read_table
from hrqtok.store.token_folders import read_folder, write_folder
from tests.test_cli import run


def tree(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_parts_hold_the_files_rows_in_order(tmp_path, fitted, vector_items, monkeypatch):
    monkeypatch.setattr(catalogue, "OUTPUT_ROWS", 16)  # row groups of 16 rows
    monkeypatch.setattr(token_folders, "PART_ROWS", 40)  # parts of 40: groups cut at 32 + 8
    one, folder = tmp_path / "one.parquet", tmp_path / "tokens"
    encode_catalogue(fitted, str(vector_items), str(one))
    result = run("encode", vector_items, "--model", fitted, "--out", f"{folder}/", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet", "part-00001.parquet",
                                                        "part-00002.parquet"]
    assert [pq.ParquetFile(p).metadata.num_rows for p in sorted(folder.iterdir())] == [40, 40, 40]
    whole = pq.read_table(one)
    dataset = ds.dataset(folder, format="parquet").to_table()  # what Spark / Ray Data read
    assert dataset.to_pylist() == whole.to_pylist()
    assert all(pq.read_schema(p).metadata == whole.schema.metadata for p in folder.iterdir())
    a, b = read_table(folder), read_table(one)
    assert a.ids == b.ids and a.metadata == b.metadata
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_a_token_folder_is_replaced_whole_and_feeds_existing_inspect_and_decode(tmp_path, fitted,
                                                                               vector_items):
    folder = tmp_path / "tokens"
    assert run("encode", "--model", fitted, "--out", f"{folder}/", "-q").exit_code == 0
    first = tree(folder)
    grown = tmp_path / "grown.jsonl"
    lines = vector_items.read_text().splitlines()
    grown.write_text("\n".join([json.dumps(json.loads(lines[0]) | {"id": "new"})] + lines) + "\n")
    # --existing reads a token folder: old ids keep their multitokens
    result = run("encode", grown, "--model", fitted, "--existing", folder, "--out",
                 f"{tmp_path / 'v2'}/", "-q")
    assert result.exit_code == 0, result.output
    old, new = read_table(folder), read_table(tmp_path / "v2")
    new_rows = dict(zip(new.ids, new.tokens.tolist()))
    assert new_rows.pop("new") not in new_rows.values()  # a free disambiguation index
    assert new_rows == dict(zip(old.ids, old.tokens.tolist()))
    # an existing token folder is replaced (no trailing slash needed)
    assert run("encode", grown, "--model", fitted, "--out", folder, "-q").exit_code == 0
    assert tree(folder) != first and read_table(folder).ids == new.ids
    report = run("inspect", "--model", fitted, "--tokens", folder, "--json")
    assert report.exit_code == 0 and json.loads(report.stdout)["items"] == 121
    token = " ".join(map(str, new.tokens[0].tolist()))
    decoded = run("decode", *token.split(), "--model", fitted, "--tokens", folder)
    assert decoded.exit_code == 0 and new.ids[0] in decoded.stdout


def test_a_failed_encode_leaves_the_old_folder_as_it_was(tmp_path, fitted, vector_items):
    folder = tmp_path / "tokens"
    assert run("encode", "--model", fitted, "--out", f"{folder}/", "-q").exit_code == 0
    before = tree(folder)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(vector_items.read_text() + '{"id": "x", "vec": "nope"}\n')
    result = run("encode", bad, "--model", fitted, "--out", folder, "-q")
    assert result.exit_code == 1 and "bad.jsonl:121" in result.stderr
    assert tree(folder) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tokens")] == []


def test_folders_that_are_not_token_folders_are_refused(tmp_path, fitted):
    for name, content in (("notes.txt", b"mine"), ("part-00000.parquet", b"not parquet")):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_bytes(content)
        result = run("encode", "--model", fitted, "--out", folder)
        assert result.exit_code == 2
        assert f"holds {name}, which is not a token table" in result.stderr
        assert tree(folder) == {name: content}
    jsonl = run("encode", "--model", fitted, "--out", f"{tmp_path / 'new'}/", "--format", "jsonl")
    assert jsonl.exit_code == 2 and "holds Parquet part files, not jsonl" in jsonl.stderr
    assert not (tmp_path / "new").exists()
    with pytest.raises(OptionError, match="is a file"):
        write_folder([], {}, tmp_path / "notes" / "notes.txt")


def test_an_empty_table_is_one_part_without_rows(tmp_path):
    table = build_table([], np.zeros((0, 2), dtype=np.int64), {"levels": 2,
                                                                "codebook_sizes": [4, 4]})
    write_folder([(table.ids, table.tokens)], table.metadata, tmp_path / "t")
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["part-00000.parquet"]
    assert read_folder(tmp_path / "t").ids == []


def test_parts_of_different_encodes_or_damaged_parts_are_refused(tmp_path, fitted, vector_items,
                                                                 monkeypatch):
    monkeypatch.setattr(token_folders, "PART_ROWS", 60)
    a, b = tmp_path / "a", tmp_path / "b"
    encode_catalogue(fitted, str(vector_items), f"{a}/")
    encode_catalogue(fitted, str(vector_items), f"{b}/", beam=2)  # other metadata
    (a / "part-00001.parquet").write_bytes((b / "part-00001.parquet").read_bytes())
    with pytest.raises(ArtifactError, match="metadata differs from part-00000.parquet's"):
        read_table(a)
    (a / "part-00001.parquet").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="part-00001.parquet: not a readable Parquet"):
        read_table(a)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="a folder without part-NNNNN.parquet files"):
        read_table(tmp_path / "empty")


def test_duplicate_ids_across_parts_are_found_on_reading(tmp_path, fitted, vector_items,
                                                         monkeypatch):
    monkeypatch.setattr(token_folders, "PART_ROWS", 60)
    folder = tmp_path / "t"
    encode_catalogue(fitted, str(vector_items), f"{folder}/")
    first = pq.read_table(folder / "part-00000.parquet")
    pq.write_table(first, folder / "part-00001.parquet")  # the same ids twice
    with pytest.raises(ArtifactError, match="appears more than once"):
        read_table(folder)
    with pytest.raises(InputError):  # and encode stops before replacing the folder
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"id": "x"}\n')
        encode_catalogue(fitted, str(bad), str(folder))
    assert pq.read_table(folder / "part-00001.parquet").equals(first)
