"""The engine: the compiled training kernels, and nothing but them.

Read it in this order: :mod:`~fastbp.engine.step` defines the training step once, as
rules that write code (activations, losses, updates, the order of every sum);
:mod:`~fastbp.engine.codegen` writes a kernel per architecture from them, and
:mod:`~fastbp.engine.kernels` the loop kernel, one for every architecture;
:mod:`~fastbp.engine.intrinsics` holds the LLVM operations the kernels use that Numba
lacks; :mod:`~fastbp.engine.kernel_cache` sets Numba up and keeps the kernels on disk.
:mod:`fastbp.train` is the engine's door: the rest of fastbp goes through it.

Importing the package applies fastbp's Numba settings (:mod:`~fastbp.engine.kernel_cache`)
before any kernel module can make Numba read them.
"""

from fastbp.engine import kernel_cache  # noqa: F401 - first: before Numba reads its settings
