"""The vanishing-gradient lab: gradient-flow probes, synthetic long-range tasks, sweeps and
their plots. Imports training and below; never viz or cli."""

from .gradflow import ProbeConfig, configurations, fit_rate, flow, probe, probe_run
from .longrange import LongRangeNet, RunResult, sweep, train_run
from .plots import plot_gradflow, plot_longrange
from .tasks import TASKS, Task

__all__ = [
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
    "sweep",
    "train_run",
]
