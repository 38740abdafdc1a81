"""Structured strategies (whole heads and FFN neurons) against plain hand-written references on tiny BERTs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from tickets_core.analysis.results import load_masks, load_runs
from tickets_core.analysis.units import expected_iou, head_matrix, head_overlap, load_units
from tickets_core.core.config import ConfigError, PruneConfig, RunConfig
from tickets_core.lottery import driver
from tickets_core.models.build import build_model
from tickets_core.models.prunable import prunable_parameters
from tickets_core.pruning import units
from tickets_core.pruning.masks import Mask
from tickets_core.pruning.strategies import get_strategy, prune
from tickets_core.runs.paths import RunPaths
from tickets_core.training import loop as train

LAYERS, HEADS, HIDDEN, FFN = 3, 4, 32, 24  # head size 8


def small_bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                     vocab_size=50, max_position_embeddings=16, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def weights_of(model) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in prunable_parameters(model).items()}


def ref_head_norm(w, layer, h):
    """Plain reference: sqrt of the sum of squares over the head's Q, K, V rows and attention-output columns."""
    d, p = HIDDEN // HEADS, f"encoder.layer.{layer}.attention."
    total = 0.0
    for name in ("self.query", "self.key", "self.value"):
        for r in range(h * d, (h + 1) * d):
            total += float((w[p + name + ".weight"][r] ** 2).sum())
    for c in range(h * d, (h + 1) * d):
        total += float((w[p + "output.dense.weight"][:, c] ** 2).sum())
    return total ** 0.5


def ref_neuron_norm(w, layer, j):
    p = f"encoder.layer.{layer}."
    return (float((w[p + "intermediate.dense.weight"][j] ** 2).sum())
            + float((w[p + "output.dense.weight"][:, j] ** 2).sum())) ** 0.5


def ref_prune(head_scores, neuron_scores, n_heads, n_neurons, min_heads):
    """Plain reference selection: sort (score, position), prune from the bottom, skip a layer's last heads."""
    heads = sorted((s, layer, h) for (layer, h), s in head_scores.items())
    left = {layer: HEADS for layer in range(LAYERS)}
    pruned_heads = set()
    for s, layer, h in heads:
        if len(pruned_heads) == n_heads:
            break
        if left[layer] > min_heads:
            pruned_heads.add((layer, h))
            left[layer] -= 1
    pruned_neurons = {(layer, j) for s, layer, j in sorted((s, lj[0], lj[1]) for lj, s in neuron_scores.items())[:n_neurons]}
    return pruned_heads, pruned_neurons


def pruned_units(mask, lay):
    heads = units.heads_alive(mask, lay)
    neurons = units.neurons_alive(mask, lay)
    return ({(i, h) for i in range(LAYERS) for h in range(HEADS) if not heads[i, h]},
            {(i, j) for i in range(LAYERS) for j in range(FFN) if not neurons[i][j]})


def test_layout_names_every_unit_slice():
    lay = units.layout(small_bert())
    assert [lu.layer for lu in lay] == [0, 1, 2]
    assert {(lu.heads, lu.head_size, lu.neurons) for lu in lay} == {(HEADS, HIDDEN // HEADS, FFN)}
    assert lay[1].attn_out == "encoder.layer.1.attention.output.dense.weight"
    assert lay[1].ffn_out == "encoder.layer.1.output.dense.weight"


@pytest.mark.parametrize("target", [0.25, 0.5, 0.75])
def test_structured_magnitude_matches_the_plain_reference(target):
    model = small_bert()
    w, lay = weights_of(model), units.layout(model)
    # Make layer 2's heads the smallest by far, so that the one-head-per-layer rule binds at 50% and 75%.
    with torch.no_grad():
        for name in ("query", "key", "value"):
            w[f"encoder.layer.2.attention.self.{name}.weight"].mul_(0.01)
    mask = get_strategy("structured_magnitude")(w, Mask.ones_like(model), target, layout=lay)
    hs = {(i, h): ref_head_norm(w, i, h) for i in range(LAYERS) for h in range(HEADS)}
    ns = {(i, j): ref_neuron_norm(w, i, j) for i in range(LAYERS) for j in range(FFN)}
    n_h, n_n = round(target * LAYERS * HEADS), round(target * LAYERS * FFN)
    assert pruned_units(mask, lay) == ref_prune(hs, ns, n_h, n_n, min_heads=1)
    assert units.is_structured(mask, lay)
    assert units.heads_alive(mask, lay).sum(dim=1).min() >= 1
    d = HIDDEN // HEADS
    assert mask.numel - mask.nonzero == n_h * 4 * HIDDEN * d + n_n * 2 * HIDDEN  # exact weight count; pooler dense
    assert bool(mask["pooler.dense.weight"].all())


def test_min_heads_zero_and_unreachable_counts():
    model = small_bert()
    w, lay = weights_of(model), units.layout(model)
    strategy = get_strategy("structured_magnitude")
    full = strategy(w, Mask.ones_like(model), 0.9, layout=lay, min_heads_per_layer=0)
    assert int((~units.heads_alive(full, lay)).sum()) == round(0.9 * LAYERS * HEADS)
    with pytest.raises(units.UnitError, match="min_heads_per_layer"):
        strategy(w, Mask.ones_like(model), 0.9, layout=lay, min_heads_per_layer=2)


def test_pruned_units_stay_pruned_and_later_levels_add_to_them():
    model = small_bert()
    w, lay = weights_of(model), units.layout(model)
    strategy = get_strategy("structured_magnitude")
    m1 = strategy(w, Mask.ones_like(model), 0.25, layout=lay)
    # Train-like change: the weights move, level 2 must keep level 1's pruned units pruned.
    w2 = {k: v + 0.05 * torch.randn_like(v) for k, v in w.items()}
    m2 = strategy(w2, m1, 0.5, layout=lay)
    h1, n1 = pruned_units(m1, lay)
    h2, n2 = pruned_units(m2, lay)
    assert h1 <= h2 and n1 <= n2
    assert (len(h2), len(n2)) == (round(0.5 * LAYERS * HEADS), round(0.5 * LAYERS * FFN))
    assert all(not bool((m2[k] & ~m1[k]).any()) for k in m1)


def gated_reference(model, batches):
    """Michel et al.'s importance with real gates: xi multiplies each head's context / each neuron's activation,
    one example at a time, |dL/dxi| summed over examples."""
    lay = units.layout(model)
    mods = dict(model.bert.named_modules())
    head_total = torch.zeros(LAYERS, HEADS, dtype=torch.float64)
    neuron_total = torch.zeros(LAYERS, FFN, dtype=torch.float64)
    for batch in batches:
        for b in range(batch["input_ids"].shape[0]):
            one = {k: v[b:b + 1] for k, v in batch.items()}
            gates_h = torch.ones(LAYERS, HEADS, requires_grad=True)
            gates_n = torch.ones(LAYERS, FFN, requires_grad=True)
            handles = []
            for i in range(LAYERS):
                def gate_h(mod, args, i=i):
                    x = args[0]
                    return (x * gates_h[i].repeat_interleave(lay[i].head_size),)

                def gate_n(mod, args, i=i):
                    return (args[0] * gates_n[i],)
                handles.append(mods[f"encoder.layer.{i}.attention.output.dense"].register_forward_pre_hook(gate_h))
                handles.append(mods[f"encoder.layer.{i}.output.dense"].register_forward_pre_hook(gate_n))
            model(**one).loss.backward()
            for h in handles:
                h.remove()
            head_total += gates_h.grad.abs().double()
            neuron_total += gates_n.grad.abs().double()
    return head_total, neuron_total


def test_importance_equals_the_gradient_of_real_gates_per_example():
    model = small_bert()
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, 50, (4, 7), generator=g),
                "attention_mask": torch.ones(4, 7, dtype=torch.long),
                "labels": torch.randint(0, 2, (4,), generator=g)} for _ in range(2)]
    lay = units.layout(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    heads, neurons = units.importance_scores(model, lay, batches, lambda m, b: m(**b).loss, normalize=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # weights untouched
    assert all(p.grad is None for p in model.parameters())  # gradients as they were
    ref_h, ref_n = gated_reference(model, batches)
    assert torch.allclose(heads.double(), ref_h, rtol=1e-4, atol=1e-7)
    assert torch.allclose(torch.stack(neurons).double(), ref_n, rtol=1e-4, atol=1e-7)
    normed, _ = units.importance_scores(model, lay, batches, lambda m, b: m(**b).loss)
    assert torch.allclose(normed.norm(dim=1), torch.ones(LAYERS))


def test_random_units_keep_a_structured_masks_per_layer_counts():
    model = small_bert()
    w, lay = weights_of(model), units.layout(model)
    source = get_strategy("structured_magnitude")(w, Mask.ones_like(model), 0.5, layout=lay)
    dense = Mask.ones_like(model)
    rnd = get_strategy("structured_random")(w, dense, 0.0, generator=torch.Generator().manual_seed(1),
                                           layer_sparsities=source.layer_sparsities(), layout=lay)
    assert units.is_structured(rnd, lay)
    assert rnd.layer_sparsities() == source.layer_sparsities()
    src, got = units.unit_counts(source, lay), units.unit_counts(rnd, lay)
    assert got["heads_per_layer"] == src["heads_per_layer"] and got["neurons_per_layer"] == src["neurons_per_layer"]
    assert pruned_units(rnd, lay) != pruned_units(source, lay)


def test_is_structured_refuses_a_partly_pruned_head():
    model = small_bert()
    lay = units.layout(model)
    mask = Mask.ones_like(model)
    assert units.is_structured(mask, lay)
    mask["encoder.layer.0.attention.self.query.weight"][0, 0] = False
    assert not units.is_structured(mask, lay)


def test_config_selects_structured_strategies_and_checks_their_parameters():
    cfg = RunConfig.from_flat(strategy="structured_importance", importance_batches=4, min_heads_per_layer=0)
    assert cfg.prune.strategy == "structured_importance"
    with pytest.raises(ConfigError, match="importance_batches"):
        PruneConfig(strategy="structured_importance", importance_batches=0)
    with pytest.raises(ConfigError, match="structured_magnitude"):
        PruneConfig(strategy="structured_magnitud")
    with pytest.raises(ConfigError, match="batches"):
        prune(small_bert(), Mask.ones_like(small_bert()), PruneConfig(strategy="structured_importance"), 1)


def test_structured_imp_rewinds_to_theta0_under_a_structured_mask(tiny_run_config, monkeypatch):
    cfg = tiny_run_config(levels=2, strategy="structured_importance", importance_batches=2)
    theta0 = {k: p.detach().clone() for k, p in prunable_parameters(build_model(cfg.model, "classification", 2)).items()}
    seen = {}
    real = train.fine_tune

    def check(model, data, tcfg, *, desc=None, **kw):
        level = int(desc.split()[-1])
        if level:
            mask = Mask.load(RunPaths(cfg.output_root + "/" + cfg.run_name()).mask(level))
            params = prunable_parameters(model)
            for k, m in mask.items():
                assert torch.equal(params[k].detach()[m], theta0[k][m]), k
                assert torch.count_nonzero(params[k].detach()[~m]) == 0, k
            seen[level] = units.is_structured(mask, units.layout(model))
        return real(model, data, tcfg, desc=desc, **kw)

    monkeypatch.setattr(train, "fine_tune", check)
    root = driver.run(cfg)
    assert seen == {1: True, 2: True}
    masks = load_masks(root)
    lay = units.layout(build_model(cfg.model, "classification", 2))
    assert [units.unit_counts(masks[k], lay)["heads_kept"] for k in (1, 2)] == [3, 2]  # tiny-bert: 2 x 2 heads
    df = load_runs(root).sort_values("level")
    assert df["heads_kept"].tolist() == [4, 3, 2] and df["neurons_kept"].tolist() == [256, 205, 154]
    table = load_units(root)
    assert len(table) == 3 * 2 and table.groupby("level")["heads_kept"].sum().tolist() == [4, 3, 2]
    assert set(table["method"]) == {"IMP"}  # labelled as the analysis labels the folder's runs
    assert head_matrix(table, root.name, 2).tolist() == [[float(x) for x in row] for row in
                                                         units.unit_counts(masks[2], lay)["head_mask"]]
    monkeypatch.setattr(train, "fine_tune", real)
    rp = driver.run(tiny_run_config(kind="random_prune", source_run=str(root), source_levels=[2]))
    got = load_masks(rp)[2]
    assert units.is_structured(got, lay)
    assert units.unit_counts(got, lay)["heads_per_layer"] == units.unit_counts(masks[2], lay)["heads_per_layer"]


def test_expected_head_iou_is_the_average_over_every_random_draw():
    """Brute force: every pair of head sets with the given per-layer counts, equally likely."""
    from itertools import combinations, product

    heads, kept_a, kept_b = 4, [2, 3], [1, 2]

    def draws(kept):
        return list(product(*[[frozenset((layer, h) for h in c) for c in combinations(range(heads), k)]
                              for layer, k in enumerate(kept)]))
    total = n = 0
    for a in draws(kept_a):
        for b in draws(kept_b):
            sa, sb = frozenset().union(*a), frozenset().union(*b)
            total += len(sa & sb) / len(sa | sb)
            n += 1
    assert expected_iou(kept_a, kept_b, heads) == pytest.approx(total / n, abs=1e-12)


def test_head_overlap_of_identical_and_disjoint_runs():
    import pandas as pd

    rows = []
    for run, seed, mask in (("a", 0, ((1, 1, 0, 0),)), ("b", 1, ((1, 1, 0, 0),)), ("c", 2, ((0, 0, 1, 1),))):
        rows.append({"run": run, "kind": "imp", "task": "t", "seed": seed, "strategy": "structured_magnitude",
                     "level": 1, "sparsity": 0.5, "score": 0.5, "layer": 0, "heads_kept": 2, "heads_total": 4,
                     "neurons_kept": 3, "head_mask": tuple(bool(x) for x in mask[0])})
    got = head_overlap(pd.DataFrame(rows), 1).set_index(["run_a", "run_b"])
    assert got.loc[("a", "b"), "iou"] == 1.0 and got.loc[("a", "c"), "iou"] == 0.0
    assert got.loc[("a", "b"), "random_iou"] == pytest.approx(expected_iou([2], [2], 4))
    assert set(got["pair"]) == {"seeds"}


@pytest.mark.notebook
def test_the_structured_notebook_draws_its_figures(tiny_config_factory, tmp_path):
    from notebook_run import run_analysis_notebook

    root = tmp_path / "runs"
    trunks = [driver.run(tiny_config_factory(root, levels=1, rate=0.5, seed=seed, strategy="structured_magnitude"))
              for seed in (0, 1)]
    driver.run(tiny_config_factory(root, levels=1, kind="random_prune", source_run=trunks[0].name))
    assert run_analysis_notebook("structured", root, tmp_path) == {
        f"structured_{name}.{ext}" for name in ("heads", "neurons", "overlap") for ext in ("png", "pdf")}


def test_two_methods_of_one_strategy_stay_apart_in_the_unit_table_overlap_and_figure():
    """Two learning rates of one structured strategy on one task: the head overlap pairs them as runs that
    differ in settings (not as seeds), never pairs two strategies, and the neurons figure draws one line per
    method (their neurons were averaged together before)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from tickets_core import plots

    rows = []
    for run, seed, method, strategy, mask, neurons in (
            ("a", 0, "IMP, lr 0.0001", "structured_magnitude", (1, 1, 0, 0), 3),
            ("b", 0, "IMP, lr 0.001", "structured_magnitude", (1, 0, 1, 0), 5),
            ("c", 1, "IMP, lr 0.001", "structured_magnitude", (1, 0, 1, 0), 5),
            ("d", 0, "IMP, importance", "structured_importance", (0, 0, 1, 1), 7)):
        rows.append({"run": run, "kind": "imp", "method": method, "task": "t", "seed": seed, "strategy": strategy,
                     "level": 1, "sparsity": 0.5, "score": 0.5, "layer": 0, "heads_kept": 2, "heads_total": 4,
                     "neurons_kept": neurons, "head_mask": tuple(bool(x) for x in mask)})
    table = pd.DataFrame(rows)
    got = head_overlap(table, 1).set_index(["run_a", "run_b"])
    assert sorted(got.index) == [("a", "b"), ("a", "c"), ("b", "c")]  # d: another strategy, paired with none
    assert got["pair"].to_dict() == {("a", "b"): "settings", ("a", "c"): "seeds and settings", ("b", "c"): "seeds"}
    assert got.loc[("a", "b"), "iou"] == pytest.approx(1 / 3)
    fig = plots.neurons_per_layer(table)
    lines = {ln.get_label().replace("\n", " "): list(ln.get_ydata()) for ln in fig.axes[0].get_lines()}  # wrapped
    plt.close(fig)
    assert lines == {"magnitude (IMP, lr 0.0001), t, level 1 (1 seed)": [3],
                     "magnitude (IMP, lr 0.001), t, level 1 (2 seeds)": [5],
                     "importance, t, level 1 (1 seed)": [7]}
