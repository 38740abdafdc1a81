"""Run every benchmark and write benchmarks/results/RESULTS.md and results.json.

``python -m benchmarks.run_all [--quick] [--only NAME ...] [--threads N]``.
Each benchmark also runs alone: ``python -m benchmarks.<name> [--quick]``.
A benchmark that fails is reported as failed (with its error) and the
others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback

from .common import RESULTS_DIR, load_average, machine, machine_line, md_table, set_threads, timed_run

BENCHMARKS = ("bench_masked_step", "bench_imp_level", "bench_efficiency", "bench_pruning", "bench_scaling")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes; each benchmark under ~2 min on a quiet machine")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    a = p.parse_args()
    set_threads(a.threads)
    names = a.only or BENCHMARKS
    start_machine = machine()
    t0 = time.perf_counter()
    results, failures, md_parts, targets = [], [], [], []
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name}")
        print(f"=== {name} (load average {load_average()[0]:.2f}) ===", flush=True)
        try:
            res = timed_run(mod.run, a.quick)
        except Exception as e:  # keep going: report the failure in the table
            traceback.print_exc()
            failures.append({"benchmark": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
            continue
        res.write()
        print(res.markdown(), flush=True)
        results.append(res.to_json())
        md_parts.append(res.markdown())
        targets += res.targets
    total = time.perf_counter() - t0
    mode = "quick" if a.quick else "full"
    head = [f"# Benchmark results ({mode} mode)", "",
            f"`python -m benchmarks.run_all{' --quick' if a.quick else ''}` took {total / 60:.1f} min.", "",
            machine_line(start_machine) + f"; load average at the end {load_average()[0]:.2f}.", "",
            "Numbers taken while other jobs share the CPU are unreliable (see the load averages); "
            "each table gives its own load average at start. Method and caveats: benchmarks/README.md.", "",
            "## Targets", "", md_table(["benchmark", "target", "measured", "status"],
                                        [[t["benchmark"], t["target"], t["value"], t["status"]] for t in targets])]
    if failures:
        head += ["", "## Failed benchmarks", "", md_table(["benchmark", "error"], [[f["benchmark"], f["error"]] for f in failures])]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if a.quick else ""
    (RESULTS_DIR / f"RESULTS{suffix}.md").write_text("\n".join(head + [""] + md_parts))
    (RESULTS_DIR / f"results{suffix}.json").write_text(json.dumps(
        {"mode": mode, "machine": start_machine, "total_s": round(total, 1), "targets": targets,
         "failures": failures, "benchmarks": results}, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS_DIR / f'RESULTS{suffix}.md'} ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
