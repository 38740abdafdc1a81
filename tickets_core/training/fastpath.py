"""The GPU fast path of the training loop (``TrainConfig.fast_path``).

On a GPU the plain loop is launch-bound: each bert-base step issues ~1,000
kernels, ~430 of them autocast weight casts and 146 per-matrix
``masked_fill_``, and dynamic padding makes ~100 distinct batch shapes.  The
pieces here cut that down with what PyTorch itself offers; ``train.fine_tune``
strings them together:

* :func:`pad_batch`: pad a batch's width up to a multiple of N (16 by
  default), so that few shapes recur (CUDA graphs, compiled kernels and
  cuBLAS heuristics are per shape).  Padded positions carry attention mask 0
  (and label -100 for MLM), so the loss is that of the unpadded batch up to
  float rounding; QA is left alone (its span loss runs over every position).
* :class:`MasterWeights`: under bf16 autocast, the model's ``nn.Linear``
  weights and biases are swapped for bf16 copies for the duration of the
  fine-tuning while the optimizer keeps updating the original fp32
  parameters (master weights).  Autocast would cast exactly these fp32
  tensors to bf16 (round to nearest) in every forward and cast their bf16
  gradients back to fp32; here one multi-tensor copy does each direction
  per step, and the numbers are the same (``tests/test_fastpath.py`` checks
  bit-identical losses and weights against the autocast path on the CPU).
* multi-tensor masking: ``BoundMask.apply_/mask_grads_(multi_tensor=True)``
  (in :mod:`tickets_core.pruning.masks`).
* :class:`~tickets_core.training.prefetch.Prefetcher`: batches collated
  (and pinned, on CUDA) on a background thread, ``depth`` batches ahead; same
  batches, same order.
* :func:`compile_model`: ``torch.compile(module, dynamic=True)`` in a
  ``TrainConfig.compile`` mode ('reduce-overhead': Inductor kernels replayed
  as CUDA graphs, one graph per recurring shape); the module is the one the
  task's loss runs (``Task.compile_target``: the model, or the MLM encoder).
  :class:`Steps` runs each step's forward and backward compiled, and eagerly
  from the first step on which compiling or graph capture fails; its
  :meth:`Steps.record` (the plan, whether every step ran compiled, the
  Dynamo/Inductor counters) goes into each level's ``metrics.json``.

:func:`make_plan` decides which pieces run: with the fast path on CUDA all of
them except ``torch.compile``, which stays opt-in (:data:`AUTO_COMPILE`) until
a committed GPU measurement (``benchmarks/gpu_check.sh``) shows it correct and
faster; none on the CPU unless asked for (measured on a 2-core CPU: none of
them paid there; see benchmarks/README.md).  CUDA-only code is limited to
pinning, the CUDA-graph step marker, its counter and the defaults; everything
else runs (and is tested) on the CPU.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass

import torch
from torch import nn

DEFAULT_PAD_MULTIPLE = 16
DEFAULT_PREFETCH = 2
# What `compile: auto` turns on with the fast path on CUDA: nothing (eager) until a committed GPU measurement
# (benchmarks/gpu_check.sh, benchmarks/results/gpu_check/) shows a compiled mode correct and faster on the
# pinned torch; only such a measurement may set it (e.g. to 'reduce-overhead').
AUTO_COMPILE: str | None = None
# ... and then only for levels this long: compiling bert-base took ~116 s cold on an H200 (issue 11), paid
# per process (a sweep runs one process per run), so short levels would not pay it back. An estimate.
COMPILE_MIN_STEPS = 500
INDUCTOR_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
DEBUG_BACKENDS = ("aot_eager", "eager")
# Batch keys padded along the sequence dimension, with their fill value (None: the tokenizer's pad id).
PAD_FILL = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "labels": -100}


@dataclass(frozen=True)
class Plan:
    """Which fast-path pieces a fine-tuning uses (see :func:`make_plan`)."""

    on: bool = False
    pad_multiple: int = 1
    multi_tensor_masks: bool = False
    master_weights: bool = False
    compile: str | None = None  # a TrainConfig.compile mode, or None
    prefetch: int = 0
    pin_memory: bool = False

    @property
    def cudagraphs(self) -> bool:
        return self.compile in CUDAGRAPH_MODES

    @property
    def merge_single_row(self) -> bool:
        """Compiled: a one-row last batch joins the batch before it (a one-row batch forces a recompile)."""
        return self.compile is not None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("on", "pad_multiple", "multi_tensor_masks", "master_weights",
                                              "compile", "prefetch", "pin_memory")}

    def describe(self) -> str:
        parts = [f"pad x{self.pad_multiple}" if self.pad_multiple > 1 else "no extra padding",
                 "multi-tensor masks" if self.multi_tensor_masks else "per-matrix masks",
                 "bf16 master weights" if self.master_weights else "no master weights",
                 f"compile={self.compile}" if self.compile else "eager",
                 f"prefetch {self.prefetch}" + (" pinned" if self.pin_memory else "")]
        return ("fast path: " if self.on else "plain loop: ") + ", ".join(parts)


def make_plan(cfg, device: torch.device, *, total_steps: int, head: str, bf16: bool) -> Plan:
    """The pieces ``fine_tune`` uses for ``cfg`` (a TrainConfig) on ``device``.

    ``fast_path='auto'`` is on for CUDA and off elsewhere; ``compile='auto'``
    is :data:`AUTO_COMPILE` (None: eager) with the fast path on CUDA; explicit
    ``pad_to_multiple_of`` / ``compile`` / ``master_weights`` /
    ``prefetch_batches`` values apply whatever ``fast_path`` says.
    """
    cuda = device.type == "cuda"
    on = cfg.fast_path == "on" or (cfg.fast_path == "auto" and cuda)
    pad = cfg.pad_to_multiple_of if cfg.pad_to_multiple_of is not None else (DEFAULT_PAD_MULTIPLE if on else 1)
    if head == "qa":
        pad = 1  # the span loss covers padded positions: extra padding would change it
    master = bf16 and (cfg.master_weights == "on" or (cfg.master_weights == "auto" and on))
    if cfg.compile == "auto":
        mode = AUTO_COMPILE if (on and cuda and total_steps >= COMPILE_MIN_STEPS) else None
    else:
        mode = None if cfg.compile == "off" else cfg.compile
    if mode in CUDAGRAPH_MODES and not cuda:
        mode = "default"  # CUDA graphs need CUDA; Inductor alone still runs
    prefetch = cfg.prefetch_batches if cfg.prefetch_batches is not None else (DEFAULT_PREFETCH if on and cuda else 0)
    return Plan(on=on, pad_multiple=pad, multi_tensor_masks=on, master_weights=master, compile=mode,
                prefetch=prefetch, pin_memory=cuda and on)


# ---------------------------------------------------------------------------
# Length bucketing
# ---------------------------------------------------------------------------


def padded_width(width: int, multiple: int, cap: int | None = None) -> int:
    """``width`` rounded up to a multiple of ``multiple``, but not beyond ``cap`` (unless width already is)."""
    target = -(-width // multiple) * multiple
    if cap is not None:
        target = min(target, max(cap, width))
    return target


def pad_batch(batch: dict, multiple: int, pad_id: int, cap: int | None = None) -> dict:
    """Pad every sequence-shaped tensor of ``batch`` on the right to :func:`padded_width`.

    ``input_ids`` get ``pad_id``, ``attention_mask``/``token_type_ids`` 0,
    2-D ``labels`` (MLM) -100; 1-D tensors (class labels, QA positions) are
    unchanged.  An unknown sequence-shaped key is an error rather than a
    guess.
    """
    width = batch["input_ids"].shape[1]
    target = padded_width(width, multiple, cap)
    if target == width:
        return batch
    out = {}
    for k, v in batch.items():
        if v.dim() >= 2 and v.shape[1] == width:
            if k not in PAD_FILL:
                raise ValueError(f"pad_batch does not know how to pad batch key {k!r}")
            fill = pad_id if PAD_FILL[k] is None else PAD_FILL[k]
            v = torch.nn.functional.pad(v, (0, target - width), value=fill)
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# bf16 compute weights with fp32 master weights
# ---------------------------------------------------------------------------

# model -> {slot name: bf16 Parameter}: the same compute tensors are reused by every level of a
# run, so compiled graphs and recorded CUDA graphs (static parameter addresses) stay valid.
_COMPUTE_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Parameter]]" = weakref.WeakKeyDictionary()


class MasterWeights:
    """Swap ``model``'s fp32 ``nn.Linear`` parameters for bf16 compute copies until :meth:`close`.

    The original fp32 parameters stay what the optimizer, the clipping and a
    ``BoundMask`` hold (the master weights); the model's modules point to
    bf16 copies.  Per step: :meth:`grads_to_master` after backward,
    :meth:`to_compute` after the optimizer step (and masking).  Only
    parameters held by ``nn.Linear`` modules alone are swapped: a weight
    shared with another module (an MLM decoder tied to the word embeddings)
    stays fp32, as do embeddings and LayerNorm parameters, which autocast
    does not cast either.  Inside :meth:`exposed` the model holds its fp32
    parameters again (for callbacks and evaluation).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        slots: dict[int, list[tuple[nn.Module, str, str]]] = {}
        linear_only: dict[int, bool] = {}
        objs: dict[int, nn.Parameter] = {}
        for mod_name, mod in model.named_modules(remove_duplicate=False):
            for name, p in mod._parameters.items():
                if p is None:
                    continue
                slots.setdefault(id(p), []).append((mod, name, f"{mod_name}.{name}"))
                linear_only[id(p)] = linear_only.get(id(p), True) and isinstance(mod, nn.Linear)
                objs[id(p)] = p
        cache = _COMPUTE_CACHE.setdefault(model, {})
        self._pairs: list[tuple[nn.Parameter, nn.Parameter, list]] = []
        for pid, p in objs.items():
            if not (linear_only[pid] and p.requires_grad and p.dtype == torch.float32):
                continue
            key = slots[pid][0][2]
            c = cache.get(key)
            if c is None or c.shape != p.shape or c.device != p.device or c.dtype != dtype:
                c = nn.Parameter(torch.empty(p.shape, dtype=dtype, device=p.device))
                cache[key] = c
            self._pairs.append((p, c, [(m, n) for m, n, _ in slots[pid]]))
        self.masters = [p for p, _, _ in self._pairs]
        self.computes = [c for _, c, _ in self._pairs]
        self.to_compute()
        self._install(compute=True)

    def __len__(self) -> int:
        return len(self._pairs)

    def _install(self, compute: bool) -> None:
        for p, c, where in self._pairs:
            for mod, name in where:
                mod._parameters[name] = c if compute else p

    @torch.no_grad()
    def to_compute(self) -> None:
        """Copy the fp32 master weights into the bf16 compute weights (round to nearest, like autocast)."""
        if self._pairs:
            torch._foreach_copy_(self.computes, self.masters)

    @torch.no_grad()
    def grads_to_master(self) -> None:
        """The compute weights' bf16 gradients, as fp32, become the master weights' gradients.

        A compute weight without a gradient leaves its master without one, so
        the optimizer skips it as it would skip the parameter itself.
        """
        dst, src = [], []
        for p, c, _ in self._pairs:
            if c.grad is None:
                p.grad = None
                continue
            if p.grad is None:
                p.grad = torch.empty_like(p)
            dst.append(p.grad)
            src.append(c.grad)
        if dst:
            torch._foreach_copy_(dst, src)

    @contextlib.contextmanager
    def exposed(self):
        """The model holds its fp32 (master) parameters inside this block."""
        self._install(compute=False)
        try:
            yield
        finally:
            self._install(compute=True)

    def close(self) -> None:
        """Put the fp32 parameters back for good and drop every gradient this class created."""
        self._install(compute=False)
        for p, c, _ in self._pairs:
            p.grad = None
            c.grad = None


def compute_copies(model: nn.Module) -> dict[str, nn.Parameter]:
    """The bf16 compute copies :class:`MasterWeights` made for ``model``, by parameter name ({}: none yet)."""
    return dict(_COMPUTE_CACHE.get(model, {}))


def exposed(masters: MasterWeights | None):
    """``masters.exposed()``, or a no-op context without master weights."""
    return masters.exposed() if masters is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """``torch.compile(model, dynamic=True)`` in Inductor ``mode``, or with a debug backend.

    ``dynamic=True``: one compiled graph for every batch width and batch size
    of 2 or more (a one-row batch is specialized: see
    :attr:`Plan.merge_single_row`); 'reduce-overhead' still records one CUDA
    graph per distinct shape, which bucketing keeps to a handful.  The
    returned module shares parameters with ``model``; evaluation keeps using
    ``model``.
    """
    if mode in DEBUG_BACKENDS:
        return torch.compile(model, backend=mode, dynamic=True)
    if mode not in INDUCTOR_MODES:
        raise ValueError(f"unknown compile mode {mode!r}")
    return torch.compile(model, dynamic=True, **({} if mode == "default" else {"mode": mode}))


def mark_step() -> None:
    """Tell CUDA-graph trees that a new training iteration starts (outputs of the last one are consumed)."""
    torch.compiler.cudagraph_mark_step_begin()


def distinct_sizes():
    """While compiled code traces, sizes equal by chance stay distinct symbols (no "duck sizing").

    By default Dynamo gives dimensions of equal size one symbol: a first batch of 32 rows padded to 32
    tokens compiles a graph guarded on ``rows == width``, and the next width recompiles it.  The switch
    (``torch.fx.experimental._config.use_duck_shape``) is read when a compilation starts.
    """
    from torch.fx.experimental import _config

    return _config.patch(use_duck_shape=False) if hasattr(_config, "use_duck_shape") else contextlib.nullcontext()


# compile target -> the first line of the error its compiled step failed with in this process: later levels
# of the run train it eagerly at once instead of paying for another compile that fails.
_BROKEN: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()
# compile targets whose first compiled step (the warm-up: compiling, first CUDA graphs) is done in this process.
_WARM: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


class CompileCounters:
    """Dynamo graphs, CUDA graphs recorded and CUDA-graph skips since construction (torch's own counters).

    ``torch._dynamo.utils.counters["stats"]["unique_graphs"]`` counts every
    graph Dynamo compiles (a recompile adds one);
    ``counters["inductor"]["cudagraph_skips"]`` every compiled graph Inductor
    runs without CUDA graphs; CUDA graph recordings are counted through
    Dynamo's compilation callbacks (``CallbackTrigger.CUDAGRAPH_RECORDING``).
    """

    def __init__(self, cudagraphs: bool) -> None:
        from torch._dynamo.utils import counters

        self._counters = counters
        self.graphs0 = self.graphs()
        self.skips0 = counters["inductor"]["cudagraph_skips"]
        self.recorded = 0 if cudagraphs else None
        self._hook = None
        trigger = getattr(getattr(torch._dynamo, "callback", None), "CallbackTrigger", None)
        trigger = getattr(trigger, "CUDAGRAPH_RECORDING", None)
        if cudagraphs and trigger is not None:
            def count(*args) -> None:  # never raises: it runs inside torch's own compile and capture
                if args and getattr(args[0], "callback_trigger", None) == trigger:
                    self.recorded += 1
            self._hook = torch._dynamo.callback_handler.register_start_callback(count)

    def graphs(self) -> int:
        return self._counters["stats"]["unique_graphs"]

    def skips(self) -> int:
        return self._counters["inductor"]["cudagraph_skips"] - self.skips0

    def close(self) -> None:
        if self._hook is not None:
            torch._dynamo.callback_handler.remove_start_callback(self._hook)
            self._hook = None


class Steps:
    """Each training step's forward and backward (``task.loss``): compiled while that works, eagerly after.

    With ``plan.compile`` the task's :meth:`compile_target` is compiled once
    (:func:`compile_model`).  If compiling, running or capturing a CUDA graph
    fails on any step, that step's partial gradients are dropped, the same
    batch runs eagerly (the optimizer has not stepped on it), a one-line
    ``RuntimeWarning`` says so, and the rest of the fine-tuning (and every
    later one of this model in this process) trains eagerly.  Call
    :meth:`close` when the loop ends; :meth:`record` says what happened.
    """

    def __init__(self, task, model: nn.Module, plan: Plan, device: torch.device | None = None) -> None:
        self.task, self.model, self.plan = task, model, plan
        self.device = str(device) if device is not None else None
        self.fn = None
        self.fell_back_at: int | None = None
        self.error: str | None = None
        self.counters = CompileCounters(plan.cudagraphs) if plan.compile else None
        self.warm_graphs: int | None = None  # Dynamo graphs compiled up to the end of the warm-up step
        if plan.compile:
            self.target = task.compile_target(model)
            if self.target in _BROKEN:
                self.fell_back_at, self.error = 1, f"failed earlier in this process: {_BROKEN[self.target]}"
                warnings.warn(f"torch.compile(mode={plan.compile!r}) {self.error}; training eagerly",
                              RuntimeWarning, stacklevel=3)
            else:
                self.fn = compile_model(self.target, plan.compile)
                if self.target in _WARM:
                    self.warm_graphs = self.counters.graphs0

    def __call__(self, batch: dict, autocast, step: int) -> torch.Tensor:
        """The loss of ``batch`` after its backward pass; ``step``: the 1-based number of the step it makes."""
        if self.fn is not None:
            try:
                loss = self._run(self.fn, batch, autocast)
            except Exception as e:  # any compiler, runtime or capture failure: carry on eagerly
                self._fall_back(step, e)
            else:
                if self.warm_graphs is None:
                    self.warm_graphs = self.counters.graphs()
                    _WARM.add(self.target)
                return loss
        return self._run(None, batch, autocast)

    def _run(self, compiled, batch: dict, autocast) -> torch.Tensor:
        if compiled is not None and self.plan.cudagraphs:
            mark_step()
        with autocast, (distinct_sizes() if compiled is not None else contextlib.nullcontext()):
            loss = self.task.loss(self.model, batch, compiled=compiled)
        loss.backward()
        return loss

    def _fall_back(self, step: int, error: Exception) -> None:
        from ..core.errors import first_line

        self.fn, self.fell_back_at = None, step
        self.error = f"{type(error).__name__}: {first_line(error)}"
        _BROKEN[self.target] = self.error
        warnings.warn(f"torch.compile(mode={self.plan.compile!r}) failed at step {step} ({self.error}); "
                      "training eagerly from this step on", RuntimeWarning, stacklevel=3)
        self.model.zero_grad(set_to_none=True)  # whatever the failed backward left

    def close(self) -> None:
        if self.counters is not None:
            self.counters.close()

    def record(self) -> dict:
        """What a level's ``metrics.json`` keeps of its fast path (``fast_path``).

        ``plan``: the resolved :class:`Plan`; ``compiled``: every step ran the
        compiled code; ``fell_back_at_step``: the first step that ran eagerly
        after a failure (None: none failed); ``graphs``: Dynamo graphs
        compiled during this fine-tuning; ``recompiles``: those compiled after
        the compile target's warm-up step (its first compiled step in this
        process); ``cudagraphs``: CUDA graphs recorded; ``cudagraph_skips``:
        compiled graphs Inductor ran without CUDA graphs.  Counters are None
        without compiling (``cudagraphs`` also without a CUDA-graph mode).
        """
        c = self.counters
        out = {"plan": self.plan.as_dict(), "describe": self.plan.describe(), "torch": torch.__version__,
               "device": self.device, "compiled": self.plan.compile is not None and self.fell_back_at is None,
               "fell_back_at_step": self.fell_back_at, "error": self.error,
               "graphs": None, "recompiles": None, "cudagraphs": None, "cudagraph_skips": None}
        if c is not None:
            now = c.graphs()
            out.update(graphs=now - c.graphs0, recompiles=now - (self.warm_graphs if self.warm_graphs is not None
                                                                 else now),
                       cudagraphs=c.recorded, cudagraph_skips=c.skips() if self.plan.cudagraphs else None)
        return out
