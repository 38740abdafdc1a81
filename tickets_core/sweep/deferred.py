"""Jobs planned before their source levels are known: ``source_levels: highest_matching``.

A transfer (or branch) entry may ask for each source's highest matching level
instead of fixed levels.  That level is known only once the source task's
trunk and dense runs are done, so the sweep plans such a job with those runs
as dependencies and a :class:`HighestMatching` resolver.  Right before the job
is submitted, :meth:`Job.finalize <tickets_core.sweep.planner.Job.finalize>`
computes the level from the run folders, exactly as the analysis does
(:mod:`tickets_core.analysis.results` + :func:`tickets_core.analysis.highest_matching_sparsity`
for the method of the job's source run, with the sweep's ``n_std``), then
fixes the job's ``source_levels``, run name, folder and label.  When the
source runs are already done at plan time the job is resolved at once, so a
rerun of a finished sweep finds it done.

Bad input, in one line: a source task without a ``dense`` run trained like
its trunk (same model, data and fine-tuning settings), in the sweep or on
disk, is an error at plan time, at the entry's ``source_levels`` line.  A
source whose method has no matching *pruned* level (only its dense level, or
nothing, matches) has nothing to transfer: the job is reported as skipped with
that reason (the sweep's exit status is then 1), and every other job runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..core.config import RunConfig
from ..core.settings import HIGHEST, dense_settings
from ..core.errors import RunStoreError, one_line



@dataclass
class HighestMatching:
    """Resolves a deferred job: its source run's method's highest matching level, from the run folders."""

    source_task: str
    source_run: str          # the run (of this job's trunk seed) whose method's level is meant
    output_root: str
    n_std: float
    label: str               # the job's label, to which the level is added

    def level(self) -> int:
        """The level; raises a one-line ValueError when there is none worth transferring."""
        from .. import analysis
        from ..analysis import results

        df = analysis.add_method(results.load_runs(self.output_root, tasks=[self.source_task]))
        mine = df[df["run"] == self.source_run] if len(df) else df
        if len(mine) == 0:
            raise ValueError(f"source run {self.source_run} has no finished level under {self.output_root}")
        method = mine["method"].iloc[0]
        table = analysis.highest_matching_sparsity(df, method=method, tasks=[self.source_task], n_std=self.n_std)
        row = table.iloc[0]
        if math.isnan(row["threshold"]):
            raise ValueError(f"{self.source_task} ({method}) has no dense baseline trained like it")
        if math.isnan(row["level"]) or row["sparsity"] <= 0:
            found = "no level" if math.isnan(row["level"]) else "only its dense level"
            raise ValueError(f"{self.source_task} ({method}, {int(row['n_seeds'])} seed(s)): {found} is matching "
                             f"(threshold {row['threshold']:.4f} = dense mean - {self.n_std:g} std): "
                             "no ticket to transfer")
        return int(row["level"])

    def level_or_reason(self) -> int | str:
        """:meth:`level`, or the one-line reason why the job cannot run."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.level()
        except (ValueError, RunStoreError) as e:  # AnalysisError and ConfigError are ValueErrors
            return f"source_levels: {HIGHEST}: {one_line(e)}"

    def finalize(self, job, found: int | str | None = None) -> str | None:
        """Give ``job`` its concrete source level, run name and folder; a one-line reason when it cannot run.

        ``found``: :meth:`level_or_reason` when already known (planning reads it once per source run)."""
        level = self.level_or_reason() if found is None else found
        if isinstance(level, str):
            return level
        from ..lottery.identity import resolve

        params = {**job.parameters, "source_levels": [level]}
        cfg = resolve(RunConfig.from_flat(**params))
        job.name, job.parameters = cfg.run_name(), params
        job.run_dir = Path(self.output_root) / job.name
        job.output = job.run_dir / "notebook.ipynb"
        job.label = f"{self.label} at level {level} (highest matching)"
        job.resolver = None
        return None


def plan(planner, kind: str, task: str, seed: int, params: dict, at: tuple, *, label: str, source_run: str,
         source_task: str, trunk_kind: str):
    """Plan a job whose ``source_levels`` is the source's highest matching level (see the module docstring).

    ``planner`` is the sweep's :class:`~tickets_core.sweep.planner.Planner`; ``params`` the entry's run parameters
    without ``source_levels``.
    """
    where = at + ("source_levels",)
    placeholder = {**params, "source_levels": ([0], where)}
    cfg, flat = planner.config(kind, task, seed, placeholder, at, label, source_run)  # every other value checked
    want = dense_settings(planner.config_of(source_run).flat())
    # The runs the level is computed from: the source trunk's, and the dense seeds of its baseline, which the
    # analysis takes from 'dense' runs and from level 0 of 'imp' runs trained alike (analysis/matching.py).
    alike = [j for j in planner.planned(source_task, ("dense", "imp"))
             if dense_settings(planner.config_of(j.name).flat()) == want]
    sources = list({j.name: j for j in planner.planned(source_task, ("dense", trunk_kind)) + alike}.values())
    dense = [j for j in alike if j.parameters.get("kind") == "dense"]
    on_disk = [c for c in planner.finished("dense", source_task) if dense_settings(c.flat()) == want]
    if not dense and not on_disk:
        raise planner.error(where, f"{label}: source_levels: {HIGHEST} needs the dense baseline of {source_task}: "
                                   f"no 'dense' run of {source_task} trained like its trunk {source_run} (same "
                                   f"model, data and fine-tuning settings) in this sweep or under "
                                   f"{planner.output_root}")
    deps = [j.name for j in sources if planner.state(j.name) != "done"]
    flat = {k: v for k, v in flat.items() if k != "source_levels"}
    name = f"{cfg.run_name()}+{HIGHEST}"
    if name in planner.jobs:  # the same job listed twice: keep one
        return planner.jobs[name]
    resolver = HighestMatching(source_task, Path(source_run).name, str(planner.output_root), planner.n_std, label)
    job = planner.new_job(kind, name, f"{label} at {HIGHEST} (resolved after its source runs)", flat, at,
                          deps=deps, resolver=resolver)
    if not deps:  # the source runs are done: resolved now, so a finished run is seen
        found = planner.memo(("highest_matching", source_task, resolver.source_run), resolver.level_or_reason)
        if resolver.finalize(job, found) is None:
            job = planner.rename(name, job)
        # (when it cannot be resolved, the sweep says why in one line when it runs)
    return job
