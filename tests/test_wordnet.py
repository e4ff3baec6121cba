"""The real WordNet 3.0 (installed by `make setup`): counts, subtrees, errors, and the whole
`fit --wordnet` → encode → decode → inspect path on the mammal subtree."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from hrqtok.cli import app
from hrqtok.errors import InputError
from hrqtok.sources import wordnet

runner = CliRunner()
TINY = ["--root", "mammal.n.01", "--epochs", "3", "--burn-in-epochs", "2", "--latent-dim", "3",
        "--codebook-size", "16", "--eval-every", "2", "--tune-epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def mammals():
    return wordnet.load_nouns("mammal.n.01")


def test_all_nouns_and_closure_pairs():
    nouns = wordnet.load_nouns()
    assert len(nouns) == 82_115
    assert len(nouns.pairs) == 743_241
    assert nouns.names.count("entity.n.01") == 1 and nouns.depths.max() == 18


def test_mammal_subtree(mammals):
    assert len(mammals) == 1_182 and len(mammals.pairs) == 6_542
    row = {name: i for i, name in enumerate(mammals.names)}
    dog = row["dog.n.01"]
    ancestors = {mammals.names[v] for v in mammals.pairs[mammals.pairs[:, 0] == dog, 1]}
    assert {"canine.n.02", "carnivore.n.01", "placental.n.01", "mammal.n.01"} <= ancestors
    assert mammals.lexnames[dog] == "noun.animal" and "domesticated" in mammals.glosses[dog]
    assert mammals.depths[0] == 0 and mammals.names[0] == "mammal.n.01"


def test_lexnames_file_matches_wordnet_numbering():
    lines = wordnet.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"


@pytest.mark.parametrize("root,message", [("notasynset.n.01", "unknown synset"),
                                          ("run.v.01", "not a noun"),
                                          ("dog.n.01x", "unknown synset"),
                                          ("aardvark.n.01", "no hyponyms")])
def test_bad_roots(root, message):
    with pytest.raises(InputError, match=message):
        wordnet.load_nouns(root)


def test_loading_closes_the_files_nltk_leaves_open(monkeypatch):
    """nltk's reader keeps its data files open with no close(): a discarded one warned
    (ResourceWarning, an error under the test settings) wherever the garbage collector ran."""
    from nltk.corpus.reader import wordnet as nltk_wordnet

    readers = []
    original = nltk_wordnet.WordNetCorpusReader.__init__
    monkeypatch.setattr(nltk_wordnet.WordNetCorpusReader, "__init__",
                        lambda self, *a, **k: readers.append(self) or original(self, *a, **k))
    for root in ("feline.n.01", "dog.n.01x"):  # a good root and a refused one
        try:
            wordnet.load_nouns(root)
        except InputError:
            pass
    streams = [f for r in readers for f in r._data_file_map.values() if f is not None]
    assert len(readers) == 2 and streams and all(f.closed for f in streams)


def test_missing_wordnet_says_how_to_get_it(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "find", lambda *a, **k: (_ for _ in ()).throw(LookupError()))
    monkeypatch.setattr(wordnet, "SYSTEM_DIR", tmp_path / "none")
    monkeypatch.setenv("HRQTOK_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(InputError, match="make setup"):
        wordnet.find_nltk_root()


def test_builds_nltk_folder_from_debian_files(monkeypatch, tmp_path):
    import nltk

    source = wordnet.find_nltk_root().resolve() / "corpora" / "wordnet"
    debian = tmp_path / "debian-wordnet"
    debian.mkdir()
    for name in wordnet.REQUIRED:
        (debian / name).write_bytes((source / name).read_bytes())
    monkeypatch.setattr(nltk.data, "find", lambda *a, **k: (_ for _ in ()).throw(LookupError()))
    monkeypatch.setattr(wordnet, "SYSTEM_DIR", debian)
    monkeypatch.setenv("HRQTOK_CACHE", str(tmp_path / "fresh-cache"))
    root = wordnet.find_nltk_root()
    assert root == tmp_path / "fresh-cache" / "wordnet" / "nltk_data"
    assert (root / "corpora" / "wordnet" / "lexnames").read_text() == wordnet.lexnames_text()


@pytest.fixture(scope="module")
def mammal_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("wn") / "mammals"
    result = runner.invoke(app, ["fit", "--wordnet", "--model", str(path), "--quantize-weight", "0.2",
                                 "--node-rms-decay", "0.95", "--release-epochs", "2",
                                 "--reseat-rounds", "1", *TINY])
    assert result.exit_code == 0, result.output
    return path


def test_fit_writes_nodes_split_and_tokens(mammal_model):
    nodes = pq.read_table(mammal_model / "nodes.parquet")
    pairs = pq.read_table(mammal_model / "pairs.parquet")
    assert nodes.num_rows == 1_182 and pairs.num_rows == 6_542
    split = np.asarray(pairs.column("split").to_pylist())
    assert (split == "test").sum() == round(6_542 * 0.15)
    tokens = pq.read_table(mammal_model / "tokens.parquet")
    assert tokens.num_rows == 1_182 and "dog.n.01" in tokens.column("id").to_pylist()
    log = [json.loads(line) for line in (mammal_model / "train_log.jsonl").read_text().splitlines()]
    # the release's 2 epochs, then a re-seating round of 20
    assert [row["phase"] for row in log] == (["burn-in"] * 2 + ["train"] * 3 + ["release"] * 22
                                             + ["tune"] * 2)
    assert [i for i, row in enumerate(log) if "reseated" in row] == [7]
    assert "train_map" in log[1] and "train_map" in log[3]
    # the multitokens are fixed from the release on: their decoded points are scored too
    assert "quantized_train_map" in log[5] and "quantized_train_map" not in log[3]
    train = json.loads((mammal_model / "config.json").read_text())["train"]
    assert train["quantize_weight"] == 0.2 and train["node_optimizer"] == "rmsprop"
    assert train["node_rms_decay"] == 0.95 and train["release_epochs"] == 2
    assert train["reseat_rounds"] == 1


def test_large_hierarchies_get_their_own_defaults_and_given_options_win():
    from hrqtok.config import HierarchyTrainConfig, ModelConfig, TrainConfig
    from hrqtok.fit.options import LARGE_HIERARCHY, FitOptions

    options = FitOptions(wordnet=True)
    model, train = options.configs(input_dim=0, items=LARGE_HIERARCHY - 1)
    assert model.commitment == ModelConfig.commitment and train == HierarchyTrainConfig()
    model, train = options.configs(input_dim=0, items=LARGE_HIERARCHY)
    assert model.commitment == 0
    assert (train.burn_in_epochs, train.epochs, train.batch_size, train.node_rms_decay,
            train.release_epochs, train.tune_epochs) == (20, 90, 1024, 0.99, 0, 100)
    assert train.quantize_weight == HierarchyTrainConfig.quantize_weight  # the rest as before
    given = FitOptions(wordnet=True, commitment=0.25, train={"epochs": 200, "node_rms_decay": 0.9})
    model, train = given.configs(input_dim=0, items=82_115)
    assert model.commitment == 0.25 and (train.epochs, train.node_rms_decay) == (200, 0.9)
    assert train.batch_size == 1024 and train.burn_in_epochs == 20  # not given: the large ones
    model, train = FitOptions().configs(input_dim=8, items=10 * LARGE_HIERARCHY)  # items: never
    assert model.commitment == ModelConfig.commitment and train == TrainConfig()


def test_fit_takes_the_hierarchy_size_from_the_nouns(tmp_path, monkeypatch):
    from hrqtok.fit import options

    path = tmp_path / "mammals"
    monkeypatch.setattr(options, "LARGE_HIERARCHY", 1_000)  # mammal.n.01 has 1,182 nouns
    result = runner.invoke(app, ["fit", "--wordnet", "--model", str(path), *TINY])
    assert result.exit_code == 0, result.output
    config = json.loads((path / "config.json").read_text())
    assert config["model"]["commitment"] == 0
    assert (config["train"]["batch_size"], config["train"]["node_rms_decay"]) == (1024, 0.99)
    assert config["train"]["release_epochs"] == 0
    # given on the command line: kept
    assert (config["train"]["epochs"], config["train"]["burn_in_epochs"]) == (3, 2)


def test_model_dir_gives_back_the_split(mammal_model):
    from hrqtok.store.model_dir import load_model_dir

    hierarchy, test = load_model_dir(mammal_model).hierarchy()
    split = pq.read_table(mammal_model / "pairs.parquet").column("split").to_pylist()
    assert len(hierarchy) == 1_182 and len(hierarchy.pairs) == 6_542
    assert test.tolist() == [s == "test" for s in split]
    row = {name: i for i, name in enumerate(hierarchy.names)}
    assert hierarchy.parents[row["dog.n.01"]] == [row["canine.n.02"]]  # domestic_animal: outside


def test_encode_decode_inspect(mammal_model, tmp_path):
    out = tmp_path / "mammal-tokens.parquet"
    result = runner.invoke(app, ["encode", "--model", str(mammal_model), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    ids, tokens = table.column("id").to_pylist(), table.column("tokens").to_pylist()
    dog = tokens[ids.index("dog.n.01")]
    result = runner.invoke(app, ["decode", *map(str, dog), "--model", str(mammal_model), "--quiet"])
    assert result.exit_code == 0 and result.stdout.strip() == "dog.n.01"
    result = runner.invoke(app, ["decode", *map(str, dog), "--model", str(mammal_model), "--vectors",
                                 "--quiet"])
    assert len(json.loads(result.stdout)["vector"]) == 3
    result = runner.invoke(app, ["inspect", "--model", str(mammal_model), "--json"])
    report = json.loads(result.stdout)
    assert report["model"]["kind"] == "wordnet" and report["items"] == 1_182
    ranking = report["hierarchy"]["ranking"]
    for points in ("continuous", "quantized"):
        for split in ("train", "test"):
            assert ranking[points][split]["mean_rank"] >= 1 and 0 < ranking[points][split]["map"] <= 1
    assert ranking["continuous"]["test"]["pairs"] == round(6_542 * 0.15)
    assert len(report["hierarchy"]["prefix_agreement"]["closure_pairs"]) == 3
    human = runner.invoke(app, ["inspect", "--model", str(mammal_model)])
    assert human.exit_code == 0 and "held-out MAP" in human.output


def test_a_tuned_model_refuses_beam_search(mammal_model, tmp_path):
    out = tmp_path / "beam.parquet"
    result = runner.invoke(app, ["encode", "--model", str(mammal_model), "--beam", "8", "--out", str(out)])
    assert result.exit_code == 2 and "tuned" in result.output and not out.exists()


def test_a_released_model_refuses_beam_search(tmp_path):
    released = tmp_path / "released"
    result = runner.invoke(app, ["fit", "--wordnet", "--model", str(released), *TINY,
                                 "--tune-epochs", "0", "--release-epochs", "1"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "beam.parquet"
    result = runner.invoke(app, ["encode", "--model", str(released), "--beam", "8", "--out", str(out)])
    assert result.exit_code == 2 and "--release-epochs" in result.output and not out.exists()


def test_encode_with_beam_search_re_encodes_the_nouns(tmp_path):
    from hrqtok.store.model_dir import load_model_dir
    from hrqtok.store.tables import read_table

    untuned = tmp_path / "untuned"
    result = runner.invoke(app, ["fit", "--wordnet", "--model", str(untuned), *TINY, "--tune-epochs", "0",
                                 "--release-epochs", "0"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "beam.parquet"
    result = runner.invoke(app, ["encode", "--model", str(untuned), "--beam", "8", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    loaded = load_model_dir(untuned)
    greedy, searched = loaded.table(), read_table(out)
    assert searched.ids == greedy.ids and searched.metadata["beam"] == 8
    q, points = loaded.model.quantizer, loaded.model.embeddings
    error = lambda codes: q.distance(points, q.decode_codes(torch.from_numpy(codes.astype("int64"))))  # noqa: E731
    assert (error(searched.codes) <= error(greedy.codes) + 1e-9).all()
    assert error(searched.codes).mean() < error(greedy.codes).mean()  # the beam found better paths


def test_wordnet_model_refuses_other_items(mammal_model, vector_items):
    result = runner.invoke(app, ["encode", str(vector_items), "--model", str(mammal_model)])
    assert result.exit_code == 1 and "WordNet model" in result.output


@pytest.mark.parametrize("args,code", [
    (["--root", "nosuch.n.01"], 1),
    (["--root", "aardvark.n.01"], 1),
    (["--test-fraction", "1.5"], 2),
    (["--test-fraction", "0"], 2),
    (["--quantizer", "hrq-kmeans", "--tune-epochs", "5"], 2),  # k-means codebooks: no tuning
    (["--quantizer", "rq-kmeans", "--release-epochs", "5"], 2),  # nor a release
    (["--quantizer", "hrq-kmeans", "--reseat-rounds", "1"], 2),  # nor its rounds
    (["--node-optimizer", "adam"], 2),
    (["--node-rms-decay", "1.5"], 2),
    (["--node-optimizer", "rsgd", "--node-rms-decay", "0.9"], 2),  # rsgd keeps no mean square
])
def test_bad_wordnet_options(tmp_path, args, code):
    path = tmp_path / "model"
    result = runner.invoke(app, ["fit", "--wordnet", "--model", str(path), "--quiet",
                                 *(["--root", "mammal.n.01"] if "--root" not in args else []), *args])
    assert result.exit_code == code, result.output
    assert not path.exists()
    if code == 1:
        assert result.output.startswith("Error: --root") and len(result.output.splitlines()) == 1


@pytest.mark.parametrize("option", [["--root", "mammal.n.01"], ["--node-optimizer", "rsgd"],
                                    ["--node-rms-decay", "0.9"]])
def test_wordnet_options_need_wordnet(vector_items, tmp_path, option):
    result = runner.invoke(app, ["fit", str(vector_items), "--model", str(tmp_path / "m"), *option])
    assert result.exit_code == 2 and "--wordnet" in result.output
    assert not (tmp_path / "m").exists()
    result = runner.invoke(app, ["fit", str(vector_items), "--wordnet"])
    assert result.exit_code == 2


EVAL_TINY = ["--epochs", "1", "--d-model", "16", "--heads", "2", "--layers", "1", "--feedforward", "32"]


def test_eval_hypernyms_on_the_held_out_pairs(mammal_model):
    result = runner.invoke(app, ["eval", "hypernyms", "--model", str(mammal_model), "--compare",
                                 *EVAL_TINY, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["results"]) == {"model", "random"} and report["geometry"] == "hyperbolic"
    for row in report["results"].values():
        assert row["runs"] == 1 and row["test_pairs"]["mean"] == round(6_542 * 0.15)
        assert 0 <= row["recall@1"]["mean"] <= row["recall@10"]["mean"] <= 1
    human = runner.invoke(app, ["eval", "hypernyms", "--model", str(mammal_model), "--baseline",
                                "random", *EVAL_TINY, "--quiet"])
    assert human.exit_code == 0 and "recall@10" in human.stderr and human.stdout == ""
    assert "rare@10" in human.stderr and "top-10 ref." in human.stderr


def test_eval_hypernyms_on_samples_of_the_pairs(mammal_model):
    result = runner.invoke(app, ["eval", "hypernyms", "--model", str(mammal_model), *EVAL_TINY,
                                 "--train-pairs", "500", "--test-pairs", "120", "--runs", "2",
                                 "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["train_pairs"] == 500 and report["settings"]["test_pairs"] == 120
    row = report["results"]["model"]
    assert row["train_pairs"]["mean"] == 500 and row["test_pairs"]["mean"] == 120
    # mammal.n.01 and a few other ancestors are the hypernym of most pairs
    assert 0.3 < row["frequent_reference@10"]["mean"] < 1
    # a tiny transformer may find no hypernym at all: the standard error is 0 exactly then
    recall, se = row["recall@10"]["mean"], row["recall@10_se"]["mean"]
    assert row["rare_test_pairs"]["mean"] < 120 and se >= 0 and (se > 0) == (0 < recall < 1)
    bad = runner.invoke(app, ["eval", "hypernyms", "--model", str(mammal_model), "--test-pairs", "0"])
    assert bad.exit_code == 2


def test_eval_hypernyms_needs_a_wordnet_model(tmp_path, vector_items):
    from tests.conftest import TINY_FIT

    items_model = tmp_path / "items"
    assert runner.invoke(app, ["fit", str(vector_items), "--model", str(items_model),
                               "--embedding-field", "vec", *TINY_FIT]).exit_code == 0
    result = runner.invoke(app, ["eval", "hypernyms", "--model", str(items_model), *EVAL_TINY])
    assert result.exit_code == 1 and "not a WordNet model" in result.output
    assert len(result.output.strip().splitlines()) == 1
    both = runner.invoke(app, ["eval", "hypernyms", "--model", str(items_model), "--compare",
                               "--baseline", "random"])
    assert both.exit_code == 2
