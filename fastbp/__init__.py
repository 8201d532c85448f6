"""fastbp: fast, exact sweeps over tiny neural networks trained with hand-written backprop."""

from fastbp import numba_settings  # noqa: F401 - first: before Numba compiles anything
from fastbp.config import ConfigError, RunConfig
from fastbp.params import init_params
from fastbp.train import RunResult, train

__version__ = "0.3.0"
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


def __getattr__(name):
    # The results tables need pandas, which worker processes never import: load it on use.
    if name in ("Results", "load_results"):
        from fastbp import results

        return getattr(results, name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")
