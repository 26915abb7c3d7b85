"""A 64 px greyscale image folder offline: MNIST digits upscaled (bicubic) to 64 x 64 and written as PNG files in
class subfolders, the layout a user's own labelled folder has (`folder:DIR`).

    python benchmarks/grey_folder.py --out /tmp/mnist64 --train 6000 --test 1000

No 64 px greyscale photograph set ships offline (Olivetti faces and LFW are downloads), so this is the nearest:
real handwriting at the size of the solar-cell images of issue 16, read back through genlab's folder reader.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from genlab.data import load


def write(images, labels, folder: Path, side: int) -> None:
    for i, (img, y) in enumerate(zip(images, labels)):
        d = folder / str(int(y))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).resize((side, side), Image.BICUBIC).save(d / f"{i:05d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--side", type=int, default=64)
    args = p.parse_args()
    mnist = load("mnist")
    out = Path(args.out)
    write(mnist.train.images[: args.train], mnist.train.labels[: args.train], out / "train", args.side)
    write(mnist.test.images[: args.test], mnist.test.labels[: args.test], out / "test", args.side)
    print(f"wrote {args.train} training and {args.test} test images of {args.side} px to {out}")


if __name__ == "__main__":
    main()
