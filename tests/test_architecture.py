"""The shape of tickets_core: no import circle, small files, one registry entry + one function per run kind."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tickets_core"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the tickets_core modules it imports (anywhere in the file, function bodies included)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
                target = ".".join(base + [node.module]) if node.module else ".".join(base)
                for cand in [target] + [f"{target}.{a.name}" for a in node.names]:
                    if cand in mods and cand != m and not m.startswith(cand + "."):
                        graph[m].add(cand)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
    return graph


def test_the_import_graph_has_no_circle():
    graph, state, found = import_graph(), {}, []

    def visit(u, stack):
        state[u] = "open"
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                found.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v, stack + [v])
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not found, found


def test_no_module_is_longer_than_its_idea():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_every_run_kind_has_its_level_function_and_every_head_its_model_class():
    import transformers

    from tickets_core.models.heads import HEADS
    from tickets_core.core.kinds import KINDS
    from tickets_core.lottery.levels import LEVEL_FUNCTIONS
    from tickets_core.tasks import TASKS

    assert set(LEVEL_FUNCTIONS) == set(KINDS)
    assert all(hasattr(transformers, h.auto_class) for h in HEADS.values())
    assert {t.head for t in TASKS.values()} <= set(HEADS)
