"""Never destroying what the user did not ask to replace: model targets, --out targets, crash
safety at every step of a replacement (fault injection in a child process), permissions,
special targets (stdout, FIFOs, symlinks) and closed pipes."""

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hrqtok import atomic
from tests.conftest import TINY_FIT, clustered_vectors
from tests.test_cli import run

ROOT = Path(__file__).resolve().parents[1]
HRQTOK = [sys.executable, "-m", "hrqtok"]


def _fit(items, model, *extra):
    return run("fit", items, "--model", model, "--embedding-field", "vec", *TINY_FIT, *extra)


@pytest.fixture
def fitted(tmp_path, vector_items):
    model = tmp_path / "model"
    assert _fit(vector_items, model).exit_code == 0
    return model


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(result, *words):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# --- --model -------------------------------------------------------------------------------------
def test_fit_refuses_a_folder_of_user_files_and_leaves_it_untouched(tmp_path, vector_items):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    inside = folder / "items.jsonl"
    inside.write_bytes(vector_items.read_bytes())
    before = _snapshot(folder)
    for extra in ([], ["--force"]):
        result = _fit(inside, folder, *extra)
        assert result.exit_code == 2
        _one_error_line(result, "--model", "not an hrqtok model")
    assert _snapshot(folder) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_fit_refuses_a_regular_file_as_model(tmp_path, vector_items):
    target = tmp_path / "model"
    target.write_text("not a model")
    result = _fit(vector_items, target, "--force")
    assert result.exit_code == 2 and target.read_text() == "not a model"
    assert sorted(os.listdir(tmp_path)) == ["cache", "items.jsonl", "model"]


def test_replacing_a_model_needs_force(tmp_path, vector_items, fitted):
    before = _snapshot(fitted)
    refused = _fit(vector_items, fitted, "--seed", "3")
    assert refused.exit_code == 2
    _one_error_line(refused, "--force")
    assert _snapshot(fitted) == before
    assert _fit(vector_items, fitted, "--seed", "3", "--force").exit_code == 0
    assert _snapshot(fitted) != before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _fit(vector_items, empty).exit_code == 0  # an empty folder is as good as a new one


def test_force_never_replaces_a_model_holding_the_input(tmp_path, vector_items, fitted):
    inside = fitted / "tokens.parquet"
    before = _snapshot(fitted)
    result = run("fit", inside, "--model", fitted, "--force", "--embedding-field", "vec", *TINY_FIT)
    assert result.exit_code == 2 and _snapshot(fitted) == before


# --- --out ---------------------------------------------------------------------------------------
def test_out_never_replaces_an_input(tmp_path, fitted, vector_items):
    catalogue = vector_items.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(vector_items)
    for out in (vector_items, link):
        result = run("encode", vector_items, "--model", fitted, "--out", out)
        assert result.exit_code == 2
        _one_error_line(result, "input")
    assert vector_items.read_bytes() == catalogue
    table = fitted / "tokens.parquet"
    own = table.read_bytes()
    result = run("encode", vector_items, "--model", fitted, "--out", table)
    assert result.exit_code == 2 and "inside the model directory" in result.stderr
    old = tmp_path / "old.parquet"
    old.write_bytes(own)
    result = run("encode", vector_items, "--model", fitted, "--existing", old, "--out", old)
    assert result.exit_code == 2 and old.read_bytes() == own and table.read_bytes() == own


def test_out_that_cannot_be_written_is_refused_before_work(tmp_path, fitted):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")  # a user's folder: not a token folder
    (tmp_path / "file").write_text("x")
    for out, words in ((tmp_path / "folder", "holds notes.txt, which is not a token table part"),
                       (tmp_path / "file" / "t.parquet", "is a file, not a folder"),
                       (f"{tmp_path / 'file'}/", "is a file; a folder of part files")):
        result = run("encode", "--model", fitted, "--out", out)
        assert result.exit_code == 2
        _one_error_line(result, words)
    assert (tmp_path / "file").read_text() == "x"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["notes.txt"]
    unknown = run("encode", "--model", fitted, "--out", tmp_path / "t.tsv")
    assert unknown.exit_code == 2 and "--format" in unknown.stderr


def test_pq_suffix_is_parquet(tmp_path, fitted):
    assert run("encode", "--model", fitted, "--out", tmp_path / "t.pq", "-q").exit_code == 0
    assert pq.read_table(tmp_path / "t.pq").num_rows == 120


def test_outputs_honour_the_umask(tmp_path, vector_items):
    old = os.umask(0o022)
    try:
        assert _fit(vector_items, tmp_path / "m").exit_code == 0
        assert run("encode", "--model", tmp_path / "m", "--out", tmp_path / "t.parquet").exit_code == 0
        os.umask(0o077)
        assert run("encode", "--model", tmp_path / "m", "--out", tmp_path / "private.jsonl").exit_code == 0
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "m") == 0o755 and mode(tmp_path / "t.parquet") == 0o644
    assert {mode(p) for p in (tmp_path / "m").iterdir()} == {0o644}
    assert mode(tmp_path / "private.jsonl") == 0o600


def test_symlink_out_writes_its_target(tmp_path, fitted):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert run("encode", "--model", fitted, "--out", link, "-q").exit_code == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 120


def test_fifo_out_is_written_through(tmp_path, fitted):
    fifo = tmp_path / "tokens.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = run("encode", "--model", fitted, "--out", fifo, "-q")
    reader.join(timeout=30)
    assert result.exit_code == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    rows = [json.loads(line) for line in got[0].decode().splitlines()]
    assert len(rows) == 120 and rows[0]["id"] == "item000"


def test_a_full_disk_is_one_error_line(fitted):
    result = run("encode", "--model", fitted, "--out", "/dev/full", "-q")
    assert result.exit_code == 1
    _one_error_line(result, "disk is full")


def _cli(*args, stdin=None, cwd=None, shell=False):
    return subprocess.run(args if not shell else args[0], input=stdin, capture_output=True,
                          cwd=cwd or ROOT, shell=shell, executable="/bin/bash" if shell else None,
                          timeout=300)


@pytest.mark.slow
def test_dev_stdout_closed_pipe_and_process_substitution(tmp_path, fitted):
    big = tmp_path / "big.jsonl"
    vectors = clustered_vectors(n=6000)
    big.write_text("".join(json.dumps({"id": f"i{i}", "vec": v.tolist()}) + "\n"
                           for i, v in enumerate(vectors)))
    cmd = " ".join(HRQTOK)
    stdout = _cli(f"{cmd} encode {big} --model {fitted} --out /dev/stdout -q | wc -l", shell=True)
    assert stdout.returncode == 0 and stdout.stdout.strip() == b"6000", stdout.stderr
    # head closes the pipe early: hrqtok ends quietly with exit 0, so pipefail scripts pass
    piped = _cli(f"set -o pipefail; {cmd} encode {big} --model {fitted} --format strings -q | head -1",
                 shell=True)
    noise = [line for line in piped.stderr.splitlines() if not line.startswith(b"warning:")]
    assert piped.returncode == 0 and noise == [], piped.stderr  # quality warnings aside
    assert piped.stdout.decode().startswith("i0\t<a_")
    substituted = _cli(f"{cmd} encode <(head -5 {big}) --model {fitted} --out >(wc -l > {tmp_path}/n) -q; "
                       "sleep 1", shell=True)
    assert substituted.returncode == 0, substituted.stderr
    assert (tmp_path / "n").read_text().strip() == "5"


@pytest.mark.slow
def test_usage_errors_are_one_error_line(tmp_path):
    for args in (["fit", "--levels", "99", "x.jsonl"], ["fit", "--bogus"],
                 ["fit", "x.jsonl", "--seed", str(2**64)], ["fit", "x.jsonl", "--test-fraction", "0.2"]):
        result = _cli(*HRQTOK, *args, cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    bare = _cli(*HRQTOK, cwd=tmp_path)  # no command: the help, and no error line
    assert bare.returncode == 2 and b"Usage" in bare.stdout and b"Error" not in bare.stderr


# --- crash safety: stop a replacement at every step ----------------------------------------------
CRASH = """
import os, sys
from pathlib import Path
import hrqtok.atomic as atomic
step, target, fallback = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
def fault(name):
    if name == step:
        os._exit(9)  # as kill -9: no cleanup runs
atomic._fault = fault
if fallback:
    def no_exchange(a, b):
        raise OSError(38, "renameat2 is not available")
    atomic.exchange = no_exchange
if target.suffix == ".txt":
    with atomic.atomic_path(target) as tmp:
        tmp.write_text("new")
else:
    with atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("new")
"""


def _crash(step: str, target: Path, fallback: bool) -> int:
    return subprocess.run([sys.executable, "-c", CRASH, step, str(target), str(int(fallback))],
                          cwd=ROOT, timeout=60).returncode


@pytest.mark.parametrize("fallback, steps", [
    (False, ["dir-written", "exchanged", None]),
    (True, ["dir-written", "old-moved", "new-moved", None]),
])
def test_directory_replacement_is_crash_safe_at_every_step(tmp_path, fallback, steps):
    for step in steps:
        target = tmp_path / f"model-{step}"
        target.mkdir()
        (target / "v").write_text("old")
        code = _crash(step or "never", target, fallback)
        assert code == (9 if step else 0)
        if not (fallback and step == "old-moved"):
            # with the atomic exchange the old or the new folder is at the path at every instant
            assert (target / "v").read_text() in ("old", "new")
        atomic.recover(target)  # what the next command does first
        assert (target / "v").read_text() == ("new" if step in ("exchanged", "new-moved", None)
                                               else "old")
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{target.name}.")] == []


def test_file_replacement_is_crash_safe(tmp_path):
    for step in ("file-written", None):
        target = tmp_path / f"t-{step}.txt"
        target.write_text("old")
        assert _crash(step or "never", target, False) == (9 if step else 0)
        assert target.read_text() == ("old" if step else "new")
        with atomic.atomic_path(target) as tmp:  # the next write cleans the dead one's temp
            tmp.write_text("next")
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_leftovers_of_a_live_process_are_kept(tmp_path):
    target = tmp_path / "m"
    live = tmp_path / f".m.{os.getpid()}.abc.tmp"
    live.mkdir()
    atomic.recover(target)
    assert live.exists()


@pytest.mark.slow
def test_a_crashed_model_replacement_leaves_a_loadable_model(tmp_path, vector_items, fitted):
    from hrqtok.store.model_dir import load_model_dir

    old = load_model_dir(fitted).fingerprint
    script = CRASH.split("if target.suffix")[0] + (
        "from hrqtok.cli import main\n"
        f"sys.argv = ['hrqtok', 'fit', {str(vector_items)!r}, '--model', str(target), '--force', "
        "'--seed', '7', '--embedding-field', 'vec', " + ", ".join(repr(a) for a in TINY_FIT) + "]\n"
        "main()\n")
    for step in ("dir-written", "exchanged"):
        code = subprocess.run([sys.executable, "-c", script, step, str(fitted), "0"], cwd=ROOT,
                              timeout=300).returncode
        assert code == 9
        loaded = load_model_dir(fitted)  # recovers, then verifies the whole directory
        assert loaded.fingerprint == old if step == "dir-written" else loaded.fingerprint != old
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]
        old = loaded.fingerprint
