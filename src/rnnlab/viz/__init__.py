"""Pictures of what a run did and what its cells learned. Imports training and below; never lab
or cli."""

from .curves import BASELINES, plot_curves, plot_wins

__all__ = ["BASELINES", "plot_curves", "plot_wins"]
