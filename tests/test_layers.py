"""Dependencies flow one way (DESIGN.md): flows -> rl -> quant -> nerf; nothing calls back up."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> packages (or modules) it must never import, at module level or inside a function.
FORBIDDEN = {
    "nerf": ("quant", "rl", "flows", "sim", "hw"),
    "quant": ("rl", "flows", "nerf.train"),
    "rl": ("flows",),
    "common": ("nerf", "quant", "rl", "flows", "sim", "hw"),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_calls_up(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)
