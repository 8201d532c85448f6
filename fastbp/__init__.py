"""fastbp: fast, exact sweeps over tiny neural networks trained with hand-written backprop.

Importing the package is light: the engine (Numba), the results tables (pandas) and the
figures load on first use, so that reading a spec, ``--help`` and ``--dry-run`` start at
once and worker processes never import what they do not need.
"""

import importlib
import sys
import types

from fastbp.config import ConfigError, RunConfig

__version__ = "0.3.0"
__all__ = [
    "ConfigError",
    "Data",
    "Results",
    "RunConfig",
    "RunResult",
    "SpecError",
    "SweepError",
    "__version__",
    "init_params",
    "load_results",
    "run_sweep",
    "train",
]

_LAZY = {
    "Data": "fastbp.data",
    "RunResult": "fastbp.config",
    "train": "fastbp.train",
    "init_params": "fastbp.params",
    "Results": "fastbp.results",
    "load_results": "fastbp.results",
    "run_sweep": "fastbp.sweep",
    "SweepError": "fastbp.sweep",
    "SpecError": "fastbp.spec",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing the submodule fastbp.train binds it to the package's attribute ``train``:
    keep that name for the function (as `from fastbp.train import train` used to)."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__():
    return sorted([*globals(), *_LAZY])
