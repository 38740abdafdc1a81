"""Fault injection: a run interrupted at its file events, for every run kind, resumes to the same results.

Every file tickets_core writes goes through ``fsio.atomic_write_bytes``; the
only file it removes is a level's carry file once that level is done.  These
tests record those events in an uninterrupted run of each registered kind
(tiny-bert, 1 step per level, levels 0 and 1; branches from a small finished
IMP trunk), then interrupt a fresh run at chosen events (:func:`points`: every
file kind of every kind, every done marker), run it again, and check that the
rerun ends with the same run folder: masks bit for bit, every level's metrics
(score, eval, training loss) equal, every level done, no carry file left.
Interruptions come in three forms:

* ``kill``: right after the event, and nothing is written after it (SIGKILL:
  not even the status record that says the run was interrupted);
* ``mid``: during the event: a half-written temporary file is left beside the
  target, which is never renamed (SIGKILL in the middle of a write);
* ``ctrl_c``: right after the event, as a KeyboardInterrupt that the driver
  sees (it records the run as interrupted, then re-raises).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch

from tickets_core.core import fsio

from tickets_core.lottery import driver
from tickets_core.core.fsio import read_json
from tickets_core.core.kinds import KINDS
from tickets_core.analysis.results import load_masks
from tickets_core.runs.paths import RunPaths

#: What every kind's run gets: levels 0 and 1.
BASE = {"levels": 1, "rate": 0.3}
#: IMP with theta_i rewinding and a kept head writes every kind of file a level can write (rewind, carry).
PER_KIND = {"imp": {"rewind_step": 1, "reset_head": False}}
COMPARED = ("level", "sparsity", "main_metric", "score", "eval", "source", "seed", "task", "kind")
TRAIN_COMPARED = ("train_loss", "steps", "examples")


class Interrupted(KeyboardInterrupt):
    """The simulated interruption (a KeyboardInterrupt, as Ctrl-C or a kill would end the run)."""


class Faults:
    """Records a run's file events (writes through fsio, carry-file removals) and interrupts at one of them."""

    def __init__(self, root: Path, at: int | None = None, mode: str = "kill") -> None:
        self.root, self.at, self.mode = root, at, mode
        self.events: list[str] = []
        self.dead = False

    def _name(self, path) -> str:
        p = Path(path)
        run = next((q for q in [p, *p.parents] if q.parent == self.root), None)
        return str(p.relative_to(run)) if run is not None else p.name

    def event(self, what: str, path, do, data: bytes = b""):
        if self.dead:
            raise Interrupted(f"killed earlier; no {what} of {path}")
        i = len(self.events)
        self.events.append(f"{what} {self._name(path)}")
        if i == self.at and self.mode == "mid":
            self.dead = True
            if what == "write":  # what a kill mid-write leaves: a temporary file, never renamed
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                (Path(path).parent / f".{Path(path).name}.killed.tmp").write_bytes(data[: len(data) // 2])
            raise Interrupted(f"killed during {what} of {path}")
        try:
            return do()
        finally:
            if i == self.at:
                self.dead = self.mode == "kill"
                raise Interrupted(f"interrupted after {what} of {path}")


@pytest.fixture
def faults(monkeypatch):
    """``install(root, at=None, mode="kill") -> Faults``: every tickets_core write and carry removal goes through it."""
    real_write = fsio.atomic_write_bytes
    real_unlink = os.unlink

    def install(root: Path, at: int | None = None, mode: str = "kill") -> Faults:
        f = Faults(root, at, mode)

        def write(path, data):
            return f.event("write", path, lambda: real_write(path, data), data)

        def unlink(path, *args, **kwargs):
            if Path(path).name == "carry.safetensors" and Path(path).exists():
                return f.event("remove", path, lambda: real_unlink(path, *args, **kwargs))
            return real_unlink(path, *args, **kwargs)

        # every module that imported the function by name, as well as fsio itself (atomic_write_json/text)
        for mod in [m for name, m in sys.modules.items() if name.startswith("tickets_core") and m is not None]:
            if getattr(mod, "atomic_write_bytes", None) is real_write:
                monkeypatch.setattr(mod, "atomic_write_bytes", write)
        monkeypatch.setattr(os, "unlink", unlink)  # Path.unlink calls os.unlink
        monkeypatch.setattr(os, "remove", unlink)
        return f

    return install


@pytest.fixture(scope="module")
def trunk(tiny_config_factory, tmp_path_factory):
    """The source of every branch: a finished IMP trunk (levels 0 and 1)."""
    return driver.run(tiny_config_factory(tmp_path_factory.mktemp("source"), **BASE))


def outcome(run_dir: Path) -> dict:
    """What a finished run folder holds, in comparable form."""
    paths = RunPaths(run_dir)
    status = read_json(paths.status())
    levels = paths.levels()
    metrics = {}
    for k in levels:
        m = read_json(paths.metrics(k))
        metrics[k] = {**{key: m[key] for key in COMPARED}, **{key: m["train"][key] for key in TRAIN_COMPARED}}
    return {"name": run_dir.name, "state": status["state"], "levels_done": status["levels_done"], "levels": levels,
            "planned": status["levels_planned"], "metrics": metrics, "masks": load_masks(run_dir),
            "carry_files": sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("level_*/carry.safetensors"))}


def assert_same(got: dict, ref: dict, where: str) -> None:
    masks, ref_masks = got.pop("masks"), ref["masks"]
    assert got == {k: v for k, v in ref.items() if k != "masks"}, where
    assert sorted(masks) == sorted(ref_masks), where
    for k in ref_masks:
        assert sorted(masks[k]) == sorted(ref_masks[k]), where
        assert all(torch.equal(masks[k][n], ref_masks[k][n]) for n in ref_masks[k]), f"{where}: level {k} mask"


def file_kind(event: str) -> str:
    """``write mask.safetensors`` from ``write level_01/mask.safetensors``."""
    what, path = event.split(" ", 1)
    return f"{what} {Path(path).name}"


def points(kind: str, events: list[str]) -> list[tuple[int, str]]:
    """Where to interrupt: (event, mode) pairs.

    ``kill`` after the first event of every file kind a level writes or
    removes (mask, sparsity, carry, rewind, metrics, status, carry removal)
    and after every ``metrics.json`` (each level's done marker, where a rerun
    decides what is left to do).  Opening the run folder (config.json, the
    first status.json) is the same code for every kind: IMP covers it.  For
    IMP also ``mid`` during the first mask, carry and metrics writes, and
    ``ctrl_c`` after the first carry and metrics writes: they exercise the
    store's temporary files and the driver's status record, which every kind
    shares.  (An interruption *before* event i leaves what one *after* event
    i - 1 leaves, so these cover the moments before each write too.)
    """
    firsts: dict[str, int] = {}
    for i, e in enumerate(events):
        firsts.setdefault(file_kind(e), i)
    opening = {firsts["write config.json"], firsts["write status.json"]}
    kill = set(firsts.values()) | {i for i, e in enumerate(events) if file_kind(e) == "write metrics.json"}
    out = [(i, "kill") for i in sorted(kill if kind == "imp" else kill - opening)]
    if kind == "imp":
        mid = ("write mask.safetensors", "write carry.safetensors", "write metrics.json")
        out += [(firsts[k], "mid") for k in mid] + [(firsts[k], "ctrl_c") for k in mid[1:]]
    return out


@pytest.fixture(scope="module", autouse=True)
def quick_runs():
    """Make each of the many tiny runs here cheap without changing what it computes: load the tokenizer (and hash
    its vocabulary) once for the module, and use one CPU thread (a 2-layer, 64-wide model gains nothing from more;
    on a loaded machine extra threads only wait for each other).  Every run, reference and rerun alike, does so."""
    from tickets_core.models import build as models
    from tickets_core.tasks import common

    def once(fn, key):
        seen: dict = {}

        def cached(arg):
            if key(arg) not in seen:
                seen[key(arg)] = fn(arg)
            return seen[key(arg)]
        return cached

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "load_tokenizer", once(models.load_tokenizer, repr), raising=False)
        mp.setattr(common, "tokenizer_fingerprint", once(common.tokenizer_fingerprint, id), raising=False)
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_interrupted_run_resumes_to_the_same_results(kind, trunk, tiny_config_factory, tmp_path, faults,
                                                        monkeypatch):
    params = {**BASE, **PER_KIND.get(kind, {}), "kind": kind}
    if KINDS[kind].is_branch:
        params["source_run"] = str(trunk)
    ref_root = tmp_path / "ref"
    recorder = faults(ref_root)
    ref = outcome(driver.run(tiny_config_factory(ref_root, **params)))
    events = recorder.events
    monkeypatch.undo()
    assert ref["state"] == "done" and ref["carry_files"] == []
    assert len(ref["levels"]) == (1 if KINDS[kind].levels == "single" else 2)
    kinds_seen = {e.split()[0] + " " + Path(e.split()[1]).name for e in events}
    assert {"write config.json", "write status.json", "write sparsity.json", "write metrics.json"} <= kinds_seen
    if kind in PER_KIND:  # the IMP run covers the files only some levels write
        assert {"write rewind.safetensors", "write carry.safetensors", "remove carry.safetensors",
                "write mask.safetensors"} <= kinds_seen, kinds_seen
    start = time.perf_counter()
    for n, (at, mode) in enumerate(points(kind, events)):
        root = tmp_path / f"try{n}"
        cfg = tiny_config_factory(root, **params)
        faults(root, at, mode)
        with pytest.raises(KeyboardInterrupt):
            driver.run(cfg)
        monkeypatch.undo()
        where = f"{kind}: {mode} at event {at} ({events[at]})"
        run_dir = root / cfg.run_name()
        if mode == "ctrl_c" and at > events.index("write status.json"):  # the driver saw it and said so
            assert read_json(run_dir / "status.json")["state"] == "interrupted", where
        assert_same(outcome(driver.run(cfg)), dict(ref), where)
    print(f"{kind}: {len(points(kind, events))} interruptions of {len(events)} events "
          f"in {time.perf_counter() - start:.1f} s")

