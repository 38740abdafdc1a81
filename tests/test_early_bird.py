"""Early-bird tickets: the mask-distance stop inside an IMP level, the retrain branch, steps to reach a sparsity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.spatial.distance import hamming

from tickets_core.analysis import curves

from tickets_core.lottery import driver

from tickets_core.training import loop as train
from tickets_core.core.config import ConfigError, PruneConfig, RunConfig
from tickets_core.pruning.early_bird import EarlyBird, chain, mask_distance
from tickets_core.lottery.identity import resolve
from tickets_core.pruning.masks import Mask
from tickets_core.models.build import build_model
from tickets_core.pruning.strategies import prune
from tickets_core.runs.paths import RunPaths

from notebook_run import run_analysis_notebook

EB = dict(early_bird_every=1, early_bird_eps=0.99, early_bird_window=2)  # converged at once: stops at step 2


def random_mask(seed: int, shapes=((4, 6), (3, 5))) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({f"m{i}": torch.rand(s, generator=g) < 0.6 for i, s in enumerate(shapes)})


def test_mask_distance_is_the_normalised_hamming_distance():
    a, b = random_mask(0), random_mask(1)
    flat = lambda m: np.concatenate([v.reshape(-1).numpy() for v in m.values()])  # noqa: E731
    assert mask_distance(a, b) == pytest.approx(hamming(flat(a), flat(b)))
    assert mask_distance(a, a) == 0.0


def reference_stops(masks: list[Mask], every: int, eps: float, window: int, min_step: int, steps: int):
    """A plain re-statement of You et al.'s queue: at each check, the largest distance to the last ``window``
    masks (the level's starting mask first); stop once ``window`` masks came before and it is below eps."""
    history, curve, it = [masks[0]], [], iter(masks[1:])
    for step in range(every, steps + 1, every):
        mask = next(it)
        d = max(mask_distance(old, mask) for old in history[-window:])
        curve.append((step, d))
        full = len(history) >= window
        history.append(mask)
        if full and step >= min_step and d < eps:
            return step, curve
    return None, curve


@pytest.mark.parametrize("window,min_step", [(1, 0), (2, 0), (3, 0), (3, 9)])
def test_the_hook_compares_with_a_queue_of_the_last_window_masks(window, min_step):
    # masks that settle, then flip back to an older one: a check against the previous mask alone would stop
    # at the flip-back; the queue sees the change within the window
    order = [0, 1, 1, 2, 2, 1, 2, 2, 2, 2, 2, 2]
    masks = [random_mask(i) for i in order]
    expect_stop, expect_curve = reference_stops(masks, 3, 0.05, window, min_step, 33)
    seq = iter(masks)
    bird = EarlyBird(lambda: next(seq), every=3, eps=0.05, window=window, min_step=min_step)
    stops = [step for step in range(1, 34) if bird(step)]
    assert (stops[:1] or [None])[0] == expect_stop
    got = bird.record()["curve"][:len(expect_curve)]
    assert [s for s, _ in got] == [s for s, _ in expect_curve]
    assert [d for _, d in got] == pytest.approx([d for _, d in expect_curve])
    if window == 3 and min_step == 0:
        assert expect_stop == 27  # 2 at checks 21..27 and the queue of 3 all 2 only from check 27


def test_the_window_can_be_a_fraction_of_the_level_and_the_cut_stops_without_looking():
    from tickets_core.pruning.early_bird import EarlyCut, window_for
    assert window_for(0.25, 4, 32) == 2 and window_for(0.25, 4, 100) == 7 and window_for(0.01, 4, 32) == 1
    cut = EarlyCut(5, 0.5, 10)
    assert next(s for s in range(1, 11) if cut(s)) == 5 and cut.record()["stopped_at"] == 5
    assert EarlyCut.reads_weights is False


def test_old_behaviour_kept_where_the_window_is_one_and_hook_helpers():
    seq = iter([random_mask(0), random_mask(1), random_mask(1), random_mask(2), random_mask(2)])
    bird = EarlyBird(lambda: next(seq), every=2, eps=0.01, window=1)
    assert next(step for step in range(1, 9) if bird(step)) == 4  # window 1: the previous check's mask only
    seeds = iter(range(10, 20))
    late = EarlyBird(lambda: random_mask(3), every=1, eps=0.5, window=1, min_step=4)
    assert [s for s in range(1, 7) if late(s)] == [4, 5, 6]  # never before min_step (the rewind step)
    never = EarlyBird(lambda: random_mask(next(seeds)), every=1, eps=1e-9, window=1)
    assert not any(never(s) for s in range(1, 5)) and never.record()["stopped_at"] is None
    assert chain(None, None) is None
    calls = []
    both = chain(lambda s, m: calls.append(("a", s)) or True, lambda s, m: calls.append(("b", s)))
    assert both(3, None) is True and calls == [("a", 3), ("b", 3)]  # every hook runs


def test_a_hook_returning_true_ends_fine_tune_and_the_level_is_evaluated(tiny_run_config):
    cfg = tiny_run_config(max_steps=3)
    from tickets_core.models.build import load_tokenizer
    from tickets_core.tasks import get_task

    data = get_task("rotten_tomatoes").load(cfg.data, load_tokenizer(cfg.model))
    at_two = {}

    def keep(step, model):
        if step == 2:
            at_two.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    full = build_model(cfg.model, "classification", 2, seed=0)
    train.fine_tune(full, data, cfg.train, seed=0, on_step=keep)
    stopped = build_model(cfg.model, "classification", 2, seed=0)
    res = train.fine_tune(stopped, data, cfg.train, seed=0, on_step=lambda step, m: step == 2)
    assert res["steps"] == 2 and "accuracy" in res["eval"]
    assert all(torch.equal(v, at_two[k]) for k, v in stopped.state_dict().items())  # nothing after the stop
    assert res["eval"] == train.evaluate(stopped, data, cfg.train)


@pytest.fixture(scope="module")
def runs(tiny_config_factory, tmp_path_factory):
    """An IMP trunk, the same trunk with early-bird (weights kept), and the retrain branch of the latter."""
    root = tmp_path_factory.mktemp("eb_runs")
    base = dict(levels=2, max_steps=4)
    imp_dir = driver.run(tiny_config_factory(root, **base))
    eb_dir = driver.run(tiny_config_factory(root, **base, **EB, save_weights=True))
    rt_dir = driver.run(tiny_config_factory(root, **base, kind="retrain", source_run=eb_dir.name))
    return root, imp_dir, eb_dir, rt_dir


def metrics(run_dir, level) -> dict:
    return json.loads(RunPaths(run_dir).metrics(level).read_text())


def test_early_bird_levels_stop_and_leave_the_mask_of_the_weights_they_stopped_at(runs, tiny_config_factory):
    root, imp_dir, eb_dir, _ = runs
    paths = RunPaths(eb_dir)
    cfg = RunConfig.from_dict(json.loads(paths.config().read_text()))
    for k in (0, 1):
        m = metrics(eb_dir, k)
        rec = m["train"]["early_bird"]
        assert m["train"]["steps"] == 2 and rec["stopped_at"] == 2 and [s for s, _ in rec["curve"]] == [1, 2]
        assert rec["every"] == 1 and rec["eps"] == 0.99 and rec["window"] == 2
        # the next level's mask is the pruning of the weights the level stopped with
        model = build_model(cfg.model, "classification", 2, seed=0)
        model.load_state_dict(load_file(str(paths.weights(k))))
        current = Mask.ones_like(model) if k == 0 else Mask.load(paths.mask(k))
        expect = prune(model, current, cfg.prune, k + 1, cfg.seed)
        got = Mask.load(paths.mask(k + 1))
        assert all(torch.equal(got[n], expect[n]) for n in expect)
    last = metrics(eb_dir, 2)
    assert last["train"]["steps"] == 4 and "early_bird" not in last["train"]  # no next mask: trained to the end
    assert metrics(imp_dir, 1)["train"]["steps"] == 4 and "early_bird" not in metrics(imp_dir, 1)["train"]
    assert imp_dir.name != eb_dir.name


def test_early_bird_waits_for_the_rewind_step(tiny_run_config):
    d = driver.run(tiny_run_config(levels=1, max_steps=6, rewind_step=3, early_bird_every=1, early_bird_eps=0.99,
                                early_bird_window=1))
    assert metrics(d, 0)["train"]["early_bird"]["stopped_at"] == 3 and RunPaths(d).rewind().is_file()


def test_retrain_scores_the_found_masks_with_the_full_budget(runs, tiny_config_factory):
    root, imp_dir, eb_dir, rt_dir = runs
    for k in (0, 1, 2):
        m = metrics(rt_dir, k)
        assert m["kind"] == "retrain" and m["train"]["steps"] == 4 and m["source"]["level"] == k
        if k:
            a, b = Mask.load(RunPaths(rt_dir).mask(k)), Mask.load(RunPaths(eb_dir).mask(k))
            assert all(torch.equal(a[n], b[n]) for n in a)
    assert metrics(rt_dir, 0)["eval"] == metrics(imp_dir, 0)["eval"]  # dense, same seed: IMP's level 0 exactly
    with pytest.raises(ConfigError, match="that is a transfer") as info:
        driver.run(tiny_config_factory(root, kind="retrain", task="imdb", source_run=eb_dir.name, levels=2,
                                    max_steps=4))
    assert "\n" not in str(info.value)


def test_steps_to_reach_each_sparsity_imp_vs_early_bird(runs):
    root, imp_dir, eb_dir, rt_dir = runs
    table = curves.early_bird_table(root)
    imp_rows = table[table["method"] == "IMP"].set_index("level")
    eb_rows = table[table["method"] != "IMP"].set_index("level")
    assert imp_rows["steps"].tolist() == [4, 8, 12]  # IMP: every level to the end
    assert eb_rows["steps"].tolist() == [4, 2 + 4, 2 + 2 + 4]  # stopped trunk levels before k + the retrain of k
    assert eb_rows["score"].tolist() == [metrics(rt_dir, k)["score"] for k in (0, 1, 2)]
    assert eb_rows["method"].iat[0] == "early-bird (every 1, eps 0.99, window 2)"
    assert table["setting"].nunique() == 1  # paired: the same setting but for the early-bird options
    summary = curves.early_bird_summary(table)
    saved = summary[summary["method"] != "IMP"].set_index("level")["steps_saved"]
    assert saved.tolist() == pytest.approx([0.0, 0.25, 1 - 8 / 12])
    assert (summary["n_seeds"] == 1).all()
    checks = curves.load_early_bird(root)
    assert sorted(checks["level"].unique()) == [0, 1] and (checks["stopped_at"] == 2).all()
    pairs = curves.early_bird_runs(root)
    assert pairs[["imp", "early_bird", "retrain"]].values.tolist() == [[imp_dir.name, eb_dir.name, rt_dir.name]]
    iou = curves.early_bird_overlap(root).set_index("level")["iou"]
    assert iou.tolist() == [Mask.load(RunPaths(eb_dir).mask(k)).overlap(Mask.load(RunPaths(imp_dir).mask(k)))
                            for k in (1, 2)]


def test_the_control_cuts_each_level_at_a_fixed_fraction_and_pairs_beside_the_criterion(tiny_config_factory,
                                                                                         tmp_path):
    base = dict(levels=2, max_steps=4)
    cut_dir = driver.run(tiny_config_factory(tmp_path, **base, early_cut_fraction=0.5))
    rt_dir = driver.run(tiny_config_factory(tmp_path, **base, kind="retrain", source_run=cut_dir.name))
    for k in (0, 1):
        rec = metrics(cut_dir, k)["train"]
        assert rec["steps"] == 2 and rec["early_cut"] == {"fraction": 0.5, "stop_step": 2, "total_steps": 4,
                                                           "stopped_at": 2}
    assert metrics(cut_dir, 2)["train"]["steps"] == 4 and "early_cut" not in metrics(cut_dir, 2)["train"]
    table = curves.early_bird_table(tmp_path)
    cut = table[table["method"] != "IMP"].set_index("level")
    assert cut["method"].iat[0] == "early cut (at 0.5 of each level, no criterion)"
    assert cut["steps"].tolist() == [4, 2 + 4, 2 + 2 + 4]
    assert cut["score"].tolist() == [metrics(rt_dir, k)["score"] for k in (0, 1, 2)]
    assert curves.load_early_bird(tmp_path).empty  # no criterion, no curve


def test_early_bird_span_and_min_fraction_set_the_queue_and_the_first_stop(tiny_run_config):
    d = driver.run(tiny_run_config(levels=1, max_steps=8, early_bird_every=1, early_bird_eps=0.99,
                                   early_bird_span=0.25, early_bird_min_fraction=0.75))
    rec = metrics(d, 0)["train"]["early_bird"]
    assert rec["window"] == 2 and rec["span"] == 0.25 and rec["min_step"] == 6 and rec["stopped_at"] == 6
    assert rec["total_steps"] == 8 and rec["queue"] == "max"


@pytest.mark.parametrize("params, message", [
    (dict(early_cut_fraction=0.5, early_bird_every=2), "early_cut_fraction is the control"),
    (dict(early_cut_fraction=1.0), r"early_cut_fraction must be in \(0, 1\)"),
    (dict(kind="dense", early_cut_fraction=0.5), "'dense' has no next mask"),
    (dict(early_bird_every=2, early_bird_span=0.0), r"early_bird_span must be in \(0, 1\]"),
    (dict(early_bird_every=2, early_bird_min_fraction=1.0), r"early_bird_min_fraction must be in \[0, 1\)"),
])
def test_bad_early_stop_options_fail_in_one_line(params, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_flat(output_root=str(tmp_path), **params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("params, message", [
    (dict(kind="dense", early_bird_every=4), "'dense' has no next mask"),
    (dict(kind="oneshot", early_bird_every=4), "'oneshot' has no next mask"),
    (dict(kind="retrain", source_run="imp-x-1", early_bird_every=4), "'retrain' has no next mask"),
    (dict(early_bird_every=4, strategy="random_global"), "does not depend on the weights"),
    (dict(early_bird_every=0), "early_bird_every must be >= 1"),
    (dict(early_bird_every=2, early_bird_eps=0.0), r"early_bird_eps must be in \(0, 1\)"),
    (dict(early_bird_every=2, early_bird_window=0), "early_bird_window must be >= 1"),
])
def test_bad_early_bird_options_fail_in_one_line(params, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_flat(output_root=str(tmp_path), **params)
    assert "\n" not in str(info.value) and info.value.param.startswith("early_bird")
    assert not any(tmp_path.iterdir())


def test_new_parameters_leave_existing_run_names_alone():
    # At their defaults the early-bird and stability parameters add nothing to the hash, so the name that
    # tests/test_config.py pins for the default run stands; away from their defaults they do name a new run.
    assert PruneConfig().early_bird_every is None
    default = resolve(RunConfig())
    assert default.run_name() == "imp-rotten_tomatoes-6d488a8a"
    for param, value in [("early_bird_every", 4), ("early_bird_eps", 0.05), ("early_bird_window", 5),
                         ("early_bird_span", 0.25), ("early_bird_min_fraction", 0.25), ("early_cut_fraction", 0.5),
                         ("stability_points", 7)]:
        assert resolve(RunConfig.from_flat(**{param: value})).run_name() != default.run_name(), param


@pytest.mark.notebook
def test_the_early_bird_notebook_draws_its_figures(runs, tmp_path):
    assert run_analysis_notebook("early_bird", runs[0], tmp_path) == {
        f"early_bird{s}.{e}" for s in ("", "_mask_distance") for e in ("png", "pdf")}


def test_the_early_bird_sweep_file_plans_trunks_retrains_and_analysis():
    from tickets_core.sweep.notebook import NOTEBOOKS_DIR
    from tickets_core.sweep import plan_sweep

    plan = plan_sweep(NOTEBOOKS_DIR.parent / "sweeps" / "early_bird.yaml")
    kinds = [j.parameters.get("kind") for j in plan.jobs if j.is_run]
    assert kinds.count("imp") == 6 and kinds.count("retrain") == 2 and kinds.count("stability") == 2
    retrain = next(j for j in plan.jobs if j.parameters.get("kind") == "retrain")
    assert retrain.parameters.get("early_bird_every") is None
    assert {j.notebook.stem for j in plan.jobs if not j.is_run} == {"early_bird", "stability"}
