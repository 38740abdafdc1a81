"""The nine GLUE tasks, from the hub or from a local GLUE folder.

Local layout: the folder the GLUE download script writes (``CoLA/``,
``SST-2/``, ``MRPC/``, ``STS-B/``, ``QQP/``, ``MNLI/``, ``QNLI/``, ``RTE/``,
``WNLI/``), each with ``train.tsv`` and ``dev.tsv`` (MNLI:
``dev_matched.tsv`` and ``dev_mismatched.tsv``).  ``data_dir`` may be the
GLUE root or the task's own folder.  Files are tab-separated without
quoting; every task but CoLA has a header row and columns are found by
name:

==========  ============================================  ================================
task        text columns                                  label column (values)
==========  ============================================  ================================
CoLA        4th column (no header: source, label, *, s)   2nd column (0/1)
SST-2       sentence                                      label (0/1)
MRPC        #1 String, #2 String                          Quality (0/1)
STS-B       sentence1, sentence2                          score (float in [0, 5])
QQP         question1, question2                          is_duplicate (0/1)
MNLI        sentence1, sentence2                          gold_label (entailment/neutral/contradiction)
QNLI        question, sentence                            label (entailment/not_entailment)
RTE         sentence1, sentence2                          label (entailment/not_entailment)
WNLI        sentence1, sentence2                          label (0/1)
==========  ============================================  ================================

Label ids follow the hub's ``nyu-mll/glue`` datasets.  Training uses the
train file, evaluation the dev file (GLUE's test labels are hidden).  MNLI
evaluates on matched dev; mismatched dev is scored too, with metric names
suffixed ``_mm`` (``accuracy_mm``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..core.config import DataConfig
from ..core.fsio import read_text
from .common import DataError, Source, file_fingerprint, hub_dataset
from .sequence import SequenceTask

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueSpec:
    folder: str
    text_cols: tuple              # header names, or column indices when header is False
    label_col: str | int
    raw_labels: tuple | None      # label strings in id order; None = float score
    label_names: tuple | None
    hub_text_cols: tuple
    header: bool = True
    ncols: int | None = None      # headerless files: required column count
    dev_files: tuple = (("eval", "dev.tsv"),)
    hub_eval_splits: tuple = (("eval", "validation"),)
    metric_fn: str = "accuracy"
    main_metric: str = "accuracy"


_NLI2 = ("entailment", "not_entailment")
SPECS: dict[str, GlueSpec] = {
    "cola": GlueSpec("CoLA", (3,), 1, ("0", "1"), ("unacceptable", "acceptable"), ("sentence",), header=False,
                     ncols=4, metric_fn="matthews_correlation", main_metric="matthews_correlation"),
    "sst2": GlueSpec("SST-2", ("sentence",), "label", ("0", "1"), ("negative", "positive"), ("sentence",)),
    "mrpc": GlueSpec("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("not_equivalent", "equivalent"),
                     ("sentence1", "sentence2"), metric_fn="accuracy_and_f1"),
    "stsb": GlueSpec("STS-B", ("sentence1", "sentence2"), "score", None, None, ("sentence1", "sentence2"),
                     metric_fn="pearson_and_spearman", main_metric="pearson"),
    "qqp": GlueSpec("QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), ("not_duplicate", "duplicate"),
                    ("question1", "question2"), metric_fn="accuracy_and_f1"),
    "mnli": GlueSpec("MNLI", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
                     ("entailment", "neutral", "contradiction"), ("premise", "hypothesis"),
                     dev_files=(("eval", "dev_matched.tsv"), ("eval_mm", "dev_mismatched.tsv")),
                     hub_eval_splits=(("eval", "validation_matched"), ("eval_mm", "validation_mismatched"))),
    "qnli": GlueSpec("QNLI", ("question", "sentence"), "label", _NLI2, _NLI2, ("question", "sentence")),
    "rte": GlueSpec("RTE", ("sentence1", "sentence2"), "label", _NLI2, _NLI2, ("sentence1", "sentence2")),
    "wnli": GlueSpec("WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), ("not_entailment", "entailment"),
                     ("sentence1", "sentence2")),
}
# Main metrics follow Chen et al. (2020), Table 1: accuracy for MRPC and QQP, Pearson for STS-B.


def task_dir(name: str, data_dir: str) -> Path:
    """The folder holding ``name``'s TSV files: ``data_dir/<Folder>`` or ``data_dir`` itself."""
    spec = SPECS[name]
    root = Path(data_dir).expanduser()
    for cand in (root / spec.folder, root):
        if (cand / "train.tsv").is_file():
            return cand
    raise DataError(f"{name}: no {spec.folder}/train.tsv under {root} (expected the GLUE folder or its {spec.folder}/ subfolder)")


def read_tsv(path: Path, name: str, spec: GlueSpec) -> dict[str, list]:
    """One GLUE TSV file -> ``{"text_a", ["text_b"], "label"}``, validated."""
    if not path.is_file():
        raise DataError(f"{name}: missing data file {path}")
    text = read_text(path, "utf-8-sig", error=DataError, prefix=f"{name}: ")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = [r for r in rows if r != []]
    if spec.header:
        if not rows:
            raise DataError(f"{name}: {path} is empty")
        header, rows = rows[0], rows[1:]
        missing = [c for c in (*spec.text_cols, spec.label_col) if c not in header]
        if missing:
            raise DataError(f"{name}: {path} lacks column(s) {', '.join(map(repr, missing))} (header: {', '.join(header)})")
        idx_text = [header.index(c) for c in spec.text_cols]
        idx_label = header.index(spec.label_col)
        width = len(header)
    else:
        idx_text, idx_label, width = list(spec.text_cols), spec.label_col, spec.ncols
    if not rows:
        raise DataError(f"{name}: {path} has no data rows")
    text = [[] for _ in idx_text]
    labels = []
    first_line = 2 if spec.header else 1
    for lineno, row in enumerate(rows, start=first_line):
        if len(row) != width:
            raise DataError(f"{name}: {path}:{lineno} has {len(row)} columns, expected {width}")
        for j, i in enumerate(idx_text):
            text[j].append(row[i])
        labels.append(_parse_label(row[idx_label], spec, name, f"{path}:{lineno}"))
    out = {"text_a": text[0], "label": labels}
    if len(text) > 1:
        out["text_b"] = text[1]
    return out


def _parse_label(value: str, spec: GlueSpec, name: str, where: str):
    if spec.raw_labels is None:
        try:
            score = float(value)
        except ValueError:
            raise DataError(f"{name}: {where}: score {value!r} is not a number") from None
        if not 0.0 <= score <= 5.0:
            raise DataError(f"{name}: {where}: score {score} outside [0, 5]")
        return score
    try:
        return spec.raw_labels.index(value.strip())
    except ValueError:
        raise DataError(f"{name}: {where}: label {value!r} not in {{{', '.join(spec.raw_labels)}}}") from None


def glue_source(name: str):
    spec = SPECS[name]

    def make(cfg: DataConfig) -> Source:
        if cfg.data_dir is not None:
            folder = task_dir(name, cfg.data_dir)
            files = [("train", folder / "train.tsv"), *((split, folder / f) for split, f in spec.dev_files)]
            for _, p in files:
                if not p.is_file():
                    raise DataError(f"{name}: missing data file {p}")
            return Source(file_fingerprint(*(p for _, p in files)),
                          lambda: {split: read_tsv(p, name, spec) for split, p in files})
        return Source(f"hub:{HUB_DATASET}/{name}", lambda: _read_hub(name, spec))

    return make


def _read_hub(name: str, spec: GlueSpec) -> dict[str, dict[str, list]]:
    dev = ", ".join(f for _, f in spec.dev_files)
    ds = hub_dataset(name, (HUB_DATASET, name), f"a GLUE folder ({spec.folder}/train.tsv, {dev})")
    out = {}
    for split, hub_split in (("train", "train"), *spec.hub_eval_splits):
        d = ds[hub_split]
        cols = {"text_a": list(d[spec.hub_text_cols[0]]), "label": list(d["label"])}
        if len(spec.hub_text_cols) > 1:
            cols["text_b"] = list(d[spec.hub_text_cols[1]])
        out[split] = cols
    return out


def make_glue_tasks() -> dict[str, SequenceTask]:
    tasks = {}
    for name, spec in SPECS.items():
        tasks[name] = SequenceTask(
            name,
            head="regression" if spec.raw_labels is None else "classification",
            labels=spec.label_names,
            metric_fn=spec.metric_fn,
            main_metric=spec.main_metric,
            read_source=glue_source(name),
            description=f"GLUE {spec.folder} (hub {HUB_DATASET}/{name}, or data_dir with {spec.folder}/*.tsv)",
        )
        suffixes = [split[len("eval_"):] for split, _ in spec.dev_files if split != "eval"]
        tasks[name].metric_names += tuple(f"{m}_{s}" for s in suffixes for m in tasks[name].metric_names)
    return tasks
