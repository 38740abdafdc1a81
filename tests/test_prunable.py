"""Prunable-weight discovery: bert-base numbers, every supported family, head-independent names."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from tickets_core.core.config import ModelConfig
from tickets_core.pruning.masks import Mask
from tickets_core.models.build import build_model
from tickets_core.models.components import describe
from tickets_core.models.prunable import base_model, prunable_parameters

FAMILIES = ["tiny-bert", "tiny-roberta", "tiny-distilbert", "tiny-electra"]


def test_bert_base_counts_match_the_paper(bert_base_cls):
    params = prunable_parameters(bert_base_cls)
    assert len(params) == 73
    assert sum(p.numel() for p in params.values()) == 85_524_480
    comps = Counter(describe(n)[1] for n in params)
    assert comps == {"query": 12, "key": 12, "value": 12, "attn_out": 12, "ffn_in": 12, "ffn_out": 12, "pooler": 1}
    assert sorted({describe(n)[0] for n in params} - {None}) == list(range(12))
    assert describe("encoder.layer.7.attention.output.dense.weight") == (7, "attn_out")
    assert describe("encoder.layer.7.output.dense.weight") == (7, "ffn_out")
    assert describe("pooler.dense.weight") == (None, "pooler")
    # Never embeddings, biases, LayerNorm or the classifier; the tensors are the model's own.
    assert all(n.endswith(".weight") and "embeddings" not in n and "LayerNorm" not in n for n in params)
    live = dict(bert_base_cls.bert.named_parameters())
    assert all(live[n] is p for n, p in params.items())
    assert len(prunable_parameters(bert_base_cls, include_pooler=False)) == 72


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_six_matrices_per_layer_and_no_head(family):
    heads = {h: build_model(ModelConfig(family), h) for h in ("classification", "mlm", "qa")}
    names = {h: set(prunable_parameters(m)) for h, m in heads.items()}
    for h, m in heads.items():
        body = {n for n in names[h] if describe(n)[1] != "pooler"}
        assert len(body) == 12  # 2 layers x 6
        assert Counter(describe(n) for n in body) == Counter(
            (layer, c) for layer in (0, 1) for c in ("query", "key", "value", "attn_out", "ffn_in", "ffn_out"))
        assert not any("embeddings" in n for n in names[h])  # ELECTRA's embeddings_project excluded
        head_params = {id(p) for p in m.parameters()} - {id(p) for p in base_model(m).parameters()}
        assert not head_params & {id(p) for p in prunable_parameters(m).values()}
    # Same names for every head, up to the pooler that only some classifiers have.
    assert names["mlm"] == names["qa"]
    assert names["classification"] - names["mlm"] <= {"pooler.dense.weight"}
    if family == "tiny-bert":
        assert "pooler.dense.weight" in names["classification"]


def test_distilbert_component_names():
    assert describe("transformer.layer.1.attention.q_lin.weight") == (1, "query")
    assert describe("transformer.layer.1.attention.out_lin.weight") == (1, "attn_out")
    assert describe("transformer.layer.0.ffn.lin1.weight") == (0, "ffn_in")
    assert describe("transformer.layer.0.ffn.lin2.weight") == (0, "ffn_out")


def test_one_mask_fits_mlm_classification_and_qa():
    cls = build_model(ModelConfig("tiny-bert"), "classification")
    mlm = build_model(ModelConfig("tiny-bert"), "mlm")
    qa = build_model(ModelConfig("tiny-bert"), "qa")
    g = torch.Generator().manual_seed(0)
    mask = Mask({k: torch.rand(v.shape, generator=g) > 0.5 for k, v in Mask.ones_like(cls).items()})
    assert "pooler.dense.weight" in mask
    for model in (cls, mlm, qa):
        mask.bind(model).apply_()
        params = dict(base_model(model).named_parameters())
        for k, m in mask.items():
            if k in params:
                assert torch.all(params[k][~m] == 0) and torch.all(params[k][m] != 0)
    # MLM/QA have no pooler: the pooler entry is dropped.
    assert set(mask.fitted(mlm)) == set(mask) - {"pooler.dense.weight"}
    # An MLM mask (no pooler entry) on a classifier keeps its pooler dense.
    mlm_mask = Mask({k: v for k, v in mask.items() if k != "pooler.dense.weight"})
    fitted = mlm_mask.fitted(cls)
    assert bool(fitted["pooler.dense.weight"].all())
    fresh = build_model(ModelConfig("tiny-bert"), "classification", seed=1)
    before = fresh.bert.pooler.dense.weight.detach().clone()
    mlm_mask.bind(fresh).apply_()
    assert torch.equal(fresh.bert.pooler.dense.weight, before)


@pytest.mark.slow
def test_real_offline_minilm():
    model = build_model(ModelConfig("minilm"), "classification")
    params = prunable_parameters(model)
    assert len(params) == 6 * 6 + 1
    assert sum(p.numel() for p in params.values()) == 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 384
