"""What fastbp's commands share: an argument parser whose mistakes are one line."""

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line (``error: ...``) and exit 2,
    without the usage block (``--help`` still shows it)."""

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
