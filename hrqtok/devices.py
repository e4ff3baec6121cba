"""Where the tensors of a fit, an encode, an embedding run or an evaluation live:
``--device auto|cpu|cuda`` (also ``cuda:N``). ``auto`` is the first CUDA device when torch sees
one, else the CPU. Models are saved, and token tables built, from the CPU whatever the device.
"""

from __future__ import annotations

import torch

from hrqtok.errors import OptionError

CPU = torch.device("cpu")
DEVICES = ("auto", "cpu", "cuda")  # the choices; "cuda:N" picks one of several GPUs


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``name`` asks for. A CUDA device that torch cannot use is an
    OptionError (exit 2) before any work, never a silent fall-back to the CPU."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if name == "cpu":
        return CPU
    kind, colon, index = name.partition(":")
    if kind != "cuda" or (colon and not index.isdigit()):
        raise OptionError("--device", f"expected one of {', '.join(DEVICES)} or cuda:N, "
                                      f"got {name!r}")
    if not torch.cuda.is_available():
        raise OptionError("--device", f"{name}: torch sees no CUDA device here (this torch "
                                      f"build: {torch.__version__}); use --device cpu or auto")
    if index and int(index) >= torch.cuda.device_count():
        raise OptionError("--device", f"{name}: only {torch.cuda.device_count()} CUDA "
                                      "device(s) here")
    return torch.device(name)
