"""The import direction of DESIGN.md section 2: `cli` and `http` on top, then
the App's layer, then `store`, then `brokers`, then `event` (the envelope,
codecs, upcasting, errors and the SQLite connection helpers). A module may
import its own layer and those below, never one above. Imports made only
for type checking are left out: they do not run."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
EVENT = {"event", "codecs", "upcasting", "envelopes", "errors", "_sqlite", "_sqlite_loop"}
RANK = {"event": 0, "brokers": 1, "store": 2, "app": 3, "cli": 4, "package": 5}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"  # herald/__init__.py: the public names, on top of everything
    first = parts[1]
    if first in EVENT:
        return "event"
    if first in ("brokers", "store"):
        return first
    if first in ("cli", "http", "__main__"):
        return "cli"
    return "app"


def module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(SRC).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> list[str]:
    """The herald modules `path` imports when it runs."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "herald"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "herald":  # `from herald import retry`: a submodule, or the package
                found += [f"herald.{a.name}" if (SRC / "herald" / f"{a.name}.py").exists()
                          or (SRC / "herald" / a.name).is_dir() else "herald" for a in node.names]
            elif node.module.split(".")[0] == "herald":
                found.append(node.module)
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    modules = sorted((SRC / "herald").rglob("*.py"))
    assert len(modules) > 50, "the package was not found"
    upward = [
        f"{module_name(path)} ({layer(module_name(path))}) imports {target} ({layer(target)})"
        for path in modules
        for target in runtime_imports(path)
        if RANK[layer(target)] > RANK[layer(module_name(path))]
    ]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The test above can fail: an event-layer import of the App is caught."""
    bad = tmp_path / "event.py"
    bad.write_text("from herald.app import App\nfrom typing import TYPE_CHECKING\n"
                   "if TYPE_CHECKING:\n    from herald.store import EventStore\n")
    imported = runtime_imports(bad)
    assert imported == ["herald.app"]
    assert RANK[layer(imported[0])] > RANK[layer("herald.event")]
