"""The architecture, enforced (docs/architecture.md): every import of every harness module, read with
ast (nothing is executed, imports inside functions count too), goes down the layers, never up, and
no two modules import each other, directly or around a cycle."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "harness"
# lower layers first; a module may import its own package and the layers below its own
LAYERS = {"core": 0, "models": 1, "kernels": 1, "train": 2, "suite": 3, "run": 4, "track": 5, "gate": 6,
          "views": 6, "scale": 7, "cli": 9}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    """core for the package's root, cli for its entry points, else the subpackage."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1]


def imports(module: str) -> list[tuple[str, int]]:
    """(imported harness module, line) for every import statement of `module`."""
    out = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "harness"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            for a in node.names:  # `from harness.core import determinism` imports the submodule
                sub = f"{node.module}.{a.name}"
                out.append((sub if sub in MODULES else node.module, node.lineno))
    return out


def edges() -> list[tuple[str, str, int]]:
    return [(m, target, line) for m in MODULES for target, line in imports(m) if target != m]


def test_every_module_is_in_a_known_layer():
    assert {layer(m) for m in MODULES} <= set(LAYERS), {m: layer(m) for m in MODULES if layer(m) not in LAYERS}


def test_imports_go_down_the_layers_never_up():
    wrong = []
    for importer, target, line in edges():
        a, b = layer(importer), layer(target)
        upward = LAYERS[b] > LAYERS[a] or (LAYERS[b] == LAYERS[a] and a != b)
        if upward or (b == "cli" and a != "cli"):  # the command line's modules import each other, nothing else them
            wrong.append(f"{MODULES[importer].relative_to(REPO)}:{line}: {importer} ({a}) imports {target} ({b})")
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(wrong)


def test_the_run_layer_never_imports_mlflow_and_the_domain_never_imports_the_run():
    bad = [f"{MODULES[m].relative_to(REPO)}:{line}: {m} imports {t}" for m, t, line in edges()
           if (layer(m) == "run" and t == "harness.track.tracking")
           or (layer(m) in ("kernels", "models", "train") and layer(t) in ("run", "track", "views", "gate"))]
    bad += [f"{p.relative_to(REPO)}: imports mlflow" for m, p in MODULES.items()
            if layer(m) != "track" and "mlflow" in {n.split(".")[0] for n, _ in _all_imports(p)}]
    assert not bad, "\n".join(bad)


def _all_imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, node.lineno))
    return out


def test_no_import_cycles():
    graph: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for importer, target, line in edges():
        if target in graph:
            graph[importer].setdefault(target, line)
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    described = []
    for cycle in cycles:
        members = set(cycle)
        described.append(" ; ".join(f"{m} imports {t} (line {line})" for m in sorted(members)
                                    for t, line in graph[m].items() if t in members))
    assert not cycles, "import cycles:\n" + "\n".join(described)


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    out.append(component)
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The test above can fail: a kernel module importing the runner, and two modules importing
    each other, are both reported with the offending import."""
    fake = {"harness.kernels.x": "from harness.run import runner\n", "harness.run.runner": "import harness.run.y\n",
            "harness.run.y": "from harness.run import runner\n"}
    paths = {}
    for name, text in fake.items():
        p = tmp_path / (name.replace(".", "_") + ".py")
        p.write_text(text)
        paths[name] = p
    monkeypatch.setattr(__import__(__name__), "MODULES", paths)
    monkeypatch.setattr(Path, "relative_to", lambda self, other: self.name)
    with pytest.raises(AssertionError, match=re.escape("harness.kernels.x (kernels) imports harness.run.runner (run)")):
        test_imports_go_down_the_layers_never_up()
    with pytest.raises(AssertionError, match=re.escape("harness.run.runner imports harness.run.y (line 1)")):
        test_no_import_cycles()
