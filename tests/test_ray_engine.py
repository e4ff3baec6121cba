"""`--engine ray` on a real local Ray cluster (2 CPUs, started here): encode and embed as
map_batches over an actor pool give the local engine's tables byte for byte, from every input
kind, cut into many parts; bad input stops with the local engine's message and nothing
written; options that cannot work exit 2."""

from __future__ import annotations

import json
import pickle
import shutil
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from hrqtok import catalogue
from hrqtok.catalogue import encode_catalogue
from hrqtok.engines import RaySettings
from hrqtok.engines.ray_data import MAX_PART_ROWS, part_rows, run_chunks
from hrqtok.engines.work import EmbedWork, EncodeWork
from hrqtok.errors import ArtifactError, InputError, OptionError
from hrqtok.pipeline import EmbedSettings, embed_items, make_embedder
from hrqtok.sources.embedder import embedding_cache_path
from hrqtok.sources.items import ItemFields
from hrqtok.store.model_dir import load_model_dir
from tests.conftest import TINY_FIT
from tests.test_cli import run

SMALL_PARTS = RaySettings(workers=2, split_rows=13)  # 120 items: 10 parts over 2 actors


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module; the engine joins it (it starts one per run when
    this process has none, as the CLI does)."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def as_parquet(rows, path, group_rows):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group_rows)


def inputs(kind, tmp_path, vector_items):
    rows = rows_of(vector_items)
    if kind == "jsonl":
        return vector_items
    if kind == "parquet":  # row groups of 10: parts of 2 groups
        as_parquet(rows, tmp_path / "items.parquet", 10)
        return tmp_path / "items.parquet"
    if kind == "csv":  # one part: CSV is read whole
        path = tmp_path / "items.csv"
        path.write_text("id,vec\n" + "".join(f'{r["id"]},"{r["vec"]}"\n' for r in rows))
        return path
    folder = tmp_path / "dataset"  # a Parquet dataset: parts across files, in path order
    (folder / "b").mkdir(parents=True)
    for i, lo in enumerate(range(0, 120, 40)):
        as_parquet(rows[lo:lo + 40], folder / ("b" if i == 1 else "") / f"part-{i}.parquet", 7)
    return folder


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "csv", "folder"])
def test_encode_on_ray_writes_the_local_bytes(tmp_path, fitted, vector_items, monkeypatch, kind):
    monkeypatch.setattr(catalogue, "INPUT_ROWS", 5)  # chunks within parts, too
    source = str(inputs(kind, tmp_path, vector_items))
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    fields = ItemFields("id", ("text",), "vec")
    expected = encode_catalogue(fitted, source, str(local), fields=fields)
    report = encode_catalogue(fitted, source, str(remote), engine=SMALL_PARTS, fields=fields)
    assert report == expected and report["items"] == 120
    assert remote.read_bytes() == local.read_bytes()


def test_existing_tokens_are_kept_on_ray_as_locally(tmp_path, fitted, vector_items):
    old = tmp_path / "old.parquet"
    encode_catalogue(fitted, None, str(old))
    lines = vector_items.read_text().splitlines()
    grown = tmp_path / "grown.jsonl"  # new ids with old items' vectors: they skip taken indices
    extra = [json.dumps(json.loads(lines[i]) | {"id": f"new{i}"}) for i in range(0, 120, 5)]
    grown.write_text("\n".join(extra + lines[::-1]) + "\n")
    for engine, out in ((None, "local.jsonl"), (SMALL_PARTS, "ray.jsonl")):
        encode_catalogue(fitted, str(grown), str(tmp_path / out), "jsonl", existing=old,
                         engine=engine)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def _same_error_both_ways(tmp_path, fitted, source, *args):
    """The CLI's stderr and exit code on either engine, and that neither wrote anything."""
    results = []
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        result = run("encode", source, "--model", fitted, "--out", out, "--engine", engine,
                     "-q", *args)
        assert not out.exists()
        results.append((result.exit_code, result.stderr.strip().splitlines()[-1]))
    assert results[0] == results[1]
    return results[0]


def test_a_bad_record_in_a_later_part_is_the_local_error(tmp_path, fitted, vector_items):
    lines = vector_items.read_text().splitlines()
    lines[100] = '{"id": "bad", "vec": [1.0, "x"]}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, line = _same_error_both_ways(tmp_path, fitted, bad)
    assert (code, line) == (1, f"Error: {bad}:101: field 'vec' holds text, not a number")


def test_a_duplicate_id_across_parts_is_the_local_error(tmp_path, fitted, vector_items):
    lines = vector_items.read_text().splitlines()
    lines[90] = json.dumps(json.loads(lines[90]) | {"id": "item003"})
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join(lines) + "\n")
    code, line = _same_error_both_ways(tmp_path, fitted, dup)
    assert (code, line) == (1, f"Error: {dup}:91: duplicate id 'item003' in field 'id' (first "
                               "on line 4); ids must be unique")


def test_a_file_without_rows_in_a_dataset_is_the_local_error(tmp_path, fitted, vector_items,
                                                             monkeypatch):
    folder = inputs("folder", tmp_path, vector_items)
    empty = folder / "b" / "part-1.parquet"
    pq.write_table(pq.read_table(empty).slice(0, 0), empty)
    monkeypatch.chdir(tmp_path)  # named as given: a relative path stays relative
    code, line = _same_error_both_ways(tmp_path, fitted, "dataset")
    assert (code, line) == (1, "Error: dataset/b/part-1.parquet: no items found; expected rows")


def test_an_actor_that_cannot_set_up_stops_the_run_with_its_error(fitted, vector_items):
    loaded = load_model_dir(fitted)
    embedding = EmbedWork(partial(make_embedder, EmbedSettings()), embedding_cache_path())
    work = EncodeWork(str(fitted), "0" * 64, 16, 1, embedding)  # not the model's fingerprint
    with pytest.raises(ArtifactError, match="the model changed while encoding"):
        list(run_chunks([str(vector_items)], None, ItemFields("id", ("text",), "vec"), work,
                        chunk_rows=50, settings=RaySettings(workers=2)))
    assert loaded.fingerprint != "0" * 64


def test_texts_are_embedded_by_the_actors_into_the_drivers_cache(tmp_path, text_items):
    model = tmp_path / "model"
    result = run("fit", text_items, "--model", model, "--embedder", "minilm", *TINY_FIT)
    assert result.exit_code == 0, result.output
    remote = tmp_path / "ray.jsonl"
    result = run("encode", text_items, "--model", model, "--out", remote, "--engine", "ray", "-q")
    assert result.exit_code == 0, result.output
    import sqlite3  # the fit embedded the same texts: the actors read them from the cache

    with sqlite3.connect(embedding_cache_path()) as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 60
    local = tmp_path / "local.jsonl"
    assert run("encode", text_items, "--model", model, "--out", local, "-q").exit_code == 0
    assert remote.read_bytes() == local.read_bytes()


def test_embed_on_ray_writes_the_local_table(tmp_path, text_items, monkeypatch):
    settings = EmbedSettings("minilm")
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    monkeypatch.setenv("HRQTOK_CACHE", str(tmp_path / "cache-local"))
    embed_items(str(text_items), local, embed=settings, chunk_size=7)
    monkeypatch.setenv("HRQTOK_CACHE", str(tmp_path / "cache-ray"))  # nothing cached: the
    summary = embed_items(str(text_items), remote, embed=settings, chunk_size=7,  # actors embed
                          engine=RaySettings(workers=2, split_rows=11))
    assert summary == {"items": 60, "dim": 384, "out": str(remote),
                       "embedder": "sentence-transformers/all-MiniLM-L6-v2"}
    a, b = pq.read_table(local), pq.read_table(remote)
    assert a.schema == b.schema and a.schema.metadata == b.schema.metadata
    assert a["id"].to_pylist() == b["id"].to_pylist()
    x, y = (np.stack(t["embedding"].to_numpy(zero_copy_only=False)) for t in (a, b))
    # one thread per actor against two here: float sums in another order, nothing more
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_embed_on_ray_stops_at_a_duplicate_id_like_local(tmp_path, text_items):
    lines = text_items.read_text().splitlines()
    lines[40] = json.dumps(json.loads(lines[40]) | {"id": "t2"})
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join(lines) + "\n")
    errors = []
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        result = run("embed", dup, "--out", out, "--embedder", "minilm", "--engine", engine, "-q")
        errors.append((result.exit_code, result.stderr.strip().splitlines()[-1]))
        assert not out.exists()
    assert errors[0] == errors[1] == (1, f"Error: {dup}:41: duplicate id 't2' in field 'id' "
                                         "(first on line 3); ids must be unique")


def test_options_that_cannot_work_exit_2_before_any_work(tmp_path, fitted, vector_items):
    out = tmp_path / "t.parquet"
    cases = [
        (["encode", "-", "--engine", "ray"], "ray reads files on its workers, not <stdin>"),
        (["encode", vector_items, "--ray-workers", "2"], "needs --engine ray"),
        (["encode", vector_items, "--ray-address", "auto"], "needs --engine ray"),
        (["encode", "--engine", "ray"], "ray encodes ITEMS"),
        (["encode", vector_items, "--engine", "ray", "--ray-workers", "3"],
         "the cluster has 2 CPUs; ask for at most 2 workers"),
        (["embed", vector_items, "--out", out, "--ray-workers", "2"], "needs --engine ray"),
    ]
    for args, message in cases:
        extra = [] if args[0] == "embed" else ["--model", fitted, "--out", out]
        result = run(*args, *extra)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert not out.exists()


def test_a_model_replaced_during_the_run_stops_the_actors(tmp_path, fitted, vector_items):
    loaded = load_model_dir(fitted)
    embedding = EmbedWork(partial(make_embedder, EmbedSettings()), embedding_cache_path())
    work = EncodeWork(str(fitted), loaded.fingerprint, 16, 1, embedding, model=loaded.model)
    shipped = pickle.loads(pickle.dumps(work))  # as the actors get it: no model
    assert shipped.model is None and len(pickle.dumps(work)) < 2000
    other = tmp_path / "other"
    result = run("fit", vector_items, "--model", other, "--embedding-field", "vec", "--seed", "1",
                 *TINY_FIT)
    assert result.exit_code == 0
    shutil.rmtree(fitted)
    shutil.copytree(other, fitted)
    with pytest.raises(ArtifactError, match="the model changed while encoding"):
        shipped.setup()


def test_errors_come_back_from_workers_whole():
    for error in (InputError("bad", source="f.jsonl", line=3), OptionError("--x", "no"),
                  ArtifactError("gone")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert back.__dict__ == error.__dict__ and back.exit_code == error.exit_code


def test_chunks_come_back_in_input_order(fitted, vector_items):
    loaded = load_model_dir(fitted)
    embedding = EmbedWork(partial(make_embedder, EmbedSettings()), embedding_cache_path())
    work = EncodeWork(str(fitted), loaded.fingerprint, 16, 1, embedding, model=loaded.model)
    chunks = list(run_chunks([str(vector_items)], None, ItemFields("id", ("text",), "vec"), work,
                             chunk_rows=4, settings=RaySettings(workers=2, split_rows=6)))
    assert [line for chunk in chunks for line in chunk.lines] == list(range(1, 121))
    assert [chunk.split for chunk in chunks] == sorted(chunk.split for chunk in chunks)
    local = EncodeWork(str(fitted), loaded.fingerprint, 16, 1, embedding, model=loaded.model)
    local.setup()
    codes = np.concatenate([chunk.values for chunk in chunks])
    np.testing.assert_array_equal(codes, local.codes(np.array(
        [json.loads(line)["vec"] for line in vector_items.read_text().splitlines()],
        dtype=np.float32)))


def test_parts_share_the_input_among_the_workers():
    assert part_rows(None, 2) == MAX_PART_ROWS  # size unknown: the largest part
    assert part_rows(2439, 2) == 305  # 8 parts: 4 a worker, smaller than a chunk
    assert part_rows(10**6, 2) == 65536  # 16 parts of the largest size
    assert part_rows(3, 4) == 1
