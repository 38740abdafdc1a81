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

from ..core.registry import Registry
from .common import DataError, Task, TaskData, UnknownTaskError
from .glue import make_glue_tasks
from .mlm import make_mlm_tasks
from .offline import make_offline_tasks
from .squad import SquadTask

TASKS: Registry[Task] = Registry("task", param="task", error=UnknownTaskError)
for _name, _task in {**make_glue_tasks(), "squad": SquadTask(), **make_mlm_tasks(), **make_offline_tasks()}.items():
    TASKS.register(_name, _task)

#: The registered task ``name``; an unknown name is a one-line :class:`UnknownTaskError` naming the closest one.
get_task = TASKS.lookup


__all__ = ["TASKS", "get_task", "Task", "TaskData", "DataError", "UnknownTaskError"]
