"""Whether this CPU makes a reduced embedding precision pay off, and the warning when not.

bfloat16 and int8 are fast only where the CPU computes in them natively. Measured with
``benchmarks/bench_embed.py`` (MPNet, 400 glosses, batch 32, 2 cores): with AVX-512 and AMX,
torch bfloat16 ran 2.6–3.8× torch float32 and OpenVINO int8 3.1–5.2×; with AVX2 alone, torch
bfloat16 ran 0.12× (its matrix products leave oneDNN for a generic path), OpenVINO bfloat16
ran as float32 (the same vectors, 0.97–1.02×) and OpenVINO int8 0.94–1.02×, less exactly
(int8 products without VNNI pass through saturating 16-bit sums). Each backend is asked in its
own terms: torch whether oneDNN takes bfloat16 here, OpenVINO whether its CPU plugin lists
BF16, and for int8 the CPU's flags (Linux, x86) whether it has VNNI. Unknown is never a
warning.
"""

from __future__ import annotations

import platform
from functools import cache

CPUINFO = "/proc/cpuinfo"
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # VNNI: int8 dot products


@cache
def cpu_flags(path: str = CPUINFO) -> frozenset[str] | None:
    """The x86 feature flags of the first CPU listed in ``path``; None where they are unknown
    (not x86, no such file, or no flags line in it)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, colon, value = line.partition(":")
                if colon and name.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        return None
    return None


def has_int8_dot_products(flags: frozenset[str] | None = None) -> bool | None:
    """Whether the CPU multiplies int8 with VNNI; None when its flags are unknown."""
    flags = cpu_flags() if flags is None else flags
    return None if flags is None else bool(flags & INT8_FLAGS)


def torch_bf16_native() -> bool | None:
    """Whether torch runs bfloat16 matrix products through oneDNN on this CPU (it needs
    AVX-512 or newer); None when this torch cannot say."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return None


def openvino_bf16_native(core) -> bool | None:
    """Whether OpenVINO's CPU plugin (``core``: an ``openvino.Core``) infers in bf16 here;
    without it a bf16 hint runs as f32."""
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a plugin that cannot answer is no reason to stop
        return None


def precision_note(backend: str, precision: str, native: bool | None) -> str | None:
    """The one-line warning for embedding with ``precision`` on ``backend`` when this CPU is
    known (``native`` False) not to compute in it natively; None otherwise."""
    if native is not False:
        return None
    if precision == "bfloat16" and backend == "torch":
        return ("torch cannot use oneDNN for bfloat16 on this CPU (no AVX-512): bfloat16 embeds "
                "slower than float32 here (8x slower on an AVX2 CPU); use --embed-precision "
                "float32")
    if precision == "bfloat16":
        return ("OpenVINO has no bf16 on this CPU (no AVX512-BF16 or AMX): bfloat16 runs as "
                "float32 here, no faster")
    if precision == "int8":
        return ("this CPU has no int8 dot products (VNNI): OpenVINO int8 embeds no faster than "
                "float32 here (0.94-1.02x on an AVX2 CPU) and less exactly")
    return None
