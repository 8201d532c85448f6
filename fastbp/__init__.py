"""fastbp: fast, exact sweeps over tiny neural networks trained with hand-written backprop."""

from fastbp.config import ConfigError, RunConfig
from fastbp.params import init_params
from fastbp.train import RunResult, train

__version__ = "0.1.0"
__all__ = ["ConfigError", "RunConfig", "RunResult", "init_params", "train", "__version__"]
