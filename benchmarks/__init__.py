"""Performance benchmarks of tickets_core against the reference way (not tests).

Each module runs alone (``python -m benchmarks.bench_masked_step [--quick]``);
``python -m benchmarks.run_all [--quick]`` runs them all and writes
``benchmarks/results/RESULTS.md`` and ``benchmarks/results/results.json``.
"""
