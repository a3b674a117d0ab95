"""The vanishing-gradient lab: gradient-flow probes, synthetic long-range tasks, sweeps and
their plots. Imports training and below; never viz or cli."""

from .gradflow import ProbeConfig, configurations, fit_rate, flow, probe, probe_run
from .longrange import LongRangeNet, RunResult, sweep, train_run
from .papers import PAPERS, paper_markdown, run_paper, write_paper
from .plots import plot_gradflow, plot_longrange, plot_paper
from .tasks import TASKS, Task

__all__ = [
    "PAPERS",
    "TASKS",
    "ProbeConfig",
    "configurations",
    "fit_rate",
    "flow",
    "probe",
    "probe_run",
    "LongRangeNet",
    "RunResult",
    "Task",
    "plot_gradflow",
    "plot_longrange",
    "paper_markdown",
    "plot_paper",
    "run_paper",
    "write_paper",
    "sweep",
    "train_run",
]
