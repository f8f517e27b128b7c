"""Write Fashion-MNIST out as PNG files in ImageFolder layout, for the streamed-image benchmarks and the
streamed accuracy run (conf/experiment/fashion_mnist_cnn_streamed.yaml):

    <out>/train/<k>_<class>/<index>.png   (60,000: the official training images)
    <out>/test/<k>_<class>/<index>.png    (10,000: the official test images)

Class folders are prefixed with the label (0_T-shirt-top ... 9_Ankle-boot) so that their sorted order, which
gives the label numbers, is Fashion-MNIST's own.

    .venv/bin/python scripts/fashion_mnist_to_png.py                       # 70,000 files, 28 px
    .venv/bin/python scripts/fashion_mnist_to_png.py --limit 10000 --out data/fashion-mnist-png-10k
    .venv/bin/python scripts/fashion_mnist_to_png.py --size 224 --limit 10000 --out data/fashion-mnist-png-224

``--limit N`` writes N files: the first 6/7 of N training images and the first 1/7 test images (the
official 6:1 ratio);
``--size`` upscales (bilinear) to that many pixels a side. Reads ``$PIPELINE_DATA_DIR/fashion-mnist``
(e.g. ../shared/data/fashion-mnist) or ``--source``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "src"))

from pipeline.data.images import FashionMNIST, read_idx  # noqa: E402

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def class_folders() -> list[str]:
    return [f"{k}_{name.replace('/', '-').replace(' ', '-')}" for k, name in enumerate(FashionMNIST.class_names)]


def write_chunk(args: tuple[Path, np.ndarray, np.ndarray, np.ndarray, int]) -> int:
    from PIL import Image

    out, indices, images, labels, size = args
    folders = class_folders()
    for index, image, label in zip(indices, images, labels):
        picture = Image.fromarray(image, mode="L")
        if size != image.shape[0]:
            picture = picture.resize((size, size), Image.Resampling.BILINEAR)
        picture.save(out / folders[label] / f"{index:05d}.png")
    return len(indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_dir = Path(os.environ.get("PIPELINE_DATA_DIR", PROJECT_ROOT / "data"))
    parser.add_argument("--source", type=Path, default=data_dir / "fashion-mnist")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "data" / "fashion-mnist-png")
    parser.add_argument("--size", type=int, default=28, help="pixels a side (28: the original images)")
    parser.add_argument("--limit", type=int, default=None, help="write N files (6/7 training, 1/7 test images)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    started = time.perf_counter()
    written = 0
    with ProcessPoolExecutor(args.workers) as pool:
        for split, (image_file, label_file) in FILES.items():
            images = read_idx(args.source / image_file, 3)
            labels = read_idx(args.source / label_file, 1)
            count = len(images)
            if args.limit is not None:
                train_count = round(args.limit * 6 / 7)
                count = min(count, train_count if split == "train" else max(1, args.limit - train_count))
            for folder in class_folders():
                (args.out / split / folder).mkdir(parents=True, exist_ok=True)
            chunks = [(args.out / split, np.arange(start, min(start + 2000, count)), images[start : start + 2000][: count - start],
                       labels[start : start + 2000][: count - start], args.size) for start in range(0, count, 2000)]
            written += sum(pool.map(write_chunk, chunks))
    print(f"wrote {written:,} PNG files ({args.size} px) to {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
