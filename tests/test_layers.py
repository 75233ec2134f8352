"""The package is layered and has no import cycle (imports inside functions included):
a storage floor, the stores, vision and models, matching, services, front ends; each
module imports only its own layer's or lower layers' modules (issue 20)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "facerec"

# module (dotted, under facerec) -> layer; a package's modules share its layer
LAYERS = {
    0: ["errors", "types", "storage", "tflogs"],
    1: ["settings", "images", "gallery", "tagcache", "history", "photonames", "xmp", "auth", "librarystore"],
    2: ["align", "detect", "quality", "weights", "litert", "embed", "draw", "thumbs", "verdict", "datasets", "onnxface"],
    3: ["classify", "thresholds", "enrolcheck", "facepath", "pipeline", "cluster", "evaluate", "train"],
    4: ["people", "tagging", "video", "engines", "live", "recognition", "library", "xmpimport"],
    5: ["cli", "app", "api", "__main__", "__init__"],
}
LAYER = {m: n for n, mods in LAYERS.items() for m in mods}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """facerec modules ``path`` imports anywhere (top level, functions, TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(n) for n in ast.walk(node)}
    pkg = name.rsplit(".", 1)[0] if "." in name or path.name == "__init__.py" else ""
    if path.name == "__init__.py":
        pkg = name
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".") if pkg else []
                anchor = anchor[:len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([p for p in anchor if p] + ([base] if base else []))
                base = "facerec." + base if base else "facerec"
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t.startswith("facerec."):
                mod = t[len("facerec."):]
                while mod and mod not in known:
                    mod = mod.rsplit(".", 1)[0] if "." in mod else ""
                if mod and mod != name:
                    found.add(mod)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(p, m, known) for m, p in mods.items()}


def _top(mod: str) -> str:
    return mod.split(".")[0]


def test_no_import_cycle():
    graph = _graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_has_a_layer_and_imports_only_downwards():
    graph = _graph()
    unplaced = sorted({_top(m) for m in graph} - set(LAYER))
    assert not unplaced, f"modules with no layer in {__file__}: {unplaced}"
    climbing = [f"{m} (layer {LAYER[_top(m)]}) imports {d} (layer {LAYER[_top(d)]})"
                for m, deps in graph.items() for d in deps
                if _top(d) != _top(m) and LAYER[_top(d)] > LAYER[_top(m)] and _top(m) != "__init__"]
    assert not climbing, "\n".join(sorted(climbing))


def test_the_stores_stand_on_the_floor_only():
    graph = _graph()
    stores = {"gallery", "tagcache", "history", "photonames", "thumbs"}
    reaching = {m: sorted(d for d in graph[m] if d in stores) for m in stores}
    assert all(not v for v in reaching.values()), reaching


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from facerec.gallery import Gallery\n    import facerec.storage\n")
    assert _imports(f, "x", {"gallery", "storage"}) == {"gallery", "storage"}


def test_no_function_over_100_lines_but_the_cli_parser():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 100 and (path.name, node.name) != ("cli.py", "build_parser"):
                    long.append(f"{path.relative_to(PKG)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
