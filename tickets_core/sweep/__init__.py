"""Sweeps: a YAML grid of runs, executed as papermill notebooks on a concurrent.futures executor.

Modules: :mod:`.spec` (load, validate, expand), :mod:`.execute` (engines,
ordering, progress, stopping), :mod:`.cluster` (Dask and SLURM), :mod:`.cli`
(the command line).

Usage::

    python -m tickets_core.sweep FILE [--workers N] [--dry-run] [--only PATTERN]
                                      [--output-root DIR] [--miniature]
                                      [--gpus 0,1] [--workers-per-gpu N]
                                      [--executor process|dask|slurm] [--scheduler ADDRESS]
                                      [--cluster sweeps/slurm.yaml] [--jobs N]

(also installed as the ``tickets-sweep`` command).

Sweep file
----------
::

    output_root: runs            # run folders; relative paths are relative to the current directory
    figures_dir: figures         # optional: where the analysis notebooks write figures (default: <output_root>/figures)
    notebooks_dir: notebooks     # optional; default: this checkout's notebooks/
    data_dirs:                   # optional: local data folder per task (sets data_dir)
      sst2: data/glue/SST-2
    n_std: 1.0                   # optional: matching = dense mean - n_std std (highest_matching; analysis)
    defaults:                    # parameters of every run
      model: minilm
      max_train_samples: 2000
    trunks:                      # each entry: tasks x seeds runs of notebooks/experiment.ipynb
      - name: imp                # what branches/transfers call it (default: its kind)
        kind: imp                # any trunk kind (tickets_core.core.kinds): imp | dense | oneshot | standard | ...
        tasks: [rotten_tomatoes, tweet_sentiment]
        seeds: [0, 1, 2]
        levels: 5                # any parameter, overriding defaults
    branches:                    # branch kinds, from a trunk's run folders
      - kinds: [random_prune, random_reinit]   # any branch kind but transfer
        trunk: imp               # a trunk entry's name, or a mapping of parameters
                                 #   describing a trunk run already on disk
        tasks: [rotten_tomatoes] # default: the trunk's tasks
        seeds: [0]               # default: the trunk's seeds
        trunk_seed: 0            # trunk seed to branch from (default: the branch's seed)
        source_levels: [2, 4]    # default: every level of the trunk
    transfers:                   # source task's mask -> target task
      - trunk: imp
        sources: [rotten_tomatoes]   # default: the trunk's tasks
        targets: [tweet_sentiment]
        seeds: [0]
        source_levels: [3]       # or highest_matching: each source's highest matching level
        params_from: source      # or target: train like the target task's own trunk entry
      - mask_path: masks/mlm_level5.safetensors   # or one mask file (no trunk, no sources)
        targets: [rotten_tomatoes]
        seeds: [0]
    analysis:                    # run last, on everything under output_root
      - sparsity_curves
      - notebook: mask_overlap
        sparsity: 0.5

A run's parameters are ``defaults``, then (for branches and transfers) the
trunk entry's own parameters, then the entry's.  Parameter names are the
config's flat names (:data:`tickets_core.core.config.PARAMS`, the experiment
notebook's parameters cell: ``learning_rate``, ``levels``, ``model``, ...;
``train.weight_decay`` spellings work too); the config checks their values
and an error names the line that set the value.  ``task``, ``seed``,
``kind``, ``source_run`` and ``output_root`` are set by the sweep.  Relative
paths are relative to the current directory.  Numbers may be written ``3e-4``
(read as YAML 1.2 does).  A transfer's data are the
target's (a trunk's ``data_dir`` is not inherited).  A transfer whose source
and target are the same task is skipped (that is the IMP run itself).
``params_from: target`` gives a transfer the parameters of its target task's
own trunk entry (of the source trunk's kind) instead, then the entry's.

``source_levels: highest_matching`` (transfers and branches): each source's
highest matching level, as the analysis computes it (the method of the
source run, the dense runs trained like it, ``n_std``).  Such a job waits for
the source task's trunk and dense runs and is resolved right before it runs
(at plan time when they are already done); a source task with no ``dense``
run trained like its trunk, in the sweep or on disk, is an error at the
entry's line; a source with no matching pruned level is reported as skipped
in one line.

``--dry-run`` prints the plan and its cost per entry and in total
(:mod:`.estimate`: fine-tunings, optimizer steps; GPU-hours only at a rate a
GPU measured and the checkout committed).  ``--miniature`` runs the file's
structure at a tiny scale under ``--output-root`` (:mod:`.miniature`;
docs/paper-grid.md).  No run trains what another run trains: a run whose
dense level repeats an IMP trunk's level 0 (same task, seed and settings)
copies it from that run (:mod:`.reuse`, ``dense_level_from``).

What the runner does
--------------------
Every run's folder name is known before it runs (``RunConfig.run_name()``; a
branch names its trunk by run name, so a runs folder can be moved and the
sweep rerun there),
so: runs whose ``status.json`` says ``done`` are skipped (a killed sweep
resumes by running the same command; a half-done run resumes inside
``lottery.driver.run``); each executed notebook is written to ``<run_dir>/notebook.ipynb``
(analysis notebooks to ``<output_root>/_analysis/``); branches and transfers
start when their trunk run has finished and are skipped when it failed;
analysis notebooks start after every run has ended.  Failures do not stop the
sweep; they are listed at the end, one line each, and the exit status is 1.

Executors: ``--workers N`` local processes (``ProcessPoolExecutor``), each
pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` when GPUs exist (``--gpus``
to choose them, ``--workers-per-gpu N`` to let N workers share each GPU);
``--executor dask --scheduler ADDRESS`` to hand the notebooks to an existing
Dask cluster; ``--executor slurm --cluster FILE --jobs N`` to start N SLURM
jobs through dask-jobqueue (FILE: ``SLURMCluster`` arguments, example in
``sweeps/slurm.yaml``).  Put the notebooks, ``output_root`` and the data on a
file system every worker sees.

Reliability: a sweep holds each run folder's ``sweep.lock`` while it runs the
run's notebook, and the run itself its ``run.lock`` while it writes, so two
sweeps on one folder never run a run twice at once (the second waits, saying
who holds it; a lock whose holder died is free).  The first Ctrl-C stops
handing out notebooks, interrupts the running ones, prints the summary and the
command that resumes; a second one quits at once.  Workers and kernels stop
when their sweep dies.
"""

_EXPORTS = {
    "main": "cli", "plan_sweep": "spec", "load_yaml": "yamlfile", "SweepError": "yamlfile", "Job": "planner",
    "Plan": "planner", **{name: "execute" for name in (
        "Engine", "Outcome", "describe_plan", "detect_gpus", "execute_job", "gpu_slots", "one_line_error",
        "process_engine", "process_executor", "report", "run_plan", "select")},
}
__all__ = list(_EXPORTS)
_SUBMODULES = ("checks", "cli", "cluster", "deferred", "estimate", "execute", "miniature", "notebook", "parameters",
               "planner", "reuse", "run", "spec", "worker", "yamlfile")


def __getattr__(name: str):
    """The names above, imported on first use: ``python -m tickets_core.sweep.notebook`` and the notebooks import
    one submodule without the executor's."""
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
