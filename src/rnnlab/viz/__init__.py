"""Pictures of what a run did and what its cells learned. Imports training and below; never lab
or cli."""

from .curves import BASELINES, plot_curves, plot_wins
from .features import FEATURES, text_features
from .page import MAX_SHOWN, render_page, report, write_page
from .record import QUANTITIES, Analysis, analyze
from .visualization import Visualization, VizOptions, page_for_ids, visualize

__all__ = [
    "BASELINES",
    "FEATURES",
    "MAX_SHOWN",
    "QUANTITIES",
    "Analysis",
    "analyze",
    "page_for_ids",
    "plot_curves",
    "plot_wins",
    "render_page",
    "report",
    "text_features",
    "visualize",
    "Visualization",
    "VizOptions",
    "write_page",
]
