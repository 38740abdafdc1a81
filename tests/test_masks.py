"""Mask type, 1-bit files, fitting and binding, and pruned weights staying zero under AdamW."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from tickets_core.core.config import ConfigError, ModelConfig
from tickets_core.pruning.masks import Mask, MaskFileError, MaskFitError
from tickets_core.models.build import build_model
from tickets_core.models.prunable import prunable_parameters


def random_mask(shapes: dict, p: float = 0.5, seed: int = 0) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({k: torch.rand(s, generator=g) >= p for k, s in shapes.items()})


@pytest.fixture
def tiny_cls():
    return build_model(ModelConfig("tiny-bert"), "classification")


def test_mask_refuses_non_bool_and_reports():
    with pytest.raises(ConfigError, match="bool"):
        Mask({"a": torch.ones(3)})
    with pytest.raises(ConfigError, match="tensor"):
        Mask({"a": [True]})
    m = Mask({"a": torch.tensor([True, False, False, True]), "b": torch.zeros(2, 3, dtype=torch.bool)})
    assert (m.numel, m.nonzero) == (10, 2)
    assert m.sparsity == pytest.approx(0.8) and m.density == pytest.approx(0.2)
    rep = m.report()
    assert rep["total"] == {"numel": 10, "nonzero": 2, "sparsity": pytest.approx(0.8)}
    assert rep["matrices"]["b"]["sparsity"] == 1.0
    other = Mask({"a": torch.tensor([True, True, False, False]), "b": torch.zeros(2, 3, dtype=torch.bool)})
    assert m.overlap(other) == pytest.approx(1 / 3)  # |{0}| / |{0, 1, 3}|


def test_save_load_roundtrip_is_bit_exact(tmp_path):
    m = random_mask({"x.weight": (7, 13), "y.weight": (1,), "z.weight": (3, 5, 2)}, p=0.3)
    path = m.save(tmp_path / "m.safetensors")
    back = Mask.load(path)
    assert list(back) == list(m)
    assert all(back[k].dtype == torch.bool and torch.equal(back[k], m[k]) for k in m)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_bert_base_mask_file_is_under_12_mb(bert_base_cls, tmp_path):
    shapes = {k: tuple(p.shape) for k, p in prunable_parameters(bert_base_cls).items()}
    m = random_mask(shapes, p=0.6)
    path = m.save(tmp_path / "bert.safetensors")
    size = os.path.getsize(path)
    assert size < 12_000_000
    assert size >= 85_524_480 // 8  # really one bit per weight, not less (nothing dropped)
    back = Mask.load(path)
    assert back.nonzero == m.nonzero and all(torch.equal(back[k], m[k]) for k in m)


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old = random_mask({"w": (40,)}, seed=1)
    old.save(path)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        random_mask({"w": (40,)}, seed=2).save(path)
    monkeypatch.undo()
    assert torch.equal(Mask.load(path)["w"], old["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _one_line_error(path) -> str:
    with pytest.raises(MaskFileError) as info:
        Mask.load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert isinstance(info.value, ConfigError)
    return msg


def test_corrupted_truncated_and_foreign_files_are_rejected(tmp_path):
    good = random_mask({"a.weight": (33, 9), "b.weight": (64,)}).save(tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 5])
    _one_line_error(tmp_path / "trunc.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01not a safetensors file at all")
    _one_line_error(tmp_path / "garbage.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    _one_line_error(tmp_path / "empty.safetensors")
    save_file({"a.weight": torch.ones(33, 9)}, str(tmp_path / "weights.safetensors"))
    assert "not a tickets_core mask" in _one_line_error(tmp_path / "weights.safetensors")
    # Right format marker, but the packed length does not match the shape.
    shapes = json.dumps({"a.weight": [33, 10]})
    save_file({"a.weight": torch.zeros(38, dtype=torch.uint8)}, str(tmp_path / "short.safetensors"),
              metadata={"format": "tickets_core.mask", "version": "1", "shapes": shapes})
    assert "packed bits" in _one_line_error(tmp_path / "short.safetensors")
    _one_line_error(tmp_path / "missing.safetensors")


def test_check_fits_names_the_first_bad_entry(tiny_cls):
    mask = Mask.ones_like(tiny_cls)
    mask.check_fits(tiny_cls)
    bad = mask.copy()
    bad["encoder.layer.0.attention.self.query.weight"] = torch.ones(64, 65, dtype=torch.bool)
    with pytest.raises(MaskFitError, match=r"encoder\.layer\.0\.attention\.self\.query\.weight.*\(64, 65\)"):
        bad.check_fits(tiny_cls)
    extra = mask.copy()
    extra["encoder.layer.9.output.dense.weight"] = torch.ones(64, 128, dtype=torch.bool)
    with pytest.raises(MaskFitError, match="layer.9"):
        extra.bind(tiny_cls)
    missing = mask.copy()
    del missing["encoder.layer.1.intermediate.dense.weight"]
    with pytest.raises(MaskFitError, match="layer.1.intermediate"):
        missing.check_fits(tiny_cls)


def _train_steps(model, bound, steps: int) -> None:
    model.bert.embeddings.requires_grad_(False)  # the 2M-weight embedding would dominate the step time
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        ids = torch.randint(0, 30522, (4, 12), generator=g)
        loss = model(input_ids=ids, labels=torch.randint(0, 2, (4,), generator=g)).loss
        loss.backward()
        if bound is not None:
            bound.mask_grads_()
        opt.step()
        opt.zero_grad()
        if bound is not None:
            bound.apply_()


def test_pruned_weights_stay_exactly_zero_under_adamw(tiny_cls):
    mask = random_mask({k: tuple(p.shape) for k, p in prunable_parameters(tiny_cls).items()}, p=0.7)
    bound = mask.bind(tiny_cls)
    bound.apply_()
    _train_steps(tiny_cls.train(), bound, steps=30)
    params = prunable_parameters(tiny_cls)
    for k, m in mask.items():
        assert torch.count_nonzero(params[k].detach()[~m]) == 0, k
        assert torch.count_nonzero(params[k].detach()[m]) == int(m.sum())  # survivors still train

    # Control: the same loop without the mask revives the zeroed weights (so the test can fail).
    control = build_model(ModelConfig("tiny-bert"), "classification")
    mask.bind(control).apply_()
    _train_steps(control.train(), None, steps=3)
    name = "encoder.layer.0.attention.self.query.weight"
    assert torch.count_nonzero(prunable_parameters(control)[name].detach()[~mask[name]]) > 0


def test_masks_to_compare_must_pair_up_by_name_and_shape():
    from tickets_core.pruning.early_bird import mask_distance

    a = Mask({"x": torch.tensor([True, False]), "y": torch.ones(2, 2, dtype=torch.bool)})
    assert [v is a["x"] for v, _ in a.paired(a.copy())] == [True, False]
    for compare in (Mask.overlap, mask_distance):  # one check for both
        with pytest.raises(MaskFitError, match="same names"):
            compare(a, Mask({"x": a["x"]}))
        with pytest.raises(MaskFitError, match=r"mask entry 'y' has shape \(2, 2\) vs \(4,\)"):
            compare(a, Mask({"x": a["x"], "y": torch.ones(4, dtype=torch.bool)}))


def test_multi_tensor_keep_masks_are_built_once_and_follow_a_cast(tiny_cls):
    mask = random_mask({k: tuple(p.shape) for k, p in prunable_parameters(tiny_cls).items()}, seed=2)
    bound = mask.bind(tiny_cls)
    bound.apply_(multi_tensor=True)
    keep = bound._keep
    bound.mask_grads_(multi_tensor=True), bound.apply_(multi_tensor=True), bound.apply_()
    assert bound._keep is keep  # per-step calls reuse the cached list
    tiny_cls.double()
    bound.apply_(multi_tensor=True)
    assert bound._keep is not keep and all(k.dtype == torch.float64 for k in bound._keep)
    params = prunable_parameters(tiny_cls)
    assert all(bool((params[k].detach()[~v] == 0).all()) for k, v in mask.items())
