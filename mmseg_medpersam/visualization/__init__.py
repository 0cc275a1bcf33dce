"""Figures: per-target panels, method-by-target grids, per-image Dice plots; the palette
mmseg's visualizer draws with."""
from ..utils.palette import drawing_palette
from .panels import dice_plot, distance_plot, method_grid, target_panel

__all__ = ['target_panel', 'method_grid', 'dice_plot', 'distance_plot', 'drawing_palette']
