"""Head types: which ``transformers`` class a task's model is built with, and which batch keys are targets.

One entry per head.  What a head means for the data (how targets are
collated, how predictions are scored) belongs to the task classes in
:mod:`tickets_core.tasks`, which name their head here.  A new head is one
entry below plus a task class that collates and scores it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.registry import Registry


@dataclass(frozen=True)
class Head:
    name: str
    auto_class: str              # the transformers Auto class that builds the model
    problem_type: str | None     # config.problem_type for sequence classification heads
    targets: tuple[str, ...]     # batch keys that carry targets (never fed to the model when evaluating)


HEADS: Registry[Head] = Registry("head type")
for _head in (
    Head("classification", "AutoModelForSequenceClassification", "single_label_classification", ("labels",)),
    Head("regression", "AutoModelForSequenceClassification", "regression", ("labels",)),
    Head("qa", "AutoModelForQuestionAnswering", None, ("start_positions", "end_positions")),
    Head("mlm", "AutoModelForMaskedLM", None, ("labels",)),
    Head("base", "AutoModel", None, ()),
):
    HEADS.register(_head.name, _head)

get_head = HEADS.lookup
