"""The pruning strategies a config may name: one entry per strategy, torch-free.

An entry says what a strategy *is* (its one-line help, whether its masks are
random rather than read off the weights, the one sparsity it can reach when
it has one); what it *computes* is the function registered under the same
name in :mod:`tickets_core.pruning.strategies` (a test checks every entry has
one).  The config checks a strategy name and its schedule against this table
when it is built, so a sweep refuses a bad strategy before any run starts,
without importing torch.  Adding a strategy is one :func:`register` call here
plus one function there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry


@dataclass(frozen=True)
class StrategySpec:
    name: str
    help: str                      # one phrase for PruneConfig.strategy's help text
    random: bool = False           # masks drawn at random: no next mask can be read off the weights (early-bird)
    sparsity: float | None = None  # the only sparsity it reaches (2:4: 0.5), None for any
    structured: bool = False       # prunes whole attention heads and FFN neurons (pruning/units.py)
    needs_data: bool = False       # scores units with gradients on training batches (prune.importance_batches)


STRATEGY_SPECS: Registry[StrategySpec] = Registry("pruning strategy", param="strategy")


def register(spec: StrategySpec) -> StrategySpec:
    return STRATEGY_SPECS.register(spec.name, spec)


register(StrategySpec("magnitude_global", "rank |w| across all prunable matrices"))
register(StrategySpec("magnitude_layerwise", "rank |w| within each matrix"))
register(StrategySpec("random_global", "remove uniformly at random across all matrices", random=True))
register(StrategySpec("random_layerwise", "random, with given per-matrix sparsities", random=True))
register(StrategySpec("magnitude_2to4", "2 of every 4 consecutive weights of each row: 50%, the pattern of "
                                        "semi-structured sparse kernels", sparsity=0.5))
register(StrategySpec("structured_magnitude", "whole attention heads and FFN neurons with the smallest weight "
                                              "norm, heads and neurons each ranked across layers: level sparsity s "
                                              "removes a fraction s of the heads and of the neurons",
                      structured=True))
register(StrategySpec("structured_importance", "as structured_magnitude, ranked by Michel et al.'s importance "
                                               "(|d loss / d gate| over prune.importance_batches training batches)",
                      structured=True, needs_data=True))
register(StrategySpec("structured_random", "as structured_magnitude, units drawn at random", random=True,
                      structured=True))


def strategies_help() -> str:
    """The strategies and their help, for the ``strategy`` parameter's help text."""
    return "; ".join(f"'{s.name}' ({s.help})" for s in STRATEGY_SPECS.values())
