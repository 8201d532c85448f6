"""``python -m fastbp.plot DIR [--out PLOTDIR] [--format png|svg|pdf]``: draw a sweep's figures."""

import sys
from pathlib import Path

from fastbp.cli import Parser


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m fastbp.plot", description="Draw the comparison figures of a sweep."
    )
    parser.add_argument("dir", help="a sweep's output directory, e.g. results/lr_grid")
    parser.add_argument("--out", help="where to write the figures (default: DIR/plots)")
    parser.add_argument("--format", choices=("png", "svg", "pdf"), default="png")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    missing = [
        n for n in ("runs", "curves", "params") if not (directory / f"{n}.parquet").is_file()
    ]
    if missing:
        print(
            f"error: {directory}: not a sweep's results ({missing[0]}.parquet is missing)",
            file=sys.stderr,
        )
        return 2
    return draw(directory, Path(args.out) if args.out else None, args.format)


def draw(directory: Path, out: Path | None = None, fmt: str = "png") -> int:
    """Write every figure of a sweep directory; print what was written and skipped."""
    import matplotlib

    matplotlib.use("Agg")  # headless: figures go to files
    from fastbp.plots import write_figures
    from fastbp.results import load_results

    out = out or directory / "plots"
    written = write_figures(load_results(directory), out, fmt, note=print)
    print(f"{len(written)} figure(s) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
