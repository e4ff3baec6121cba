"""The package's architecture, checked: imports point down the layers (function-level imports
included), nothing below the CLI imports typer, rich or click, and modules stay small."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hrqtok"
# bottom to top; a module may import its own layer and those below it
LAYERS = [
    {"errors", "paths", "jsonsafe", "atomic", "locations", "remote_writes", "targets", "devices"},
    {"geometry"},
    {"config", "quantize.registry"},  # configs name quantizers; the registry is data only
    {"quantize"},
    {"models"},
    {"sources"},
    {"store"},
    {"metrics"},
    {"fit", "evaluation"},
    {"engines"},  # where the per-chunk work runs: here, or on Ray actors
    {"pipeline"},
    {"catalogue"},  # streamed encode, over the pipeline's helpers
    {"api"},
    {"cli", "__main__"},
]
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}
CLI_ONLY = ("typer", "rich", "click")
MAX_LINES = 400


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: hrqtok.quantize.registry has its own."""
    parts = module.split(".")[1:]
    if parts[:2] == ["quantize", "registry"]:
        return "quantize.registry"
    return parts[0] if parts else "hrqtok"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        yield path, name.removesuffix(".__init__")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)


def test_every_module_has_a_layer():
    units = {_unit(name) for _, name in _modules()} - {"hrqtok"}
    assert units <= set(RANK), units - set(RANK)


def test_imports_point_down():
    upward = []
    for path, name in _modules():
        if name == "hrqtok":  # the package's lazy facade exports the API
            continue
        here = RANK[_unit(name)]
        for module, line in _imports(path):
            if module.startswith("hrqtok.") and RANK[_unit(module)] > here:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not upward, "\n".join(upward)


def test_only_the_cli_imports_typer_rich_or_click():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
             for path, name in _modules() if _unit(name) != "cli"
             for module, line in _imports(path) if module.split(".")[0] in CLI_ONLY]
    assert not found, "\n".join(found)


def test_modules_stay_small():
    long = [f"{path.relative_to(PACKAGE.parent)}: {n} lines" for path, _ in _modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)


def test_the_checks_see_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from hrqtok.cli import app\n    import rich\n")
    assert [m for m, _ in _imports(bad)] == ["hrqtok.cli", "rich"]
    assert RANK[_unit("hrqtok.cli.commands")] > RANK[_unit("hrqtok.geometry.poincare")]
    assert _unit("hrqtok.quantize.registry") != _unit("hrqtok.quantize.residual")
