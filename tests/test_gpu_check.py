"""benchmarks/gpu_check.sh on the CPU (so the GPU script cannot rot), its report, the benchmarks' import graph,
and benchmarks/gpu_hours.py (rates only from JSON, MLM FLOPs at masked positions, the README's table)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


# ---------------------------------------------------------------------------
# gpu_check.sh --cpu
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_gpu_check_runs_every_entry_on_the_cpu(tmp_path):
    from benchmarks.gpu_check import ENTRIES

    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_LIMIT_S": "400"}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--cpu", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=420)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert doc["finished"] and doc["mode"].startswith("cpu") and list(doc["entries"]) == list(ENTRIES)
    status = {k: e["status"] for k, e in doc["entries"].items()}
    cuda_only = {"semi_structured", "packed_pair", "cuda_tests"}
    assert {k for k, s in status.items() if s == "skipped"} == cuda_only
    assert all(doc["entries"][k]["why"] == "no CUDA" for k in cuda_only)
    assert all(s == "pass" for k, s in status.items() if k not in cuda_only), status
    warm = doc["entries"]["compiled_warm"]
    assert warm["record"]["compiled"] and warm["record"]["recompiles"] == 0 and warm["record"]["graphs"] == 1
    assert warm["steps_checked"] == 6 and not any(doc["entries"]["zeros"]["nonzero_pruned"].values())
    assert doc["entries"]["one_row_last_batch"]["examples"] == 129
    assert set(doc["entries"]["throughput"]["examples_per_s"]) == {
        f"{v} | {d}" for v in ("plain", "fast eager", "fast compiled") for d in ("RT", "L128")}


def test_the_report_is_valid_json_after_every_change_and_phases_fail_or_skip_alone(tmp_path, monkeypatch):
    from benchmarks import gpu_check
    from benchmarks.gpu_common import SETUP

    monkeypatch.setattr(SETUP, "device", "cpu")  # no time estimates off CUDA
    path = tmp_path / "gpu_check.json"
    report = gpu_check.Report(path, budget_s=100.0, info={"mode": "test"})
    read = lambda: json.loads(path.read_text())  # noqa: E731
    assert {e["status"] for e in read()["entries"].values()} == {"pending"}

    def boom():
        report.set("compiled_warm", "pass", "done before the failure")
        raise RuntimeError("capture failed\nsecond line")
    gpu_check.phase(report, "train", ("compiled_warm", "zeros", "losses"), boom)
    entries = read()["entries"]
    assert entries["compiled_warm"]["status"] == "pass"
    assert entries["zeros"]["status"] == entries["losses"]["status"] == "fail"
    assert entries["zeros"]["detail"] == "phase train raised RuntimeError: capture failed"
    monkeypatch.setattr(SETUP, "device", "cuda")
    monkeypatch.setattr(gpu_check.torch.cuda, "empty_cache", lambda: None)
    report.budget_s = 10.0
    gpu_check.phase(report, "throughput", ("throughput",), lambda: pytest.fail("must not start"))
    assert read()["entries"]["throughput"]["status"] == "skipped"
    assert read()["entries"]["throughput"]["why"].startswith("time budget")
    assert read()["summary"] == {"pass": 1, "fail": 2, "skipped": 1, "pending": 8} and report.failed()


def test_gpu_check_without_cuda_says_so_in_one_line(capsys):
    import torch

    from benchmarks import gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real check")
    assert gpu_check.main([]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def _benchmark_imports() -> dict[str, list[tuple[str, list[str]]]]:
    """benchmarks module -> [(benchmarks module it imports, names)] (relative and absolute imports)."""
    out = {}
    for path in BENCH.glob("*.py"):
        found = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1 or mod.startswith("benchmarks"):
                    base = mod.removeprefix("benchmarks").lstrip(".")
                    if base:
                        found.append((base, [a.name for a in node.names]))
                    else:  # from . import x, y
                        found += [(a.name, []) for a in node.names]
        out[path.stem] = found
    return out


def test_the_benchmarks_import_no_circle_and_no_private_name():
    imports = _benchmark_imports()
    graph = {m: {t for t, _ in deps if t in imports} for m, deps in imports.items()}
    private = [(m, t, n) for m, deps in imports.items() for t, names in deps for n in names if n.startswith("_")]
    assert not private, private

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, seen + (n,))) for n in graph[a])
    circles = sorted(m for m in graph if reaches(m, m))
    assert not circles, circles
    assert "bench_gpu" not in graph["gpu_packed"] and "gpu_common" in graph["gpu_packed"]


# ---------------------------------------------------------------------------
# gpu_hours
# ---------------------------------------------------------------------------


def test_gpu_hours_reads_rates_only_from_json(tmp_path, capsys):
    from benchmarks import gpu_hours

    with pytest.raises(SystemExit) as e:
        gpu_hours.main(["--rates", str(tmp_path / "missing.json")])
    assert "missing.json not found" in str(e.value) and "\n" not in str(e.value)
    assert not hasattr(gpu_hours, "COLUMNS")  # no built-in rates
    cpu_run = tmp_path / "cpu.json"
    cpu_run.write_text(json.dumps({"mode": "cpu (tiny BERT)", "entries": {}}))
    with pytest.raises(SystemExit, match="--cpu run"):
        gpu_hours.read_rates(cpu_run)
    rates = {f"{v} | {d}": x for v, r in (("fast eager", 2000.0), ("fast compiled", 4000.0))
             for d, x in (("RT", r), ("L128", r / 2))}
    run = tmp_path / "gpu_check.json"
    run.write_text(json.dumps({"mode": "cuda", "entries": {"versions": {"gpu": "GPU X"}, "throughput": {
        "status": "pass", "examples_per_s": rates}}}))
    cols = gpu_hours.read_rates(run)
    assert cols["fast compiled (measured, GPU X)"]["l128"] == 2000.0
    assert all(c["kind"] == "measured" for c in cols.values())
    gpu_hours.main(["--rates", str(gpu_hours.RATES), str(run)])
    out = capsys.readouterr().out
    assert "fast path (PROJECTION) (h)" in out and "fast compiled (measured, GPU X) (h)" in out


def test_mlm_flops_count_the_head_at_masked_positions_only():
    from benchmarks import gpu_hours as g
    from tickets_core.core.config import DataConfig

    assert g.MLM_PROBABILITY == DataConfig().mlm_probability
    encoder_only = g.example_flops(512, "qa") - 3.0 * 2 * (g.HIDDEN * g.HIDDEN + g.HIDDEN * 2)
    head = 3.0 * 2 * (g.HIDDEN * g.HIDDEN + g.HIDDEN * g.VOCAB)
    assert g.example_flops(512, "mlm") == pytest.approx(encoder_only + head * 0.15 * 510)
    assert g.example_flops(512, "mlm", mlm_probability=0.3) > g.example_flops(512, "mlm")


def test_the_readme_table_is_the_current_grid_at_the_committed_rates(capsys):
    from benchmarks import gpu_hours

    gpu_hours.main([])
    table = capsys.readouterr().out.strip()
    readme = (BENCH / "README.md").read_text()
    assert table in readme, "re-run `python -m benchmarks.gpu_hours` and paste its table into benchmarks/README.md"
    assert "| total | 2,664 |" in table  # 2,763 planned, 99 dense levels copied (sweep.reuse)


def test_gpu_data_without_datasets(tmp_path, tokenizer):
    """Rotten Tomatoes rows from an SST-2-layout TSV (as the device pack writes it), the 128-token rows built
    from them, and the Table that stands in for datasets.Dataset."""
    from benchmarks.gpu_common import LONG, Table, long_rows, rt_rows

    (tmp_path / "train.tsv").write_text('sentence\tlabel\na "quoted" fine film\t1\ndull , flat and tired\t0\n')
    rows = rt_rows(5, tokenizer, folder=tmp_path)
    assert [r["labels"] for r in rows] == [1, 0] and rows[0]["input_ids"][0] == tokenizer.cls_token_id
    assert tokenizer.decode(rows[0]["input_ids"], skip_special_tokens=True) == 'a " quoted " fine film'
    assert all(r["length"] == len(r["input_ids"]) for r in rows)
    long = long_rows(rows, 3)
    assert [len(r["input_ids"]) for r in long] == [LONG] * 3 and long[0]["input_ids"][-1] == tokenizer.sep_token_id
    t = Table.from_rows(rows)
    assert len(t) == 2 and t["labels"] == [1, 0] and t[[1]]["labels"] == [0] and t[0:1]["labels"] == [1]
    assert t.select_columns(["labels"]).to_dict() == {"labels": [1, 0]}
