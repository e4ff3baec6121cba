"""Inputs in a real S3 store: a local S3-compatible server (moto's, started by conftest.s3 on a free
port, with its own buckets and objects) reached over HTTP by pyarrow's S3 filesystem, as a
user's MinIO or AWS bucket would be. The endpoint and credentials come from the environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``…) or from the URI's query, as pyarrow takes them.
An ``s3://`` input gives what its local copy gives, byte for byte, in fit (also --sample),
embed, encode of a Parquet dataset, inspect and the Ray engine (whose table goes to the store);
a bad object or a missing one is one error line naming the URI. Outputs at ``s3://`` URIs:
tests/test_remote_outputs.py."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hrqtok import locations
from tests.conftest import BUCKET, TINY_FIT, upload
from tests.test_cli import run


def as_parquet(vector_items, path, group_rows=25):
    rows = [json.loads(line) for line in vector_items.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group_rows)
    return path


def dataset(folder, vector_items):
    """A Parquet dataset of three parts, one in a sub-folder."""
    rows = [json.loads(line) for line in vector_items.read_text().splitlines()]
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        place = folder / "sub" if i % 2 else folder
        pq.write_table(pa.Table.from_pylist(rows[i::3]), place / f"part-{i}.parquet",
                       row_group_size=15)
    return folder


def same_tokens(a, b):
    return (pq.read_table(a / "tokens.parquet").to_pylist()
            == pq.read_table(b / "tokens.parquet").to_pylist())


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_fit_from_s3_is_the_fit_of_its_local_copy(tmp_path, s3, vector_items, kind):
    source = vector_items if kind == "jsonl" else as_parquet(vector_items,
                                                             tmp_path / "items.parquet")
    remote = upload(s3, source, f"fit/{source.name}")
    for location, model in ((source, "local"), (remote, "remote")):
        result = run("fit", location, "--model", tmp_path / model, "--embedding-field", "vec",
                     *TINY_FIT)
        assert result.exit_code == 0, result.output
    assert same_tokens(tmp_path / "local", tmp_path / "remote")


def test_fit_samples_an_s3_input_as_its_local_copy(tmp_path, s3, vector_items):
    source = as_parquet(vector_items, tmp_path / "items.parquet")
    remote = upload(s3, source, "sample/items.parquet")
    for location, model in ((source, "local"), (remote, "remote")):
        result = run("fit", location, "--model", tmp_path / model, "--embedding-field", "vec",
                     "--sample", 70, "--seed", 3, *TINY_FIT)
        assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "remote" / "tokens.parquet").num_rows == 70
    assert same_tokens(tmp_path / "local", tmp_path / "remote")


def test_encode_and_inspect_an_s3_dataset_as_its_local_copy(tmp_path, s3, fitted, vector_items):
    folder = dataset(tmp_path / "vectors", vector_items)
    remote = upload(s3, folder, "vectors")
    for location, out in ((folder, "local.parquet"), (remote + "/", "remote.parquet")):
        result = run("encode", location, "--model", fitted, "--out", tmp_path / out,
                     "--embedding-field", "vec", "-q")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "remote.parquet").read_bytes()
    assert pq.read_table(tmp_path / "remote.parquet").num_rows == 120
    reports = []
    for location in (folder, remote):
        result = run("inspect", location, "--model", fitted, "--embedding-field", "vec", "--json")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert reports[0] == reports[1]


def test_embed_reads_texts_from_s3_as_its_local_copy(tmp_path, s3, text_items, fake_embedder):
    remote = upload(s3, text_items, "texts/items.jsonl")
    for location, out in ((text_items, "local.parquet"), (remote, "remote.parquet")):
        result = run("embed", location, "--out", tmp_path / out, "-q")
        assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "local.parquet").equals(pq.read_table(tmp_path / "remote.parquet"))
    assert pq.read_table(tmp_path / "remote.parquet").num_rows == 60


def test_the_endpoint_may_be_in_the_uri(tmp_path, s3, fitted, vector_items, monkeypatch):
    """Without AWS_ENDPOINT_URL: pyarrow's URI options name the server; a dataset's parts
    keep them."""
    _, endpoint = s3
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    locations.filesystem_of.cache_clear()
    remote = upload(s3, dataset(tmp_path / "vectors", vector_items), "query/vectors")
    query = f"?endpoint_override={endpoint}&scheme=http"
    assert locations.parquet_files(remote + query) == [
        f"{remote}/{part}{query}" for part in ("part-0.parquet", "part-2.parquet",
                                               "sub/part-1.parquet")]
    result = run("encode", remote + query, "--model", fitted, "--out", tmp_path / "t.parquet",
                 "--embedding-field", "vec", "-q")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 120
    locations.filesystem_of.cache_clear()


def test_a_bad_row_in_an_s3_part_names_its_uri(tmp_path, s3, vector_items):
    folder = dataset(tmp_path / "vectors", vector_items)
    part = folder / "sub" / "part-1.parquet"
    rows = pq.read_table(part).to_pylist()
    rows[20]["vec"] = None  # the second row group's sixth row
    pq.write_table(pa.Table.from_pylist(rows), part, row_group_size=15)
    remote = upload(s3, folder, "bad/vectors")
    result = run("fit", remote, "--model", tmp_path / "m", "--embedding-field", "vec", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {remote}/sub/part-1.parquet:21: field 'vec' is "
                                     "null; every item needs a vector")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("key", ["fit/nothing.jsonl", "no-such-bucket/items.jsonl"])
def test_a_missing_s3_object_is_one_error_line(tmp_path, s3, key):
    location = f"s3://{BUCKET}/{key}" if key.startswith("fit/") else f"s3://{key}"
    result = run("fit", location, "--model", tmp_path / "m", "--embedding-field", "vec", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {location}: no such file"
    assert not (tmp_path / "m").exists()


def test_the_ray_engine_reads_s3_as_the_local_engine(tmp_path, s3, fitted, vector_items):
    """Actors of a local Ray cluster (started after the environment names the server, so its
    workers inherit it) read their parts of the S3 dataset themselves."""
    ray = pytest.importorskip("ray")
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    remote = upload(s3, dataset(tmp_path / "vectors", vector_items), "ray/vectors")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    out = {"local": tmp_path / "local.parquet", "ray": f"s3://{BUCKET}/ray/tokens.parquet"}
    try:
        for engine in ("local", "ray"):  # the driver writes the table, here to the store too
            result = run("encode", remote, "--model", fitted, "--out", out[engine],
                         "--embedding-field", "vec", "--engine", engine, "-q")
            assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    written = s3[0].open_input_file(f"{BUCKET}/ray/tokens.parquet").read()
    assert written == (tmp_path / "local.parquet").read_bytes()
