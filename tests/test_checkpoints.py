"""Checkpoints inside a level (tickets_core.training.checkpoint): a run SIGKILLed at random steps, in the middle of
a checkpoint write or right after one, resumed each time, ends bit-identical to an uninterrupted run; a corrupt
checkpoint is ignored with one warning line; checkpoints are gone once their level is done; the walltime signal
writes one and stops the run with the requeue status.

Children are forked from a forkserver that imported torch and tickets_core once (cheap kills), as in
tests/test_reliability.py.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tickets_core.analysis.results import load_masks
from tickets_core.core.fsio import read_json
from tickets_core.lottery import driver
from tickets_core.runs.paths import RunPaths
from tickets_core.runs.status import run_state
from tickets_core.training import checkpoint as ckpt

#: imp with theta_i rewinding, a kept head (carry files), early-bird checks, periodic evaluations and saved weights:
#: every piece of state a checkpoint must hold.
RUN = dict(levels=2, max_steps=6, checkpoint_every=2, rewind_step=1, reset_head=False, early_bird_every=2,
           early_bird_eps=0.5, early_bird_window=5, eval_every=3, save_weights=True)
TIMES = ("time_s", "check_time_s")


def _child(flat: dict, mode: str | None, at: int) -> None:
    """Run ``flat`` and SIGKILL this process at the ``at``-th event of ``mode``: 'step' (the forward of a
    step), 'mid' (a checkpoint write: half a temporary file left), 'after' (right after a checkpoint)."""
    from tickets_core.core.config import RunConfig
    from tickets_core.training import fastpath

    torch.set_num_threads(1)
    driver.announce = lambda *a, **k: None  # the plan line's timed warm-up steps: not what is tested here
    count = [0]

    def tick():
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "step":
        call = fastpath.Steps.__call__

        def steps_call(self, *a, **k):
            tick()
            return call(self, *a, **k)
        fastpath.Steps.__call__ = steps_call
    elif mode in ("mid", "after"):
        write = ckpt.atomic_write_bytes

        def atomic_write_bytes(path, data):
            if mode == "mid" and count[0] + 1 == at:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).with_name(f".{Path(path).name}.x.tmp").write_bytes(data[: len(data) // 2])
            if mode == "mid":
                tick()
            out = write(path, data)
            if mode == "after":
                tick()
            return out
        ckpt.atomic_write_bytes = atomic_write_bytes
    driver.run(RunConfig.from_flat(**flat))


@pytest.fixture(scope="module")
def ctx():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "transformers", "tickets_core.lottery.driver"])
    return ctx


def run_child(ctx, flat: dict, mode: str | None = None, at: int = 0) -> int:
    child = ctx.Process(target=_child, args=(flat, mode, at))
    child.start()
    child.join(300)
    return child.exitcode


def strip_times(obj):
    if isinstance(obj, dict):
        return {k: strip_times(v) for k, v in obj.items() if k not in TIMES}
    if isinstance(obj, list):
        return [strip_times(v) for v in obj]
    return obj


def assert_same_run(ours: Path, ref: Path, levels) -> None:
    m_ours, m_ref = load_masks(ours), load_masks(ref)
    assert sorted(m_ours) == sorted(m_ref)
    assert all(torch.equal(m_ours[k][n], m_ref[k][n]) for k in m_ref for n in m_ref[k])
    for k in levels:
        a, b = RunPaths(ours), RunPaths(ref)
        assert strip_times(read_json(a.metrics(k))) == strip_times(read_json(b.metrics(k))), k
        wa, wb = load_file(a.weights(k)), load_file(b.weights(k))
        assert sorted(wa) == sorted(wb) and all(torch.equal(wa[n], wb[n]) for n in wb), k
    assert run_state(ours) == "done"
    assert not list(ours.rglob("checkpoint*.pt")) and not [p for p in ours.rglob(".*") if p.is_file()]


@pytest.mark.integration
def test_sigkill_at_random_points_inside_levels_resumes_bit_identical(ctx, tiny_run_config, tmp_path):
    flat = tiny_run_config(**RUN).flat()
    ref_root, root = tmp_path / "ref", tmp_path / "killed"
    assert run_child(ctx, {**flat, "output_root": str(ref_root)}) == 0
    name = next(ref_root.iterdir()).name
    ref_metrics = read_json(RunPaths(ref_root / name).metrics(1))
    assert ref_metrics["train"]["steps"] == 6 and ref_metrics["train"]["history"]  # the settings did what they say
    rng = random.Random(23)  # fixed: a failure can be replayed
    kills, resumed_mid_level = 0, 0
    while kills < 12:
        mode = rng.choice(["step", "step", "mid", "after"])
        code = run_child(ctx, {**flat, "output_root": str(root)}, mode, rng.randint(1, 3))
        assert code in (0, -signal.SIGKILL)
        if code == 0:
            break
        kills += 1
        resumed_mid_level += bool(list((root / name).rglob("checkpoint*.pt")))
    assert kills >= 10 and resumed_mid_level >= 5
    assert run_child(ctx, {**flat, "output_root": str(root)}) == 0
    assert_same_run(root / name, ref_root / name, levels=[0, 1, 2])


SHORT = dict(levels=1, max_steps=4, checkpoint_every=2, save_weights=True)


@pytest.fixture(scope="module")
def short(tiny_config_factory, tmp_path_factory) -> tuple[Path, Path]:
    """(an uninterrupted run of SHORT, the checkpoint of one stopped by the walltime flag after its first step)."""
    base = tmp_path_factory.mktemp("short")
    ref = driver.run(tiny_config_factory(base / "ref", **SHORT))
    ckpt.request_stop()
    with pytest.raises(ckpt.WalltimeReached) as info:
        driver.run(tiny_config_factory(base / "stopped", **SHORT))
    assert info.value.code == ckpt.REQUEUE_STATUS and info.value.path.is_file() and not ckpt.stop_requested()
    assert run_state(info.value.path.parents[1]) == "interrupted"
    return ref, info.value.path


def test_the_walltime_flag_writes_a_checkpoint_and_the_rerun_finishes_identical(short, tiny_config_factory,
                                                                                tmp_path):
    ref, path = short
    raw = path.read_bytes()
    assert torch.load(io.BytesIO(raw[len(ckpt.MAGIC) + 65:]), weights_only=True)["step"] == 1
    run = tmp_path / "runs" / ref.name
    shutil.copytree(path.parents[1], run)
    assert driver.run(tiny_config_factory(tmp_path / "runs", **SHORT)) == run
    assert_same_run(run, ref, levels=[0, 1])


@pytest.mark.parametrize("damage", ["junk", "flipped byte", "other level"])
def test_a_corrupt_checkpoint_is_ignored_with_one_line_and_the_level_restarts(damage, short, tiny_config_factory,
                                                                              tmp_path, capsys):
    ref, good = short
    raw = bytearray(good.read_bytes())
    paths = RunPaths(tmp_path / "runs" / ref.name)
    level = 1 if damage == "other level" else 0  # level 1: level 0's checkpoint put in its folder
    if damage == "junk":
        raw = b"junk"
    elif damage == "flipped byte":
        raw[-100] ^= 0xFF
    paths.level_dir(level).mkdir(parents=True)
    paths.checkpoint(level).write_bytes(bytes(raw))
    capsys.readouterr()
    driver.run(tiny_config_factory(tmp_path / "runs", **SHORT))
    err = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
    assert len(err) == 1 and err[0].startswith(f"warning: ignoring checkpoint {paths.checkpoint(level)}: "), err
    assert_same_run(paths.root, ref, levels=[0, 1])


def test_an_mlm_run_with_prefetched_batches_resumes_bit_identical(tiny_config_factory, tmp_path, monkeypatch):
    """MLM masking draws from its own generator while batches are collated ahead (prefetch): the checkpoint keeps
    the generator's state after the step it was taken at, not after the batches already prefetched."""
    from tickets_core.tasks.fixtures import write_text
    from tickets_core.training import fastpath

    flat = dict(task="mlm", data_dir=str(write_text(tmp_path / "txt", n_train=40, n_valid=8)), max_seq_length=24,
                levels=1, max_steps=4, checkpoint_every=3, prefetch_batches=3, save_weights=True)
    ref = driver.run(tiny_config_factory(tmp_path / "ref", **flat))
    calls, stop_at = [0], {2, 6}  # step 2 of level 0, then (resumed: steps 3-4) step 2 of level 1: off the cadence
    call = fastpath.Steps.__call__

    def steps_call(self, *a, **k):
        calls[0] += 1
        if calls[0] in stop_at:
            ckpt.request_stop()
        return call(self, *a, **k)

    monkeypatch.setattr(fastpath.Steps, "__call__", steps_call)
    for _ in stop_at:
        with pytest.raises(ckpt.WalltimeReached):
            driver.run(tiny_config_factory(tmp_path / "runs", **flat))
    run = driver.run(tiny_config_factory(tmp_path / "runs", **flat))
    assert_same_run(run, ref, levels=[0, 1])


def test_the_fast_path_with_bf16_master_weights_resumes_bit_identical(tiny_config_factory, tmp_path, monkeypatch):
    """The checkpoint holds the fp32 master weights (the bf16 compute copies are made from them again)."""
    from tickets_core.training import fastpath

    flat = dict(levels=1, max_steps=4, checkpoint_every=3, fast_path="on", precision="bf16", master_weights="on",
                save_weights=True)
    ref = driver.run(tiny_config_factory(tmp_path / "ref", **flat))
    assert read_json(RunPaths(ref).metrics(0))["fast_path"]["plan"]["master_weights"]
    calls, call = [0], fastpath.Steps.__call__

    def steps_call(self, *a, **k):
        calls[0] += 1
        if calls[0] == 2:
            ckpt.request_stop()
        return call(self, *a, **k)

    monkeypatch.setattr(fastpath.Steps, "__call__", steps_call)
    with pytest.raises(ckpt.WalltimeReached):
        driver.run(tiny_config_factory(tmp_path / "runs", **flat))
    assert_same_run(driver.run(tiny_config_factory(tmp_path / "runs", **flat)), ref, levels=[0, 1])
