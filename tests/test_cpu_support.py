"""Reduced embedding precisions on a CPU that does not compute in them: the flags are read
from a real /proc/cpuinfo layout, each backend's own answer is asked, and an embedding run
with such a precision prints one `warning:` line (with the real packaged MiniLM); float32, or a
CPU that has the instructions, prints none."""

from __future__ import annotations

import json
import logging
import platform

import pytest

from hrqtok.sources import embedder as embedder_module
from hrqtok.sources.cpu_support import (
    cpu_flags,
    has_int8_dot_products,
    precision_note,
    torch_bf16_native,
)
from hrqtok.sources.embedder import SentenceTransformerEmbedder
from tests.test_cli import run

X86 = platform.machine().lower() in ("x86_64", "amd64")

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse2 avx fma avx2 avx512f avx512_vnni
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse2
"""


@pytest.mark.skipif(not X86, reason="the flags are read on x86 only")
def test_flags_of_the_first_cpu_are_read(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    flags = cpu_flags(str(path))
    assert {"avx2", "avx512_vnni"} <= flags and "bugs" not in flags and "sysret_ss_attrs" not in flags
    assert has_int8_dot_products(flags) is True
    assert has_int8_dot_products(frozenset({"avx2", "fma"})) is False
    assert has_int8_dot_products(frozenset({"avx_vnni"})) is True  # AVX2 VNNI (Alder Lake on)


def test_unknown_cpus_say_nothing(tmp_path):
    (tmp_path / "no-flags").write_text("processor\t: 0\nmodel name\t: something\n")
    assert cpu_flags(str(tmp_path / "no-flags")) is None
    assert cpu_flags(str(tmp_path / "missing")) is None
    for backend, precision in (("torch", "bfloat16"), ("openvino", "bfloat16"),
                               ("openvino", "int8")):
        assert precision_note(backend, precision, None) is None  # unknown: no warning
        assert precision_note(backend, precision, True) is None
        assert precision_note(backend, precision, False)
    assert precision_note("torch", "float32", False) is None


def test_each_precision_names_what_it_lacks():
    assert "oneDNN" in precision_note("torch", "bfloat16", False)
    assert "--embed-precision float32" in precision_note("torch", "bfloat16", False)
    assert "as float32" in precision_note("openvino", "bfloat16", False)
    assert "VNNI" in precision_note("openvino", "int8", False)
    assert all("\n" not in precision_note(b, p, False)
               for b, p in (("torch", "bfloat16"), ("openvino", "bfloat16"), ("openvino", "int8")))


def test_the_pinned_torch_answers_for_bfloat16():
    """torch's own check (a private op): if a torch upgrade drops it, this says so."""
    assert torch_bf16_native() in (True, False)


@pytest.mark.slow
@pytest.mark.parametrize("native, warned", [(False, True), (True, False)])
def test_torch_bfloat16_warns_on_a_cpu_without_it(monkeypatch, caplog, native, warned):
    monkeypatch.setattr(embedder_module, "torch_bf16_native", lambda: native)
    with caplog.at_level(logging.WARNING, logger="hrqtok"):
        vectors = SentenceTransformerEmbedder("minilm", precision="bfloat16").embed(["a dog"])
    assert vectors.shape == (1, 384)
    assert any("oneDNN" in r.getMessage() for r in caplog.records) is warned


@pytest.mark.slow
def test_float32_never_warns(monkeypatch, caplog):
    monkeypatch.setattr(embedder_module, "torch_bf16_native", lambda: False)
    with caplog.at_level(logging.WARNING, logger="hrqtok"):
        SentenceTransformerEmbedder("minilm").embed(["a dog"])
    assert not caplog.records


@pytest.mark.slow
def test_embed_prints_the_warning_once_and_still_embeds(tmp_path, monkeypatch):
    monkeypatch.setattr(embedder_module, "torch_bf16_native", lambda: False)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": i, "text": f"a text number {i}"}) + "\n"
                             for i in range(5)))
    out = tmp_path / "vectors.parquet"
    result = run("embed", items, "--out", out, "--embedder", "minilm",
                 "--embed-precision", "bfloat16", "--quiet")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "oneDNN" in lines[0]
    assert out.is_file()

