"""Copy the example sweeps' figures into docs/gallery/, recompressed for the repository.

python -m fastbp.sweep sweeps/lr_dense.toml      # and each of SWEEPS below
python docs/gallery.py [results]
"""

import sys
from pathlib import Path

from PIL import Image  # matplotlib's own dependency

SWEEPS = ("lr_dense", "random_search", "architectures", "xor", "parity_holdout", "schedules")
HERE = Path(__file__).resolve().parent


def main(results=Path("results")):
    for name in SWEEPS:
        target = HERE / "gallery" / name
        target.mkdir(parents=True, exist_ok=True)
        for png in sorted((results / name / "plots").glob("*.png")):
            Image.open(png).save(target / png.name, optimize=True)  # smaller than the sweep's
            print(target / png.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
