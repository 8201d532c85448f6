"""What fastbp's commands share: an argument parser whose mistakes are one line, a quiet
end when the reader of their output goes away (`| head`), and a fast exit."""

import argparse
import atexit
import os
import sys


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line (``error: ...``) and exit 2,
    without the usage block (``--help`` still shows it); every command has --version."""

    def __init__(self, **kwargs):
        from fastbp import __version__

        super().__init__(**kwargs)
        self.add_argument("--version", action="version", version=f"fastbp {__version__}")

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def run(main, argv=None) -> int:
    """``main(argv)``'s exit status; a reader that stops reading (``| head``) ends the
    command quietly, with the status of a process stopped by SIGPIPE, as ``cat`` does."""
    try:
        return main(argv)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the exit's flush must not fail again
        return 141


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, which takes 0.2-0.5 s once Numba,
    pandas and pyarrow are loaded: every result is written, synced and closed by now,
    and worker processes are stopped (:func:`fastbp.backends.open_backend`). The exit
    handlers still run."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
