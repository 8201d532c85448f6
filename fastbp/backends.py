"""Where a sweep's tasks run: threads of this process (``threads``, the default: the
kernels release the GIL, and a thread starts in no time where a process takes about a
second to import NumPy, Numba and load its kernels), joblib's loky processes on this
machine (``loky``), in this process one after the other (``sequential``, for
debugging), or on a Dask ``distributed`` cluster (``dask``), through joblib's Dask
backend.

Only orchestration: what runs is :func:`fastbp.sweep.train_shard` whichever the backend,
so the results are the same bits.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 10


class BackendError(Exception):
    """The backend cannot be used as asked; the message says why, in one line."""


@dataclass
class Backend:
    name: str
    n_jobs: int  # workers: threads, processes, or the cluster's
    client: object = None  # a distributed.Client for "dask"

    @property
    def in_process(self) -> bool:
        """Whether the workers are threads of this process (sharing its kernels)."""
        return self.name in ("threads", "sequential")

    def parallel(self):
        """A joblib Parallel that yields each task's result as soon as it is done."""
        from joblib import Parallel

        if self.name == "sequential":
            return Parallel(n_jobs=1, backend="sequential", return_as="generator_unordered")
        if self.name == "threads":
            return Parallel(
                n_jobs=self.n_jobs, backend="threading", return_as="generator_unordered"
            )
        if self.name == "dask":
            from joblib import parallel_config

            with parallel_config(backend="dask"):  # registers joblib's Dask backend
                return Parallel(n_jobs=-1, return_as="generator_unordered")
        return Parallel(
            n_jobs=self.n_jobs,
            backend="loky",
            return_as="generator_unordered",
            max_nbytes=None,  # tasks are small: no memory-mapped temporary folder
        )

    def on_each_worker(self, fn, *args) -> None:
        """Run fn(*args) on every worker process, one worker after the other (so that
        workers sharing a disk never compile into an empty Numba cache at once)."""
        if self.client is None:
            return  # threads share this process's kernels; loky's workers start after
            # this process compiled them, and load them from the cache
        for address in self.client.scheduler_info()["workers"]:
            self.client.run(fn, *args, workers=[address])


@contextlib.contextmanager
def open_backend(name: str, n_jobs: int, scheduler: str | None = None, keep_workers=False):
    """Yield a :class:`Backend`. What it started is stopped on the way out: a LocalCluster,
    and loky's worker processes unless ``keep_workers`` (joblib keeps them for the next
    sweep of a notebook; the command exits at once after a sweep, :func:`fastbp.cli.exit_now`,
    so it stops them here)."""
    if name == "loky" and not keep_workers:
        from joblib.externals.loky import get_reusable_executor

        try:
            yield Backend(name, n_jobs)
        finally:
            get_reusable_executor().shutdown(wait=True)
        return
    if name != "dask":
        yield Backend(name, 1 if name == "sequential" else n_jobs)
        return
    try:
        import distributed  # noqa: F401 - the optional dependency
    except ImportError:
        raise BackendError(
            "the dask backend needs the 'distributed' package: pip install 'fastbp[dask]'"
        ) from None
    from distributed import Client, LocalCluster

    # Dask logs lost connections and dead workers with tracebacks; the sweep reports what
    # they mean for its runs in one line, so keep its own logs to the fatal.
    # (distributed sets levels on sub-loggers such as tornado.application: set them all.)
    for name in ["distributed", "tornado", "asyncio", *logging.root.manager.loggerDict]:
        if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as err:
                raise BackendError(
                    f"cannot reach the Dask scheduler at {scheduler}: {err}".strip()
                ) from None
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n_jobs,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            )
            client = Client(cluster)
        stack.callback(_close_quietly, client)
        workers = sum(client.nthreads().values())
        if workers == 0:
            raise BackendError(f"the Dask scheduler at {scheduler} has no workers")
        yield Backend("dask", workers, client)


def _close_quietly(client) -> None:
    with contextlib.suppress(Exception):  # the scheduler may be gone already
        client.close(timeout=5)
