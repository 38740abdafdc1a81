"""Physically smaller models: a structured ticket's heads and neurons removed, loadable by plain transformers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification,
                          DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification)

from tickets_core.interop.export import export, main
from tickets_core.interop.shrink import CODE_FILE, save_shrunk, shrink
from tickets_core.lottery import driver
from tickets_core.models.prunable import prunable_parameters
from tickets_core.pruning import units
from tickets_core.pruning.masks import Mask
from tickets_core.pruning.strategies import get_strategy
from tickets_core.runs.paths import RunPaths
from tickets_core.tasks import get_task
from tickets_core.training import loop as train

FAMILIES = {
    "bert": lambda: BertForSequenceClassification(BertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=24, vocab_size=50,
        max_position_embeddings=24)),
    "roberta": lambda: RobertaForSequenceClassification(RobertaConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=24, vocab_size=50,
        max_position_embeddings=24, pad_token_id=1)),
    "distilbert": lambda: DistilBertForSequenceClassification(DistilBertConfig(
        dim=32, n_layers=3, n_heads=4, hidden_dim=24, vocab_size=50, max_position_embeddings=24)),
}


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return FAMILIES[family]().eval()


def inputs():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 50, (4, 11), generator=g)
    attention = torch.ones_like(ids)
    attention[1, 6:] = 0  # a padded row: real lengths
    return {"input_ids": ids, "attention_mask": attention}


def masked_copy(model, mask):
    out = copy.deepcopy(model)
    mask.bind(out).apply_()
    return out


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def structured_mask(model, target=0.5):
    w = {k: p.detach() for k, p in prunable_parameters(model).items()}
    return get_strategy("structured_magnitude")(w, Mask.ones_like(model), target, layout=units.layout(model))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("ffn", ["exact", "pad"])
def test_shrunk_model_computes_the_masked_model_and_reloads_with_plain_transformers(family, ffn, tmp_path):
    model = tiny(family)
    mask = structured_mask(model)
    lay = units.layout(model)
    small = shrink(model, mask, ffn=ffn)
    batch = inputs()
    want = logits(masked_copy(model, mask), batch)
    assert torch.allclose(logits(small, batch), want, atol=1e-5, rtol=1e-5)
    n_small, n_dense = (sum(p.numel() for p in m.parameters()) for m in (small, model))
    assert n_small < n_dense
    pruned = {int(k): v for k, v in small.config.pruned_heads.items()}
    heads = units.heads_alive(mask, lay)
    assert pruned == {lu.layer: [h for h in range(4) if not heads[i, h]] for i, lu in enumerate(lay)
                      if not bool(heads[i].all())}
    out = save_shrunk(small, tmp_path / "small")
    assert (out / CODE_FILE).is_file() and "auto_map" in json.loads((out / "config.json").read_text())
    loaded = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    assert torch.allclose(logits(loaded, batch), want, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in loaded.parameters()) == n_small


def test_all_heads_kept_and_a_padded_ffn_is_a_stock_folder(tmp_path):
    model = tiny("bert")
    lay = units.layout(model)
    g = torch.Generator().manual_seed(0)
    neurons = [torch.rand(lu.neurons, generator=g) > 0.5 for lu in lay]
    mask = units.with_units(Mask.ones_like(model), lay, torch.ones(3, 4, dtype=torch.bool), neurons)
    small = shrink(model, mask, ffn="pad")
    out = save_shrunk(small, tmp_path / "small")
    assert not (out / CODE_FILE).exists()
    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()  # no remote code at all
    assert loaded.config.intermediate_size == max(int(n.sum()) for n in neurons)
    assert torch.allclose(logits(loaded, inputs()), logits(masked_copy(model, mask), inputs()), atol=1e-5)


def test_a_folder_with_removed_heads_refuses_to_load_without_its_code(tmp_path):
    model = tiny("bert")
    out = save_shrunk(shrink(model, structured_mask(model)), tmp_path / "small")
    with pytest.raises(Exception, match="mismatch|size"):
        AutoModelForSequenceClassification.from_pretrained(out)  # never silently re-initialised


def test_unstructured_masks_and_headless_layers_are_refused_in_one_line():
    model = tiny("bert")
    w = {k: p.detach() for k, p in prunable_parameters(model).items()}
    unstructured = get_strategy("magnitude_global")(w, Mask.ones_like(model), 0.5)
    with pytest.raises(units.UnitError, match="structured") as info:
        shrink(model, unstructured)
    assert "\n" not in str(info.value)
    lay = units.layout(model)
    no_heads = torch.ones(3, 4, dtype=torch.bool)
    no_heads[1] = False
    mask = units.with_units(Mask.ones_like(model), lay, no_heads, [torch.ones(24, dtype=torch.bool)] * 3)
    with pytest.raises(units.UnitError, match="min_heads_per_layer"):
        shrink(model, mask)


def test_export_shrink_of_a_structured_run_scores_as_the_run(tiny_run_config, tmp_path):
    cfg = tiny_run_config(levels=1, max_steps=2, save_weights=True, strategy="structured_magnitude", rate=0.5)
    run_dir = driver.run(cfg)
    assert main([str(run_dir), str(tmp_path / "small"), "--level", "1", "--shrink"]) == 0
    out = tmp_path / "small"
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    data = get_task("rotten_tomatoes").load(cfg.data, AutoTokenizer.from_pretrained(out))
    recorded = json.loads(RunPaths(run_dir).metrics(1).read_text())
    got = train.evaluate(model, data, cfg.train)
    assert got["accuracy"] == recorded["eval"]["accuracy"]
    assert got["loss"] == pytest.approx(recorded["eval"]["loss"], abs=1e-5)
    ticket = json.loads((out / "ticket.json").read_text())
    assert ticket["shrunk"]["parameters"] < ticket["shrunk"]["parameters_dense"]
    assert ticket["shrunk"]["trust_remote_code"] and "trust_remote_code=True" in (out / "README.md").read_text()
    with pytest.raises(Exception):
        export(run_dir, 0, tmp_path / "dense", shrink=True, ffn="wide")


def test_training_the_shrunk_model_is_training_under_the_mask(movie_csv_dir, tokenizer, tmp_path):
    """No dropout: the same loss curve and the same weights (float tolerance) as masked training."""
    from tickets_core.core.config import DataConfig, TrainConfig
    from tickets_core.pruning.shrink import expand_into, shrinkable

    torch.manual_seed(0)
    full = BertForSequenceClassification(BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        vocab_size=tokenizer.vocab_size, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, classifier_dropout=0.0))
    mask = structured_mask(full, 0.5)
    assert shrinkable(full, mask) and not shrinkable(full, Mask.ones_like(full))
    data = get_task("rotten_tomatoes").load(DataConfig(task="rotten_tomatoes", data_dir=str(movie_csv_dir),
                                                       cache_dir=str(tmp_path), max_seq_length=16,
                                                       max_train_samples=32, max_eval_samples=16), tokenizer)
    cfg = TrainConfig(max_steps=4, batch_size=8, eval_batch_size=16, learning_rate=1e-3, device="cpu", progress=False,
                      eval_every=1)
    masked = masked_copy(full, mask)
    small = shrink(full, mask)
    ref = train.fine_tune(masked, data, cfg, seed=0, bound_mask=mask.bind(masked))
    got = train.fine_tune(small, data, cfg, seed=0)
    assert [h["step"] for h in got["history"]] == [1, 2, 3, 4]
    for a, b in zip(ref["history"], got["history"]):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    assert got["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-5)
    back = copy.deepcopy(full)
    expand_into(back, small, mask)
    want, have = dict(masked.named_parameters()), dict(back.named_parameters())
    for name, p in want.items():  # removed units' biases too: masked training leaves them (zero gradient, no decay)
        assert torch.allclose(have[name], p, atol=1e-5), name
    assert torch.allclose(logits(back, inputs_for(tokenizer)), logits(masked, inputs_for(tokenizer)), atol=1e-5)


def inputs_for(tokenizer):
    enc = tokenizer(["a fine film", "dull and flat, a tired mess"], padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def test_a_structured_run_can_train_its_shrunk_model(tiny_run_config):
    root = driver.run(tiny_run_config(levels=1, rate=0.5, strategy="structured_magnitude", train_shrunk=True))
    m = json.loads(RunPaths(root).metrics(1).read_text())
    assert m["train"]["shrunk"]["parameters"] < m["train"]["shrunk"]["parameters_full"]
    assert "shrunk" not in json.loads(RunPaths(root).metrics(0).read_text())["train"]  # the dense level: as usual
