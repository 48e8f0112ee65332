"""Writes scikit-learn's bundled digits as an image folder (one subfolder per class, one PNG per image):
an offline dataset to try `--dataset PATH` on.

    python scripts/digits_folder.py data/digits_png
"""

import argparse
from pathlib import Path

from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the class subfolders")
    folder = parser.parse_args().folder
    data = load_digits()
    for i, (image, label) in enumerate(zip(data.images, data.target)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image / 16 * 255).round().astype("uint8")).save(folder / str(label) / f"{i}.png")
    print(f"{len(data.target)} images in {folder}")


if __name__ == "__main__":
    main()
