"""sweeps/demo.yaml: the offline demo is planned to test the paper's claims with a spread over seeds,
within 45 minutes on the project's 2-core CPU (planning only: nothing runs here)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tickets_core.runs.plan import level_numbers
from tickets_core.core.config import PARAMS, RunConfig
from tickets_core.sweep import plan_sweep

DEMO = Path(__file__).resolve().parent.parent / "sweeps" / "demo.yaml"

# Wall seconds on the 2-core machine, from the full `make demo` of 2026-11-26 (commit a9bfb5c, idle machine,
# cold cache: 26 notebooks in 24.2 minutes).  Per notebook: an IMP trunk of 4 levels took 100-105 s on Rotten
# Tomatoes and tweets, 115 s on PTB MLM (logits at masked positions only) plus 182 s for the MLM head
# warm-up (300 frozen-encoder steps and one evaluation, once, then cached); a one-level dense run 27-34 s,
# a one-level transfer 27-32 s, a two-level random-pruning run 51-53 s, an analysis notebook 5-8 s.  Per
# level about 22-29 s and 5 s of notebook start-up; rounded up below.
LEVEL_S = {"rotten_tomatoes": 27.0, "tweet_sentiment": 28.0, "ptb_mlm": 32.0}
NOTEBOOK_S = 8.0
HEAD_WARMUP_S = 190.0
BUDGET_S = 45 * 60


@pytest.fixture(scope="module")
def runs(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.chdir(tmp_path_factory.mktemp("demo"))  # output_root runs/demo: empty here
    plan = plan_sweep(DEMO)
    out = []
    for job in plan.jobs:
        if job.is_run:
            out.append(RunConfig.from_flat(**{k: v for k, v in job.parameters.items() if k in PARAMS}))
    return plan, out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _level_count(cfg: RunConfig, by_name: dict[str, RunConfig]) -> int:
    """The run's level count (the library's one level plan), a branch's source planned rather than on disk."""
    numbers = level_numbers(cfg) if cfg.source_run is None or cfg.source_levels is not None else \
        level_numbers(by_name[cfg.source_run])
    return len(numbers)


def _trunk_setting(cfg: RunConfig) -> dict:
    """What a dense seed and an IMP trunk's level 0 must share: everything but kind, seed and the pruning plan."""
    d = cfg.to_dict()
    for key in ("kind", "seed", "prune", "output_root", "source_run", "source_levels"):
        d.pop(key)
    return d


def test_every_compared_number_rests_on_seeds(runs):
    _, cfgs = runs
    imp_seeds, dense, by_setting = defaultdict(set), defaultdict(set), defaultdict(set)
    transfers, randoms, transfer_settings = defaultdict(set), defaultdict(set), defaultdict(set)
    for c in cfgs:
        task = c.data.task
        if c.kind == "imp":
            imp_seeds[task].add(c.seed)
            dense[task].add(c.seed)  # level 0 of an IMP run is a dense seed
            by_setting[task].add(repr(_trunk_setting(c)))
        elif c.kind == "dense":
            dense[task].add(c.seed)
            by_setting[task].add(repr(_trunk_setting(c)))
        elif c.kind == "transfer":
            for level in c.source_levels:
                transfers[(c.source_run.split("-")[1], task, level)].add(c.seed)
            transfer_settings[task].add(repr(_trunk_setting(c)))
        elif c.kind == "random_prune":
            for level in c.source_levels:
                randoms[(task, level)].add(c.seed)
    assert set(imp_seeds) == {"rotten_tomatoes", "tweet_sentiment", "ptb_mlm"}
    assert all(len(s) >= 2 for s in imp_seeds.values()), imp_seeds
    assert all(len(s) >= 3 for s in dense.values()), dense
    # the dense baseline is one experiment over seeds: dense runs are IMP's level 0 with other seeds
    assert all(len(s) == 1 for s in by_setting.values()), {k: len(v) for k, v in by_setting.items()}
    assert transfers and all(len(s) >= 2 for s in transfers.values()), transfers
    # a transferred ticket trains like the target's own IMP levels (same data, budget, learning rate, head)
    assert all(transfer_settings[t] == by_setting[t] for t in transfer_settings), "transfers differ from targets' IMP"
    assert {src for src, _, _ in transfers} == {"rotten_tomatoes", "tweet_sentiment", "ptb_mlm"}
    assert randoms and all(len(s) >= 2 for s in randoms.values()), randoms


def test_mlm_runs_start_from_a_warmed_head_and_transfers_do_not(runs):
    _, cfgs = runs
    for c in cfgs:
        warm = c.model.mlm_head_warmup_steps
        assert (warm > 0) == (c.data.task == "ptb_mlm"), (c.kind, c.data.task, warm)


def test_the_demo_fits_45_minutes_on_two_cores(runs):
    plan, cfgs = runs
    by_name = {j.name: c for j, c in zip([j for j in plan.jobs if j.is_run], cfgs)}
    levels = sum(_level_count(c, by_name) * LEVEL_S[c.data.task] for c in cfgs)
    notebooks = len(plan.jobs) * NOTEBOOK_S
    total = levels + notebooks + HEAD_WARMUP_S
    assert total <= BUDGET_S, f"estimated {total / 60:.1f} min"
