"""Inputs named by URI (hrqtok.locations): pyarrow's filesystems read them, here its local one
through real ``file://`` URIs (tests/test_s3.py reads ``s3://`` ones from a local S3 server). A URI input gives
what its path gives, for a file and for a Parquet dataset folder, in every reader (fit, encode,
the Ray engine's splits); messages name the URI; a bad scheme or a missing file is one error
line; an output that is a URI input's local file is refused; hidden names are left out of a
dataset."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hrqtok.cli import app
from hrqtok.locations import is_uri, kind, local_path, parquet_files
from hrqtok.sources.items import IdRegister, ItemFields, item_chunks
from hrqtok.sources.splits import plan_splits, split_chunks
from tests.conftest import TINY_FIT

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def uri(path) -> str:
    return path.resolve().as_uri()  # file:///…


def dataset(folder, vector_items, parts=3):
    rows = [json.loads(line) for line in vector_items.read_text().splitlines()]
    (folder / "sub").mkdir(parents=True)
    for i in range(parts):
        place = folder / "sub" if i % 2 else folder
        pq.write_table(pa.Table.from_pylist(rows[i::parts]), place / f"part-{i}.parquet")
    return folder


def test_what_a_location_is(tmp_path, vector_items):
    folder = dataset(tmp_path / "vectors", vector_items)
    assert is_uri(uri(folder)) and not is_uri(str(folder)) and not is_uri("C:/x")
    assert kind(uri(folder)) == "folder" and kind(uri(vector_items)) == "file"
    assert kind(uri(tmp_path / "missing")) is None and kind(str(tmp_path / "missing")) is None
    assert local_path(uri(vector_items)) == str(vector_items.resolve())
    assert local_path("s3://bucket/items.jsonl") is None
    local = parquet_files(folder)
    assert parquet_files(uri(folder)) == [uri(tmp_path / "vectors" / p) for p in
                                          ("part-0.parquet", "part-2.parquet", "sub/part-1.parquet")]
    assert [p.split("/vectors/")[1] for p in local] == ["part-0.parquet", "part-2.parquet",
                                                        "sub/part-1.parquet"]


def test_a_dataset_leaves_out_hidden_names_as_pyarrow_does(tmp_path, vector_items):
    """A writer's staging leftovers (``.tokens.PID.RANDOM.tmp/``) and ``_``-names are not data."""
    folder = dataset(tmp_path / "vectors", vector_items)
    for hidden in (".tokens.123.ab.tmp/part-00000.parquet", "_temporary/part-9.parquet",
                   "sub/.part-7.parquet"):
        (folder / hidden).parent.mkdir(parents=True, exist_ok=True)
        (folder / hidden).write_bytes((folder / "part-0.parquet").read_bytes())
    expected = ["part-0.parquet", "part-2.parquet", "sub/part-1.parquet"]
    assert [p.split("/vectors/")[1] for p in parquet_files(folder)] == expected
    assert [p.split("/vectors/")[1] for p in parquet_files(uri(folder))] == expected
    import pyarrow.dataset as ds

    assert sorted(p.split("/vectors/")[1] for p in ds.dataset(folder).files) == expected


def test_fit_and_encode_read_uris_as_their_paths(tmp_path, vector_items):
    folder = dataset(tmp_path / "vectors", vector_items)
    for source, model in ((vector_items, "a"), (uri(vector_items), "b")):
        result = run("fit", source, "--model", tmp_path / model, "--embedding-field", "vec",
                     *TINY_FIT)
        assert result.exit_code == 0, result.output
    assert (pq.read_table(tmp_path / "a" / "tokens.parquet").to_pylist()
            == pq.read_table(tmp_path / "b" / "tokens.parquet").to_pylist())
    for source, out in ((folder, "local.jsonl"), (uri(folder), "remote.jsonl")):
        result = run("encode", source, "--model", tmp_path / "a", "--out", tmp_path / out, "-q")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "remote.jsonl").read_bytes()
    assert len((tmp_path / "local.jsonl").read_text().splitlines()) == 120


def test_file_uri_outputs_and_token_folders_are_their_paths(tmp_path, vector_items):
    """`--out file:///…/` writes the local folder, and `--existing file:///…/` reads it back."""
    folder = dataset(tmp_path / "vectors", vector_items)
    result = run("fit", vector_items, "--model", tmp_path / "m", "--embedding-field", "vec",
                 *TINY_FIT)
    assert result.exit_code == 0, result.output
    tokens = tmp_path / "tokens"
    result = run("encode", folder, "--model", tmp_path / "m", "--out", uri(tokens) + "/", "-q")
    assert result.exit_code == 0, result.output
    assert [p.name for p in tokens.iterdir()] == ["part-00000.parquet"]
    for existing, out in ((tokens, "local.jsonl"), (uri(tokens) + "/", "uri.jsonl")):
        result = run("encode", folder, "--model", tmp_path / "m", "--existing", existing,
                     "--out", tmp_path / out, "-q")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "uri.jsonl").read_bytes()


def test_messages_name_the_uri_and_row(tmp_path, vector_items):
    folder = dataset(tmp_path / "vectors", vector_items)
    part = folder / "sub" / "part-1.parquet"
    rows = pq.read_table(part).to_pylist()
    rows[6]["vec"] = None
    pq.write_table(pa.Table.from_pylist(rows), part)
    result = run("fit", uri(folder), "--model", tmp_path / "m", "--embedding-field", "vec", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {uri(part)}:7: field 'vec' is null; every item "
                                     "needs a vector")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("location, message", [
    ("nosuch://bucket/items.jsonl", "cannot open this URI (Unrecognized filesystem type in URI: "
                                    "nosuch://bucket/items.jsonl)"),
    ("MISSING", "no such file"),
])
def test_a_bad_uri_is_one_error_line(tmp_path, location, message):
    location = uri(tmp_path / "missing.jsonl") if location == "MISSING" else location
    result = run("fit", location, "--model", tmp_path / "m", "--embedding-field", "vec", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {location}: {message}"


def test_an_output_over_a_uri_inputs_file_is_refused(tmp_path, fitted, vector_items):
    before = vector_items.read_bytes()
    result = run("encode", uri(vector_items), "--model", fitted, "--out", vector_items,
                 "--format", "jsonl")
    assert result.exit_code == 2
    assert "is also an input of this command" in result.stderr
    assert vector_items.read_bytes() == before


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_splits_of_a_uri_read_what_its_path_reads(tmp_path, vector_items, suffix):
    path = vector_items
    if suffix == ".parquet":
        path = tmp_path / "items.parquet"
        rows = [json.loads(line) for line in vector_items.read_text().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=25)
    fields = ItemFields("id", ("text",), "vec")
    whole = [(i.ids, i.lines) for i in item_chunks(str(path), fields, size=1000)]
    splits = plan_splits(uri(path), None, 30)
    assert len(splits) > 1 and all(s.path == uri(path) for s in splits)
    seen, ids, lines = IdRegister("id"), [], []
    for split in splits:
        for chunk in split_chunks(split, fields, 1000):
            seen.add_all(chunk.ids, chunk.source, chunk.lines)
            ids += chunk.ids
            lines += chunk.lines
    assert [(ids, lines)] == whole
