"""The house rules the code's imports must keep (read with `ast`, nothing is imported):
no import circles between modules of engine/ and app/, no private name (a leading underscore)
imported from another module of ours, and engine/ never imports Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "app")
FOLDERS = ("engine", "app", "pages", "bench")


def modules() -> dict[str, Path]:
    """{dotted module name: file} of engine/ and app/."""
    out = {}
    for package in PACKAGES:
        for f in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def imports_of(path: Path, known: dict) -> list[tuple[str, int, list[str]]]:
    """(module imported, line, names taken from it) for every import of one of ours, at any
    depth (imports inside functions count: they tie the modules just the same)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, []) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                names = [a.name for a in node.names]
                # `from engine import cli` imports the module engine.cli
                subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in known]
                found += [(s, node.lineno, []) for s in subs]
                rest = [n for n in names if f"{node.module}.{n}" not in known]
                if rest and node.module not in PACKAGES:
                    found.append((node.module, node.lineno, rest))
    return found


def test_no_import_circles():
    known = modules()
    graph = {name: {m for m, _, _ in imports_of(path, known) if m != name}
             for name, path in known.items()}
    circles = []
    state: dict[str, int] = {}          # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2
    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_private_name_is_imported_across_modules():
    known = modules()
    hits = []
    for folder in FOLDERS:
        for f in sorted((ROOT / folder).rglob("*.py")):
            for module, line, names in imports_of(f, known):
                hits += [f"{f.relative_to(ROOT)}:{line} {module}.{n}" for n in names
                         if n.startswith("_") and not n.startswith("__")]
    assert hits == []


def test_engine_never_imports_streamlit():
    hits = []
    for f in sorted((ROOT / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            hits += [f"{f.name}:{node.lineno}" for n in names if n.split(".")[0] == "streamlit"]
    assert hits == []
