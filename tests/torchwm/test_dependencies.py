"""Every third-party module imported by the library, the tests and the benchmark scripts is declared in
pyproject.toml (the core dependencies, or an extra that the README's test command installs)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("wm", "envs", "agents", "torchwm", "tests", "benchmarks", "scripts")
TESTED_EXTRAS = {"dev", "pusht", "bench", "plots"}
"""The extras scripts/test.sh installs."""
LOCAL = {"torchwm", "tests", *(p.stem for p in (ROOT / "benchmarks").glob("*.py"))}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """Distributions the installed torchwm declares: core, and the extras the test command installs."""
    names = set()
    for req in metadata.requires("torchwm") or []:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group(0)  # type: ignore[union-attr]
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        if extra is None or extra.group(1) in TESTED_EXTRAS:
            names.add(_norm(name))
    return names


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in ``try: ... except ImportError`` or ``with contextlib.suppress(ImportError)``:
    an optional module, which may be missing."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers):
            return True
        if isinstance(node, ast.With) and any("ImportError" in ast.unparse(i.context_expr) for i in node.items):
            return True
    return False


def third_party_imports(folders: tuple[Path, ...] = tuple(ROOT / f for f in SCANNED)) -> Iterator[tuple[str, Path]]:
    """(top-level module, file) of every unguarded absolute import of a module outside the stdlib and the repo."""
    for folder in folders:
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text())
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL and not _guarded(node, parents):
                        yield top, path


def test_every_third_party_import_is_declared() -> None:
    have = declared()
    dists = metadata.packages_distributions()
    missing = []
    for module, path in sorted(set(third_party_imports())):
        provided = {_norm(d) for d in dists.get(module, [])}
        if not provided & have:
            where = path.relative_to(ROOT)
            missing.append(f"{module} (imported by {where}; installed from {sorted(provided) or 'nothing'})")
    assert not missing, "undeclared in pyproject.toml: " + "; ".join(missing)


def test_the_check_finds_an_undeclared_import(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(
        "import os\nimport sympy\nfrom torchwm.wm import runs\ntry:\n    import nothing_optional\nexcept ImportError:\n"
        "    pass\n"
    )
    assert set(third_party_imports((tmp_path,))) == {("sympy", tmp_path / "script.py")}
    assert "sympy" not in declared()
