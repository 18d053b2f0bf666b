"""The house rules of `src/facetune`, read from the source with `ast` (imports inside functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path


PKG = Path(__file__).resolve().parents[1] / "src" / "facetune"
MAX_FUNCTION_LINES = 80
#: A CLI module parses, validates and prints; more than this means library logic crept in.
MAX_CLI_MODULE_LINES = 250
#: What nothing under music/ may import: the face side (photos, face detection, face data, classifier).
FACE_SIDE = ("facetune.faces", "facetune.classifier")


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def imported(name: str) -> set[str]:
    """Every facetune module `name` imports, anywhere in the file; `from pkg import sub` counts as pkg.sub."""
    is_pkg = MODULES[name].name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES}
    return {m for m in out if m in MODULES and m != name}


def external(name: str) -> set[str]:
    """Top-level names of every module `name` imports, facetune or not."""
    out: set[str] = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle in `graph` as [a, b, ..., a], or [] when there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            if cycle := visit(nxt, path + [node]):
                return cycle
        done.add(node)
        return []

    for name in sorted(graph):
        if cycle := visit(name, []):
            return cycle
    return []


def test_the_rules_can_fail():
    assert "facetune.faces.data" in imported("facetune.classifier.train")  # imported inside train_classifier
    assert "facetune.classifier.onnx_engine" in imported("facetune.classifier.inference")
    assert {"facetune.checkpoints", "facetune.errors"} <= imported("facetune.training.cache")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    # a package's __init__ holds only its docstring, so importing a package is no edge back into it
    graph = {name: {m for m in imported(name) if MODULES[m].name != "__init__.py"} for name in MODULES}
    assert find_cycle(graph) == []


def test_only_the_cli_imports_click():
    clicky = {n for n in MODULES if "click" in external(n)}
    assert clicky and all(n.startswith("facetune.cli.") for n in clicky)


def test_music_imports_nothing_of_the_face_side():
    bad = {
        (name, dep)
        for name in MODULES
        if name.startswith("facetune.music")
        for dep in imported(name)
        if dep.startswith(FACE_SIDE)
    }
    assert not bad


def test_print_only_in_cli_and_console():
    printing = {
        name
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    }
    assert all(n.startswith("facetune.cli.") or n == "facetune.console" for n in printing)


def test_no_function_longer_than_80_lines():
    long = {
        f"{MODULES[name].relative_to(PKG).as_posix()}:{node.name}"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long


def test_cli_modules_stay_thin():
    long = {n: len(MODULES[n].read_text().splitlines()) for n in MODULES if n.startswith("facetune.cli")}
    assert long and max(long.values()) <= MAX_CLI_MODULE_LINES, long


def test_top_level_holds_only_the_entry_points_and_what_every_stage_shares():
    # the pipeline lives in packages (faces/ → classifier/ → music/, training/ for both trainers);
    # emotions is the one bridge between the face side and the music side
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    assert top == {"api", "checkpoints", "console", "emotions", "errors", "registry"}
    assert (PKG / "cli").is_dir()
