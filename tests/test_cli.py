import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hrqtok.cli import app
from tests.conftest import TINY_FIT

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_fit_writes_a_complete_model_directory(fitted):
    names = {p.name for p in fitted.iterdir()}
    assert names == {"config.json", "model.safetensors", "train_log.jsonl", "metrics.json", "tokens.parquet"}
    config = json.loads((fitted / "config.json").read_text())
    assert config["format_version"] == 1 and config["model"]["input_dim"] == 16
    assert config["input"]["embedding_field"] == "vec" and config["embedder"] is None
    rows = [json.loads(line) for line in (fitted / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {"utilisation", "perplexity", "collision_rate"} <= set(rows[-1])
    table = pq.read_table(fitted / "tokens.parquet")
    assert table.num_rows == 120 and len(set(map(tuple, table.column("tokens").to_pylist()))) == 120


def test_progress_in_a_log_is_plain_lines_and_quiet_silences_it(tmp_path, vector_items):
    args = ["fit", vector_items, "--embedding-field", "vec", *[a for a in TINY_FIT if a != "--quiet"]]
    logged = run(*args, "--model", tmp_path / "a")
    assert logged.exit_code == 0, logged.output
    lines = logged.stderr.splitlines()
    # CliRunner's stderr is no terminal: no bar redraws, the last epoch as one plain line
    assert "train 8/8 · rec " in logged.stderr and not any("\r" in line or "━" in line for line in lines)
    quiet = run(*args, "--model", tmp_path / "b", "--quiet")
    assert quiet.exit_code == 0 and "train 8/8" not in quiet.stderr


def test_same_seed_same_bytes(tmp_path, vector_items):
    outputs = []
    for name in ("a", "b"):
        assert run("fit", vector_items, "--model", tmp_path / name, "--embedding-field", "vec", "--seed", "5", *TINY_FIT).exit_code == 0
        outputs.append((tmp_path / name / "tokens.parquet").read_bytes())
    assert outputs[0] == outputs[1]


def test_encode_decode_round_trip_as_argument_file_and_stdin(tmp_path, fitted, vector_items):
    assert run("encode", "--model", fitted, "--out", tmp_path / "t.parquet", "-q").exit_code == 0
    assert (tmp_path / "t.parquet").read_bytes() == (fitted / "tokens.parquet").read_bytes()
    result = run("encode", vector_items, "--model", fitted, "--out", "-", "-q")  # fields from the model
    first = json.loads(result.stdout.splitlines()[0])
    assert first["id"] == "item000"
    tokens = [str(t) for t in first["tokens"]]
    assert run("decode", *tokens, "--model", fitted, "-q").stdout == "item000\n"
    (tmp_path / "mt.jsonl").write_text(json.dumps(first) + "\n[99, 99, 0]\n")
    out = run("decode", "--input", tmp_path / "mt.jsonl", "--model", fitted)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["item000", None]
    assert "decoded 2 multitokens, 1 invalid" in out.stderr
    piped = run("decode", "--model", fitted, "-q", input=" ".join(tokens) + "\n")
    assert json.loads(piped.stdout)["id"] == "item000"
    vectors = run("decode", *tokens, "--vectors", "--model", fitted, "-q")
    assert len(json.loads(vectors.stdout)["vector"]) == 16


def test_decode_unknown_multitoken_says_no_such_item(fitted):
    import itertools

    from hrqtok.store.tables import read_table

    table = read_table(fitted / "tokens.parquet")
    used = {tuple(row) for row in table.codes.tolist()}
    size = json.loads((fitted / "config.json").read_text())["model"]["codebook_size"]
    unused = next(c for c in itertools.product(range(size), repeat=table.codes.shape[1])
                  if c not in used)
    tokens = [str(t) for t in unused] + ["0"]
    result = run("decode", *tokens, "--model", fitted)
    assert result.exit_code == 0 and result.stdout == "null\n"
    assert f"no such item: {' '.join(tokens)}" in result.stderr


def test_encode_with_existing_keeps_old_tokens(tmp_path, fitted, vector_items):
    run("encode", "--model", fitted, "--out", tmp_path / "old.parquet", "-q")
    grown = tmp_path / "grown.jsonl"
    lines = vector_items.read_text().splitlines()
    extra = json.loads(lines[0]) | {"id": "zzz-new"}
    grown.write_text("\n".join(lines + [json.dumps(extra)]) + "\n")
    result = run("encode", grown, "--model", fitted, "--existing", tmp_path / "old.parquet", "--out", tmp_path / "new.jsonl", "-q")
    assert result.exit_code == 0, result.output
    new = {r["id"]: r["tokens"] for r in map(json.loads, (tmp_path / "new.jsonl").read_text().splitlines())}
    old = pq.read_table(tmp_path / "old.parquet").to_pydict()
    assert all(new[i] == t for i, t in zip(old["id"], old["tokens"]))
    assert new["zzz-new"][:-1] == new["item000"][:-1] and new["zzz-new"] != new["item000"]


def test_inspect_json_and_human_report(fitted):
    report = json.loads(run("inspect", "--model", fitted, "--json").stdout)
    assert report["items"] == 120 and len(report["levels"]) == 2
    assert {"perplexity", "normalised_entropy", "dead", "largest_share"} <= set(report["levels"][0])
    assert report["vectors"]["latent_norm"]["cv"] > 0 and -1 <= report["vectors"]["reconstruction"]["cosine"] <= 1
    human = run("inspect", "--model", fitted)
    assert human.stdout == "" and "codebook usage per level" in human.stderr


def test_fit_from_texts_uses_the_embedder_and_its_cache(tmp_path, text_items, fake_embedder):
    model = tmp_path / "m"
    assert run("fit", text_items, "--model", model, *TINY_FIT).exit_code == 0
    assert fake_embedder.calls == 60
    assert run("encode", text_items, "--model", model, "--out", tmp_path / "t.csv", "-q").exit_code == 0
    assert fake_embedder.calls == 60  # everything came from the cache
    assert (tmp_path / "t.csv").read_text().startswith("id,tokens\nt0,")


@pytest.mark.parametrize("line, message", [
    ('{"id": "x", "vec": [1, 2]}', r"Error: .*bad\.jsonl:2: field 'vec' has 2 values, but line 1 has 16"),
    ('{"id": "item000", "vec": [' + ",".join(["0.1"] * 16) + "]}", r"Error: .*bad\.jsonl:2: duplicate id 'item000'"),
    ('{"id": "x", "vec": [' + ",".join(["NaN"] * 16) + "]}", r"Error: .*bad\.jsonl:2: field 'vec' holds NaN"),
    ('{"id": "x", "vec": ', r"Error: .*bad\.jsonl:2: malformed JSON"),
    ('{"vec": [1]}', r"Error: .*bad\.jsonl:2: field 'id' is missing"),
])
def test_bad_input_exits_1_with_one_line_and_writes_nothing(tmp_path, vector_items, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(vector_items.read_text().splitlines()[0] + "\n" + line + "\n")
    result = run("fit", bad, "--model", tmp_path / "m", "--embedding-field", "vec", *TINY_FIT)
    assert result.exit_code == 1
    assert re.search(message, result.stderr) and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_empty_input_and_wrong_dimension_for_the_model(tmp_path, fitted):
    (tmp_path / "empty.jsonl").write_text("")
    result = run("fit", tmp_path / "empty.jsonl", "--model", tmp_path / "m", "--embedding-field", "vec")
    assert result.exit_code == 1 and "empty.jsonl: no items found" in result.stderr
    (tmp_path / "short.jsonl").write_text('{"id": "a", "vec": [1, 2, 3]}\n')
    result = run("encode", tmp_path / "short.jsonl", "--model", fitted, "--out", tmp_path / "o.parquet")
    assert result.exit_code == 1 and "short.jsonl:1: vectors have 3 dimensions but the model" in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_model_directory_problems(tmp_path, fitted):
    result = run("inspect", "--model", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no model directory here" in result.stderr
    config = json.loads((fitted / "config.json").read_text())
    (fitted / "config.json").write_text(json.dumps(config | {"format_version": 99}))
    result = run("encode", "--model", fitted, "--out", tmp_path / "o.parquet")
    assert result.exit_code == 1 and "model format version 99" in result.stderr
    (fitted / "model.safetensors").unlink()
    result = run("decode", "1", "2", "0", "--model", fitted)
    assert result.exit_code == 1 and "missing model.safetensors" in result.stderr


@pytest.mark.parametrize("option", [["--levels", "0"], ["--levels", "99"], ["--codebook-size", "1"]])
def test_out_of_range_options_exit_2(tmp_path, vector_items, option):
    result = run("fit", vector_items, "--model", tmp_path / "m", "--embedding-field", "vec", *option)
    assert result.exit_code == 2


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in ("embed", "fit", "encode", "decode", "inspect", "eval hypernyms",
                    "eval next-item", "eval taxonomy", "export movielens-100k"):
        result = run(*command.split(), "--help")
        assert result.exit_code == 0 and "Example" in result.stdout
        assert f"hrqtok {command}" in readme


def test_fit_on_a_sample_then_encode_the_whole_catalogue(tmp_path, vector_items):
    model = tmp_path / "sampled"
    result = run("fit", vector_items, "--model", model, "--embedding-field", "vec",
                 "--sample", 40, "--seed", 3, "--json", *TINY_FIT)
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)["fit"]
    assert fit["items"] == 40 and fit["sample"] == {"size": 40, "items_read": 120}
    fitted_ids = pq.read_table(model / "tokens.parquet").column("id").to_pylist()
    all_ids = [json.loads(line)["id"] for line in Path(vector_items).read_text().splitlines()]
    assert len(fitted_ids) == 40 and set(fitted_ids) < set(all_ids)
    out = tmp_path / "all.parquet"
    result = run("encode", vector_items, "--model", model, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(pq.read_table(out).column("id").to_pylist()) == sorted(all_ids)
    assert run("fit", "--wordnet", "--sample", 5, "--model", tmp_path / "w").exit_code == 2


def test_help_texts_keep_their_bracketed_words():
    """The help is rendered as rich markup, which silently drops a "[word: ...]" span: a
    default written that way vanished and left "them ." behind."""
    wide = CliRunner(env={"COLUMNS": "400"})
    for command in ("embed", "fit", "encode", "decode", "inspect", "eval hypernyms",
                    "eval next-item", "eval taxonomy", "export movielens-100k"):
        text = wide.invoke(app, [*command.split(), "--help"]).stdout
        dropped = re.findall(r".{30}\w(?<!jq) \.", text)  # `jq .` in an example is meant
        assert not dropped, (command, dropped)
    text = wide.invoke(app, ["fit", "--help"]).stdout
    assert "(default: 512,256,128)" in text and "(default: mirror)" in text


def test_encode_with_beam_search_reconstructs_no_worse_than_greedy(tmp_path, fitted, vector_items):
    import numpy as np
    import torch

    from hrqtok.store.model_dir import load_model_dir
    from hrqtok.store.tables import read_table

    for name, beam in (("greedy", 1), ("beam", 4), ("again", 4)):
        result = run("encode", vector_items, "--model", fitted, "--beam", beam,
                     "--out", tmp_path / f"{name}.parquet", "-q")
        assert result.exit_code == 0, result.output
    greedy, searched = read_table(tmp_path / "greedy.parquet"), read_table(tmp_path / "beam.parquet")
    assert searched.metadata["beam"] == 4 and greedy.metadata["beam"] == 1
    assert (tmp_path / "beam.parquet").read_bytes() == (tmp_path / "again.parquet").read_bytes()
    model = load_model_dir(fitted).model
    vectors = torch.tensor([json.loads(line)["vec"] for line in vector_items.read_text().splitlines()])
    latents = model.latents(vectors)
    error = lambda table: model.quantizer.distance(  # noqa: E731
        latents, model.quantizer.decode_codes(torch.from_numpy(table.codes.astype(np.int64))))
    assert (error(searched) <= error(greedy) + 1e-6).all()
    assert error(searched).mean() < error(greedy).mean()
    no_items = run("encode", "--model", fitted, "--beam", 4, "--out", tmp_path / "x.parquet")
    assert no_items.exit_code == 1 and "give ITEMS to encode them with --beam" in no_items.stderr
