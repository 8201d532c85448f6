"""``python -m fastbp.plot DIR [--out PLOTDIR] [--format png|svg|pdf]``: draw a sweep's
figures and its report.html."""

import sys
import tempfile
from pathlib import Path

from fastbp import cli
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
    out = directory / "plots" if args.out is None else Path(args.out)
    problem = None
    if args.out is not None and (not args.out.strip() or out.exists() and not out.is_dir()):
        problem = "must be a directory"
    else:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file in its path, no permission
            problem = f"cannot be created: {err.strerror or err}"
    if problem:
        print(f"error: --out {args.out!r}: {problem}", file=sys.stderr)
        return 2
    return draw(directory, out, args.format)


def draw(directory: Path, out: Path | None = None, fmt: str = "png") -> int:
    """Write every figure of a sweep directory and its report.html; print what was
    written and what was skipped."""
    import matplotlib

    matplotlib.use("Agg")  # headless: figures go to files
    from fastbp.plots import write_figures
    from fastbp.report import write_report
    from fastbp.results import load_results

    out = out or directory / "plots"
    results = load_results(directory)
    skipped = []

    def note(line):
        print(line)
        skipped.append(line)

    written = write_figures(results, out, fmt, note=note)
    if fmt == "pdf":  # a page cannot show PDF: the report gets PNG copies
        with tempfile.TemporaryDirectory() as tmp:
            pngs = write_figures(results, Path(tmp), "png", note=lambda _: None)
            report = write_report(directory, results, pngs, out, skipped)
    else:
        report = write_report(directory, results, written, out, skipped)
    print(f"{len(written)} figure(s) and {report.name} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
