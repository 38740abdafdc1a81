"""The shape of the house: folders by axis whose imports point down, no import circle (library, benchmarks and
tests), small files, torch-free planning, one registry entry + one function per run kind and per strategy."""

from __future__ import annotations

import ast
import subprocess
import sys
import resource
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOUSE = ("tickets_core", "benchmarks", "tests")
MAX_LINES = 450
#: The axes of tickets_core, lowest first: a module may import only from its own folder or the folders before it.
AXES = ("core", "runs", "models", "tasks", "pruning", "training", "lottery", "analysis", "plots", "sweep", "interop")


def _modules() -> dict[str, Path]:
    """Module name -> file, for every Python file of the house (``tests.x`` is also imported as bare ``x``)."""
    out = {}
    for top in HOUSE:
        for p in (ROOT / top).rglob("*.py"):
            out[".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the house's modules it imports (anywhere in the file, function bodies included)."""
    mods = _modules()
    bare = {m.split(".", 1)[1]: m for m in mods if m.startswith("tests.")}  # tests import their helpers by name
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                target = bare.get(target, target) if not node.level else target
                for cand in [target] + [f"{target}.{a.name}" for a in node.names]:
                    if cand in mods and cand != m and not m.startswith(cand + "."):
                        graph[m].add(cand)
            elif isinstance(node, ast.Import):
                graph[m].update(bare.get(a.name, a.name) for a in node.names if bare.get(a.name, a.name) in mods)
    return graph


def _axis(module: str) -> int | None:
    parts = module.split(".")
    return AXES.index(parts[1]) if parts[0] == "tickets_core" and len(parts) > 1 and parts[1] in AXES else None


def test_the_import_graph_of_the_whole_house_has_no_circle():
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


def test_the_library_is_folders_by_axis_whose_imports_point_down():
    graph = import_graph()
    library = [m for m in graph if m.startswith("tickets_core.")]
    loose = [m for m in library if m.count(".") == 1 and (ROOT / (m.replace(".", "/") + ".py")).is_file()]
    assert not loose, f"modules outside the axis folders: {loose}"
    assert {m.split(".")[1] for m in library} <= set(AXES)
    up = [f"{m} -> {t}" for m in library for t in graph[m]
          if t.startswith("tickets_core") and _axis(t) is not None and _axis(t) > _axis(m)]
    assert not up, up
    out = [f"{m} -> {t}" for m in library for t in graph[m] if not t.startswith("tickets_core")]
    assert not out, f"the library imports benchmarks or tests: {out}"
    assert not graph["tickets_core"], "the package's __init__ imports nothing (importing it stays cheap)"


def test_no_file_of_the_house_is_longer_than_its_idea():
    long = {str(p.relative_to(ROOT)): n for top in HOUSE for p in (ROOT / top).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_every_run_kind_and_strategy_has_its_function_and_every_head_its_model_class():
    import transformers

    from tickets_core.core.kinds import KINDS
    from tickets_core.core.strategies import STRATEGY_SPECS
    from tickets_core.lottery.levels import LEVEL_FUNCTIONS
    from tickets_core.models.heads import HEADS
    from tickets_core.pruning.strategies import STRATEGIES
    from tickets_core.tasks import TASKS

    assert set(LEVEL_FUNCTIONS) == set(KINDS)
    assert set(STRATEGIES) == set(STRATEGY_SPECS)
    assert all(hasattr(transformers, h.auto_class) for h in HEADS.values())
    assert {t.head for t in TASKS.values()} <= set(HEADS)


def test_registries_refuse_twins_and_name_the_closest_entry():
    from tickets_core.core.errors import ConfigError
    from tickets_core.core.kinds import KINDS
    from tickets_core.tasks import TASKS

    with pytest.raises(ConfigError, match=r"^unknown task 'rotten_tomato'; did you mean 'rotten_tomatoes'\? \(known: ") \
            as info:
        TASKS.lookup("rotten_tomato")
    assert info.value.param == "task" and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^unknown run kind 'xyz'; known: imp, "):  # nothing close: the list
        KINDS.lookup("xyz")
    with pytest.raises(ValueError, match="registered twice"):
        KINDS.register("imp", KINDS["imp"])


def test_the_seed_table_is_pinned():
    """The derived seeds are part of what a run computes: changing one changes every result (and run folders)."""
    from tickets_core.core import seeds

    assert seeds.OFFSETS == {"data_order": 0, "mlm_masking": 1, "stability_copy": 7_919, "reinit": 1_000_003,
                             "perturb": 2_000_003, "importance": 3_000_017}
    assert (seeds.SPLIT_SEED, seeds.WARMUP_SEED) == (1234, 0)
    assert seeds.level_seed(3, 2) == 3_000_011


def _in_subprocess(code: str) -> tuple[str, float]:
    """Run ``code`` in a fresh interpreter: its stdout and the CPU seconds it took (user + system: what its start
    costs, whatever else the machine is doing; on an idle machine the wall time is about the same)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0, out.stderr
    return out.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_naming_runs_and_planning_a_sweep_import_neither_torch_nor_pandas():
    code = ("import sys, io, contextlib, runpy\n"
            "from tickets_core.lottery.identity import resolve\n"
            "from tickets_core.core.config import RunConfig\n"
            "from tickets_core.runs import paths, plan, status, store, walk\n"
            "print(resolve(RunConfig.from_flat(task='rotten_tomatoes')).run_name())\n"
            "sys.argv = ['sweep', 'sweeps/paper.yaml', '--dry-run']\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        runpy.run_module('tickets_core.sweep', run_name='__main__')\n"
            "    except SystemExit as e:\n"
            "        assert not e.code, e.code\n"
            "assert 'analysis transfer_70' in out.getvalue()\n"
            "print(sorted(m for m in ('torch', 'pandas', 'transformers', 'nbformat') if m in sys.modules))\n")
    stdout, _ = _in_subprocess(code)
    assert stdout.splitlines()[-1] == "[]", stdout


def test_the_sweep_command_line_starts_fast():
    _, seconds = _in_subprocess("import sys, runpy\nsys.argv = ['sweep', '--help']\n"
                                "try:\n    runpy.run_module('tickets_core.sweep', run_name='__main__')\n"
                                "except SystemExit:\n    pass\n")
    assert seconds < 2.0, f"python -m tickets_core.sweep --help took {seconds:.1f} s of CPU"


def test_the_architecture_page_lists_every_module_of_every_folder():
    """docs/ARCHITECTURE.md's tree is the package's: each folder's line names exactly its modules."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    listed = {line.split()[0].rstrip("/"): set(line.split()[1:]) for line in text.split("```")[1].strip().splitlines()}
    package = ROOT / "tickets_core"
    actual = {d.name: {p.stem for p in d.glob("*.py") if p.stem not in ("__init__", "__main__")}
              for d in package.iterdir() if (d / "__init__.py").is_file()}
    assert listed == actual
