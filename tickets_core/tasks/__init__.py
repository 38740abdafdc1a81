"""Task registry: every task's data loading, preprocessing and metrics.

>>> task = get_task("rotten_tomatoes")
>>> task.head, task.num_labels, task.main_metric
('classification', 2, 'accuracy')
>>> data = task.load(DataConfig(task="rotten_tomatoes"), tokenizer)   # doctest: +SKIP

Tasks: the nine GLUE tasks (``cola sst2 mrpc stsb qqp mnli qnli rte wnli``),
``squad`` (v1.1), ``mlm`` (masked LM on wikitext-103 or a plain-text folder),
and the offline tasks on installed packages (``rotten_tomatoes``, ``imdb``,
``tweet_sentiment``, ``ptb_mlm``).  See each module's docstring for its
sources, local file layout and splits.
"""

from __future__ import annotations

from .common import DataError, Task, TaskData, UnknownTaskError
from .glue import make_glue_tasks
from .mlm import make_mlm_tasks
from .offline import make_offline_tasks
from .squad import SquadTask

TASKS: dict[str, Task] = {**make_glue_tasks(), "squad": SquadTask(), **make_mlm_tasks(), **make_offline_tasks()}


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name raises a one-line :class:`UnknownTaskError`."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}", param="task") from None


__all__ = ["TASKS", "get_task", "Task", "TaskData", "DataError", "UnknownTaskError"]
