"""fastbp: fast, exact sweeps over tiny neural networks trained with hand-written backprop."""

from fastbp.config import ConfigError, RunConfig
from fastbp.params import init_params
from fastbp.results import Results, load_results
from fastbp.train import RunResult, train

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "Results",
    "RunConfig",
    "RunResult",
    "__version__",
    "init_params",
    "load_results",
    "train",
]
