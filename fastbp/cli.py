"""What fastbp's commands share: an argument parser whose mistakes are one line."""

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line (``error: ...``) and exit 2,
    without the usage block (``--help`` still shows it)."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
