"""--device: auto / cpu / cuda resolved before any work, a CUDA device torch cannot use refused
(exit 2, nothing written), the CPU's tokens unchanged, and the device reaching the embedder,
the fit, encode and the seq2seq. The CUDA paths themselves need a GPU:
benchmarks/check_cuda.py is the prepared check."""

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from hrqtok.cli import app
from hrqtok.devices import resolve_device
from hrqtok.errors import OptionError
from tests.conftest import TINY_FIT

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_auto_is_the_gpu_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("CUDA:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_cuda_device_torch_cannot_use_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OptionError, match="--device: cuda: torch sees no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(OptionError, match="only 1 CUDA device"):
        resolve_device("cuda:1")
    for bad in ("tpu", "cuda:x", "cuda:", "mps"):
        with pytest.raises(OptionError, match="expected one of auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


@pytest.mark.parametrize("command", [
    ["fit", "ITEMS", "--embedding-field", "vec", "--model", "MODEL"],
    ["encode", "ITEMS", "--model", "MODEL", "--out", "OUT"],
    ["inspect", "ITEMS", "--model", "MODEL"],
    ["embed", "ITEMS", "--out", "OUT"],
    ["eval", "hypernyms", "--model", "MODEL"],
    ["eval", "next-item", "--tokens", "OUT", "--movielens-100k"],
])
def test_every_command_refuses_an_unusable_gpu_before_any_work(command, tmp_path, vector_items,
                                                               monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    names = {"ITEMS": vector_items, "MODEL": tmp_path / "model", "OUT": tmp_path / "out.parquet"}
    result = run(*[names.get(a, a) for a in command], "--device", "cuda")
    assert result.exit_code == 2, result.output
    assert "--device" in result.output and "no CUDA device" in result.output
    assert "Traceback" not in result.output
    # nothing written (the embedding cache lives under tmp_path in the tests)
    assert {p.name for p in tmp_path.iterdir()} - {"cache"} == {"items.jsonl"}


def test_cpu_and_auto_make_the_same_bytes_here(tmp_path, vector_items, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tables = []
    for device in ("cpu", "auto"):
        model = tmp_path / f"model-{device}"
        fit = run("fit", vector_items, "--model", model, "--embedding-field", "vec",
                  "--device", device, *TINY_FIT)
        assert fit.exit_code == 0, fit.output
        out = tmp_path / f"{device}.parquet"
        encode = run("encode", vector_items, "--model", model, "--out", out,
                     "--device", device, "--quiet")
        assert encode.exit_code == 0, encode.output
        tables.append(out.read_bytes())
        assert (model / "tokens.parquet").read_bytes() == (
            tmp_path / "model-cpu" / "tokens.parquet").read_bytes()
    assert tables[0] == tables[1]
    assert pq.read_table(tmp_path / "cpu.parquet").num_rows == 120


def test_the_device_reaches_the_embedder(tmp_path, text_items, fake_embedder, monkeypatch):
    seen = []
    original = fake_embedder.__init__

    def spy(self, *args, device=None, **kwargs):  # None: the pipeline did not pass one
        seen.append(device)
        original(self, *args, **kwargs)

    monkeypatch.setattr(fake_embedder, "__init__", spy)
    result = run("embed", text_items, "--out", tmp_path / "v.parquet", "--device", "cpu",
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert seen == ["cpu"]


def test_the_wordnet_fit_runs_on_the_cpu_only(tmp_path, monkeypatch):
    from hrqtok.fit.options import FitOptions
    from hrqtok.pipeline import fit_wordnet

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(OptionError, match="WordNet fit runs on the CPU only"):
        fit_wordnet(model_dir=tmp_path / "wn", options=FitOptions(wordnet=True), device="cuda")
    assert not (tmp_path / "wn").exists()

