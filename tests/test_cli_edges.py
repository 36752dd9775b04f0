"""Imports run one way, down: nothing below the command line imports it, nothing imports a component,
and the library never imports kfp at module level."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, at module level) of every import in ``path``."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            out.append((base, id(node) in top))
    return out


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_nothing_below_the_command_line_imports_it():
    for path in _modules("raserec_core") + _modules("components"):
        if "cli" in path.relative_to(ROOT).parts:
            continue
        bad = [m for m, _ in _imports(path) if m == "raserec_core.cli" or m.startswith("raserec_core.cli.")]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_library_imports_no_component_or_pipeline_and_no_kfp_at_module_level():
    for path in _modules("raserec_core"):
        names = _imports(path)
        up = [m for m, _ in names if m.split(".")[0] in ("components", "pipelines") and "cli" not in path.parts]
        assert not up, f"{path.relative_to(ROOT)} imports {up}"
        eager = [m for m, top in names if top and m.split(".")[0] == "kfp"]
        assert not eager, f"{path.relative_to(ROOT)} imports kfp at module level"


def test_components_import_only_the_library_their_runtime_and_table():
    for path in _modules("components"):
        for module, _ in _imports(path):
            assert module.split(".")[0] != "pipelines", f"{path.relative_to(ROOT)} imports {module}"
