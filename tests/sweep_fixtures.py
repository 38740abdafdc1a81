"""Sweep-file helpers for the sweep tests: a small sweep (``BASE``), a fake papermill runner, and running a plan
on a thread pool.  The ``make_sweep`` fixture (conftest.py) writes ``BASE`` or a variant into a test's folder."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading

from tickets_core import sweep
from tickets_core.core.config import RunConfig
from tickets_core.lottery.identity import resolve

BASE = """\
output_root: {root}
figures_dir: {figs}
defaults:
  model: tiny-bert
  max_steps: 2
trunks:
  - name: imp
    kind: imp
    tasks: [rotten_tomatoes, imdb]
    seeds: [0, 1]
    levels: 2
    rate: 0.3
  - kind: dense
    tasks: [rotten_tomatoes]
    seeds: [0]
branches:
  - kinds: [random_prune, random_reinit]
    trunk: imp
    tasks: [imdb]
transfers:
  - trunk: imp
    targets: [rotten_tomatoes, imdb]
    seeds: [0]
    source_levels: [1, 2]
analysis:
  - sparsity_curves
  - notebook: mask_overlap
    sparsity: 0.3
"""


class FakeRunner:
    """Stands in for papermill: marks the run done (or fails the names in ``fail``) and records the order."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.fail, self.calls, self.lock = fail, [], threading.Lock()

    def __call__(self, job: sweep.Job) -> dict:
        with self.lock:
            self.calls.append(job.name)
        if any(job.name.startswith(f) or job.label.startswith(f) for f in self.fail):
            return {"ok": False, "error": f"RuntimeError: boom in {job.label}", "time_s": 0.01}
        if job.run_dir is not None:
            job.run_dir.mkdir(parents=True, exist_ok=True)
            (job.run_dir / "status.json").write_text(json.dumps({"state": "done"}))
            # a finished run's config.json must be readable for the run to count as done (runs.status.whole)
            (job.run_dir / "config.json").write_text(resolve(RunConfig.from_flat(**job.parameters)).to_json())
        return {"ok": True, "error": None, "time_s": 0.01}


def run(plan, runner, workers=1):
    with cf.ThreadPoolExecutor(workers) as ex:
        return sweep.run_plan(plan.jobs, ex, runner=runner, progress=False, log=lambda s: None)
