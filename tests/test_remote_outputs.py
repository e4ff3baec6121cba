"""Outputs in a real S3 store (the local S3-compatible server of ``conftest.s3``): `encode --out`
and `embed --out` at an ``s3://`` URI write what they write to a local path, byte for byte, as a
file or a folder of part files; a failure part way leaves the old output whole and no visible
leftovers; a target that cannot work is refused before any work; options that take local paths
refuse URIs instead of writing a local ``s3:`` folder."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from hrqtok.errors import OptionError
from hrqtok.store import token_folders, vectors
from hrqtok.store.tables import write_chunks
from hrqtok.store.token_folders import write_folder
from tests.conftest import BUCKET, upload
from tests.test_cli import run


def keys(s3, under: str) -> list[str]:
    """Every object below ``under`` in the bucket, hidden ones too."""
    filesystem, _ = s3
    infos = filesystem.get_file_info(fs.FileSelector(f"{BUCKET}/{under}", recursive=True,
                                                     allow_not_found=True))
    return sorted(i.path[len(BUCKET) + 1:] for i in infos if i.type == fs.FileType.File)


def fetch(s3, key: str) -> bytes:
    return s3[0].open_input_file(f"{BUCKET}/{key}").read()


def chunks(n: int, *, fail_after: int | None = None):
    """(ids, tokens) chunks of 10 rows; raises after ``fail_after`` chunks."""
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("stopped part way")
        ids = [f"item-{i}-{j}" for j in range(10)]
        yield ids, np.arange(30, dtype=np.int64).reshape(10, 3) % 7 + i


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_encode_writes_a_file_to_s3_as_to_a_local_path(tmp_path, s3, fitted, fmt):
    local = tmp_path / f"tokens.{fmt}"
    remote = f"s3://{BUCKET}/file-{fmt}/tokens.{fmt}"
    for out in (local, remote):
        result = run("encode", "--model", fitted, "--out", out, "-q")
        assert result.exit_code == 0, result.output
    assert fetch(s3, f"file-{fmt}/tokens.{fmt}") == local.read_bytes()
    assert keys(s3, f"file-{fmt}") == [f"file-{fmt}/tokens.{fmt}"]  # no staging left over


def test_encode_writes_a_token_folder_to_s3_as_to_a_local_one(tmp_path, s3, fitted, vector_items,
                                                                monkeypatch):
    monkeypatch.setattr(token_folders, "PART_ROWS", 50)  # 120 items: three parts
    local, remote = tmp_path / "tokens", f"s3://{BUCKET}/folder/tokens/"
    for out in (f"{local}/", remote, remote):  # the second remote run replaces the first
        result = run("encode", vector_items, "--model", fitted, "--out", out,
                     "--embedding-field", "vec", "-q")
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in local.iterdir())
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert keys(s3, "folder") == [f"folder/tokens/{name}" for name in names]
    for name in names:
        assert fetch(s3, f"folder/tokens/{name}") == (local / name).read_bytes()
    dataset = ds.dataset(f"{BUCKET}/folder/tokens", filesystem=s3[0], format="parquet")
    assert dataset.to_table().num_rows == 120


def test_a_smaller_table_replaces_every_old_part(tmp_path, s3):
    remote = f"s3://{BUCKET}/shrink/tokens/"
    write_folder(chunks(3), {"model": "a"}, remote, part_rows=10)
    write_folder(chunks(2), {"model": "b"}, remote, part_rows=10)
    write_folder(chunks(2), {"model": "b"}, tmp_path / "tokens", part_rows=10)
    assert keys(s3, "shrink") == ["shrink/tokens/part-00000.parquet",
                                  "shrink/tokens/part-00001.parquet"]
    for name in ("part-00000.parquet", "part-00001.parquet"):
        assert fetch(s3, f"shrink/tokens/{name}") == (tmp_path / "tokens" / name).read_bytes()


def test_a_failure_part_way_leaves_the_old_s3_output_whole(s3):
    table, folder = f"s3://{BUCKET}/failing/t.parquet", f"s3://{BUCKET}/failing/parts/"
    write_chunks(chunks(2), {"model": "old"}, table)
    write_folder(chunks(3), {"model": "old"}, folder, part_rows=10)
    before = {key: fetch(s3, key) for key in keys(s3, "failing")}
    with pytest.raises(RuntimeError, match="stopped part way"):
        write_chunks(chunks(4, fail_after=2), {"model": "new"}, table)
    with pytest.raises(RuntimeError, match="stopped part way"):
        write_folder(chunks(4, fail_after=2), {"model": "new"}, folder, part_rows=10)
    assert {key: fetch(s3, key) for key in keys(s3, "failing")} == before  # staging gone too


def test_embed_writes_vectors_to_s3_as_to_a_local_file(tmp_path, s3, text_items, fake_embedder):
    local, remote = tmp_path / "vectors.parquet", f"s3://{BUCKET}/embed/vectors.parquet"
    for out in (local, remote):
        result = run("embed", text_items, "--out", out, "-q")
        assert result.exit_code == 0, result.output
    assert fetch(s3, "embed/vectors.parquet") == local.read_bytes()
    assert keys(s3, "embed") == ["embed/vectors.parquet"]


def test_token_tables_at_s3_are_read_as_their_local_copies(tmp_path, s3, fitted, vector_items,
                                                             monkeypatch):
    """`--existing`, `decode --tokens` and `inspect --tokens` take a table (a file or a folder
    of parts) at a URI, and what they make is what its local copy makes."""
    monkeypatch.setattr(token_folders, "PART_ROWS", 50)
    tables = {"local": f"{tmp_path}/old/", "remote": f"s3://{BUCKET}/read/old/"}
    for out in tables.values():
        result = run("encode", vector_items, "--model", fitted, "--out", out,
                     "--embedding-field", "vec", "-q")
        assert result.exit_code == 0, result.output
    first = pq.read_table(tmp_path / "old" / "part-00000.parquet").column("tokens")[0].as_py()
    made = {}
    for name, table in tables.items():
        out = tmp_path / f"{name}.parquet"
        result = run("encode", vector_items, "--model", fitted, "--existing", table, "--out", out,
                     "--embedding-field", "vec", "-q")
        assert result.exit_code == 0, result.output
        decoded = run("decode", "--model", fitted, "--tokens", table, *first, "--json")
        inspected = run("inspect", "--model", fitted, "--tokens", table, "--json")
        assert decoded.exit_code == 0 and inspected.exit_code == 0, (decoded.output,
                                                                     inspected.output)
        made[name] = (out.read_bytes(), decoded.stdout, inspected.stdout)
    assert made["remote"] == made["local"]


def test_s3_targets_that_cannot_work_are_refused_before_any_work(tmp_path, s3, fitted,
                                                                   vector_items):
    filesystem, _ = s3
    source = upload(s3, vector_items, "refused/items.jsonl")
    upload(s3, vector_items, "refused/mixed/notes.jsonl")
    cases = [
        (("encode", "--model", fitted, "--out", "s3://no-such-bucket/t.parquet"),
         "Error: --out: cannot write s3://no-such-bucket/t.parquet ("),
        (("encode", source, "--model", fitted, "--embedding-field", "vec", "--out", source),
         f"Error: --out: {source} is {source}, an input of this command"),
        (("encode", source, "--model", fitted, "--embedding-field", "vec", "--out",
          f"s3://{BUCKET}/refused/"),
         f"Error: --out: s3://{BUCKET}/refused/ holds {source}, an input of this command"),
        (("encode", "--model", fitted, "--out", f"s3://{BUCKET}/refused/mixed/"),
         f"Error: --out: s3://{BUCKET}/refused/mixed/ holds notes.jsonl, which is not a token "
         "table part written by hrqtok"),
        (("encode", "--model", fitted, "--out", f"{source}/"),
         f"Error: --out: {source}/ is a file; a folder of part files needs a new location"),
        (("embed", source, "--out", f"s3://{BUCKET}/refused/mixed"),
         f"Error: --out: s3://{BUCKET}/refused/mixed holds notes.jsonl, which is not a vector "
         "table part written by hrqtok"),
    ]
    before = {key: fetch(s3, key) for key in keys(s3, "")}
    for args, message in cases:
        result = run(*args, "-q")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert {key: fetch(s3, key) for key in keys(s3, "")} == before  # probes gone too


def test_options_that_take_local_paths_refuse_uris(tmp_path, fitted, vector_items, monkeypatch):
    """A Path option has already made ``s3://b/m`` into ``s3:/b/m``: without the refusal the
    command wrote a local folder named ``s3:`` and said nothing."""
    monkeypatch.chdir(tmp_path)
    for args, option in [
        (("fit", vector_items, "--embedding-field", "vec", "--model", "s3://bucket/m"), "--model"),
        (("inspect", "--model", fitted, "--plot", "gs://bucket/usage.png"), "--plot"),
        (("export", "movielens-100k", "--out", "s3://bucket/ml"), "--out"),
        (("encode", "--model", "s3://bucket/m", "--out", "t.parquet"), "--model"),
    ]:
        result = run(*args, "-q")
        assert result.exit_code == 2, (args, result.output)
        uri = args[args.index(option) + 1]
        assert result.stderr.strip() == (f"Error: {option}: {uri} is a URI; {option} takes a "
                                         "local path (a local one that starts so: give it from /)")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(":")]  # no s3: nor gs:


def test_check_remote_output_refuses_what_a_caller_cannot_write(s3):
    from hrqtok.remote_writes import check_remote_output

    with pytest.raises(OptionError, match="--out: s3://"):
        check_remote_output("s3://bucket/t.parquet?scheme=nonsense")
    with pytest.raises(OptionError, match="names a folder; name a file"):
        check_remote_output(f"s3://{BUCKET}/vectors/", folders=False)
    with pytest.raises(OptionError, match="is the root of its bucket or store"):
        check_remote_output(f"s3://{BUCKET}/", folders=True)


def test_embed_writes_a_vector_folder_locally_and_to_s3(tmp_path, s3, text_items, fitted,
                                                        fake_embedder, monkeypatch):
    """`embed --out DIR/`: parts of about VECTOR_PART_BYTES (here 20 rows of 48 floats), which
    read as the single file reads, in pyarrow.dataset and in encode."""
    monkeypatch.setattr(vectors, "VECTOR_PART_BYTES", 20 * 4 * 48)
    file, folder = tmp_path / "vectors.parquet", tmp_path / "vectors"
    remote = f"s3://{BUCKET}/vector-folder/vectors/"
    for out in (file, f"{folder}/", remote):
        result = run("embed", text_items, "--out", out, "-q")
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for name in names:
        assert fetch(s3, f"vector-folder/vectors/{name}") == (folder / name).read_bytes()
    whole = pq.read_table(file)
    parts = ds.dataset(folder, format="parquet").to_table()
    assert parts.to_pylist() == whole.to_pylist()
    assert pq.read_schema(folder / names[0]).metadata == whole.schema.metadata
    model = fitted.parent / "model-48"
    result = run("fit", file, "--embedding-field", "embedding", "--model", model,
                 "--quantizer", "rq-kmeans", "--codebook-size", 4, "-q")
    assert result.exit_code == 0, result.output
    for source, out in ((file, "from-file.parquet"), (remote, "from-parts.parquet")):
        result = run("encode", source, "--model", model, "--embedding-field", "embedding",
                     "--out", tmp_path / out, "-q")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "from-file.parquet").read_bytes() == (
        tmp_path / "from-parts.parquet").read_bytes()
    tokens = tmp_path / "tokens"  # a token folder is not a vector folder's to replace
    assert run("encode", "--model", fitted, "--out", f"{tokens}/", "-q").exit_code == 0
    result = run("embed", text_items, "--out", f"{tokens}/", "-q")
    assert result.exit_code == 2
    assert "holds part-00000.parquet, which is not a vector table part" in result.stderr


class NoMoveHandler(fs.FileSystemHandler):
    """A local folder as a store that cannot move (as Azure storage without a hierarchical
    namespace, where pyarrow's move raises ArrowNotImplementedError)."""

    def __init__(self, root):
        self.base = fs.SubTreeFileSystem(str(root), fs.LocalFileSystem())
        self.moves = 0

    def __eq__(self, other):
        return other is self

    def __ne__(self, other):
        return other is not self

    def get_type_name(self):
        return "no-move"

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.base.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.base.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.base.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.base.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.base.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.base.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.base.delete_file(path)

    def move(self, src, dest):
        self.moves += 1
        raise NotImplementedError("no move without a hierarchical namespace")

    def copy_file(self, src, dest):
        self._parent(dest)
        self.base.copy_file(src, dest)

    def _parent(self, path):  # an object store has no folders to make first
        self.base.create_dir(path.rpartition("/")[0], recursive=True)

    def open_input_stream(self, path):
        return self.base.open_input_stream(path)

    def open_input_file(self, path):
        return self.base.open_input_file(path)

    def open_output_stream(self, path, metadata):
        self._parent(path)
        return self.base.open_output_stream(path)

    def open_append_stream(self, path, metadata):
        raise NotImplementedError


def test_a_store_that_cannot_move_gets_a_copy_and_no_leftovers(tmp_path, monkeypatch):
    from hrqtok import locations, remote_writes
    from hrqtok.store import part_folders

    store = tmp_path / "store"
    store.mkdir()
    handler = NoMoveHandler(store)
    filesystem = fs.PyFileSystem(handler)
    for module in (locations, remote_writes, part_folders):
        monkeypatch.setattr(module, "filesystem_of",
                            lambda uri: (filesystem, uri.partition("://")[2].partition("?")[0]))
    write_chunks(chunks(3), {"model": "m"}, "abfs://cont/out/t.parquet")
    write_folder(chunks(3), {"model": "m"}, "abfs://cont/out/parts/", part_rows=10)
    write_chunks(chunks(3), {"model": "m"}, str(tmp_path / "t.parquet"))
    write_folder(chunks(3), {"model": "m"}, str(tmp_path / "parts"), part_rows=10)
    assert handler.moves == 4  # each tried to move, then copied
    written = sorted(p.relative_to(store / "cont/out").as_posix()
                     for p in (store / "cont/out").rglob("*") if p.is_file())
    local = sorted(p.relative_to(tmp_path / "parts").as_posix()
                   for p in (tmp_path / "parts").rglob("*") if p.is_file())
    assert written == sorted(["t.parquet", *(f"parts/{name}" for name in local)])  # no staging
    assert (store / "cont/out/t.parquet").read_bytes() == (tmp_path / "t.parquet").read_bytes()
    for name in local:
        assert (store / "cont/out/parts" / name).read_bytes() == (tmp_path / "parts" / name).read_bytes()
