"""The package's shape: one-way layers, no import circles, no module over 600 lines.

Read from the source with ``ast`` (every ``import``, also those inside functions and under
``TYPE_CHECKING``: a lazy import still ties two modules together). ``from pkg import name`` counts
as an import of ``pkg.name`` when that is a module, else of ``pkg`` itself (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("worldstereo", "ui")
MAX_LINES = 600

#: bottom -> top; a module may import its own layer (without a circle) and the layers below it.
#: The longest prefix that matches a module names its layer (``worldstereo`` alone is the package's
#: ``__init__``, which re-exports the public API from the model). A package may span layers by
#: module: ``worldstereo.panorama``'s maths sit with the geometry, its view checks beside the
#: inputs, its bank files beside the exports.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", (
        "worldstereo.atomic", "worldstereo.ray_cluster", "worldstereo.camera", "worldstereo.formats", "worldstereo.hub", "worldstereo.threads", "worldstereo.devices",
        "worldstereo.imageio_utils", "worldstereo.limits", "worldstereo.scenes", "worldstereo.snapshot_checks",
        "worldstereo.snapshot_codec", "worldstereo.examples",
        "worldstereo.trajectory",
    )),
    ("geometry", ("worldstereo.geometry", "worldstereo.scale", "worldstereo.coverage", "worldstereo.keyframes",
                  "worldstereo.panorama", "worldstereo.splats")),
    ("memory", ("worldstereo.memory", "worldstereo.runtime")),
    ("records", ("worldstereo.config", "worldstereo.records", "worldstereo.frame_layers", "worldstereo.inputs", "worldstereo.panorama.views")),
    ("history", ("worldstereo.history",)),
    ("context", ("worldstereo.context", "worldstereo.snapshot")),
    ("backends", ("worldstereo.backends",)),
    ("pipeline", ("worldstereo.pipeline",)),
    ("model", ("worldstereo.model",)),
    ("api", ("worldstereo.exports", "worldstereo.world", "worldstereo.panorama.files", "worldstereo.recording",
             "worldstereo.splats.sources")),
    ("package", ("worldstereo.__init__",)),
    ("eval", ("worldstereo.eval", "worldstereo.splats.fit")),
    ("cli", ("worldstereo.cli",)),
    ("app", ("ui",)),
]


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for p in sorted((REPO / pkg).rglob("*.py")):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """Modules of ``worldstereo`` / ``ui`` that ``module`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for t in targets:
            r = _resolve(t)
            if r is not None and r != module:
                found.add(r)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(module: str) -> int:
    key = "worldstereo.__init__" if module == "worldstereo" else module
    matches = [(len(p), rank) for rank, (_, prefixes) in enumerate(LAYERS) for p in prefixes
               if key == p or key.startswith(p + ".")]
    if not matches:
        raise AssertionError(f"module {module} has no layer: add it to LAYERS in tests/test_layers.py")
    return max(matches)[1]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle_through_a_lazy_import(tmp_path):
    """The walker sees imports inside functions, and the cycle finder reports the circle they close."""
    src = "def f():\n    from worldstereo.model import WorldStereo\n    return WorldStereo\n"
    path = tmp_path / "generators.py"
    path.write_text(src)
    seen = _imports("worldstereo.backends.generators", path)
    assert seen == {"worldstereo.model"}
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["worldstereo.backends.generators"] = graph["worldstereo.backends.generators"] | seen
    cycles = find_cycles(graph)
    assert any({"worldstereo.model", "worldstereo.backends.generators"} <= set(c) for c in cycles)


def test_no_import_circles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import circles (counting imports inside functions):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_dependencies_point_down_the_layers():
    upward = [
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if _layer(t) > _layer(m)
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("backend", sorted(m for m in MODULES if m.startswith("worldstereo.backends.")))
def test_backends_see_the_context_never_the_model(backend):
    assert not GRAPH[backend] & {"worldstereo.model", "worldstereo.pipeline", "worldstereo"}, GRAPH[backend]


def test_registries_import_no_backend():
    """The modules backends register into hold the registries and import none of the backends."""
    for registry in ("worldstereo.backends.registry", "worldstereo.backends.depth", "worldstereo.backends.generators"):
        backends = {m for m in GRAPH[registry] if m.startswith("worldstereo.backends.")}
        assert backends <= {"worldstereo.backends.registry"}, (registry, backends)


def test_no_module_over_600_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split by job): {long}"
