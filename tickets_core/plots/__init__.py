"""Figures (matplotlib/seaborn) from the analysis tables; torch-free.

``from tickets_core import plots`` gives every figure function: the paper figures of :mod:`.figures` (sparsity
curves, transfer and overlap heat maps, layer profiles), the training-dynamics figures of :mod:`.dynamics`
(stability barriers and paths, early-bird), the structured tickets' figures of :mod:`.units` and the style of :mod:`.style` (``set_style``, ``save_figure``).
"""

from .dynamics import barrier_plot, early_bird_plot, interpolation_plot, mask_distance_plot
from .figures import layer_profile_heatmaps, overlap_heatmaps, sparsity_curves, transfer_heatmaps
from .units import head_heatmaps, neurons_per_layer, overlap_bars
from ..analysis.report import seeds_text
from .style import MIN_FONT_PT, WIDTHS, figure_width, method_styles, save_figure, set_style

__all__ = ["barrier_plot", "early_bird_plot", "interpolation_plot", "mask_distance_plot", "layer_profile_heatmaps",
           "overlap_heatmaps", "sparsity_curves", "transfer_heatmaps", "head_heatmaps", "neurons_per_layer",
           "overlap_bars", "MIN_FONT_PT", "WIDTHS", "figure_width",
           "method_styles", "save_figure", "seeds_text", "set_style"]
