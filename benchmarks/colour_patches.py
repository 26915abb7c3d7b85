"""Real colour images offline for the colourisation benchmark: 32 x 32 patches of the two photographs
scikit-learn ships (china.jpg and flower.jpg, 427 x 640 x 3), written as an npz genlab reads (`npz:FILE`).

    python benchmarks/colour_patches.py --out runs/colour/patches.npz

Training: every patch at stride 8 of china.jpg and of the left half of flower.jpg (5700); test: the right half
of flower.jpg at stride 16 (475), which no training patch overlaps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_sample_images


def patches(a: np.ndarray, side: int = 32, stride: int = 8) -> np.ndarray:
    """H x W x 3 -> N x side x side x 3, row-major over the grid of patch corners."""
    h, w, _ = a.shape
    return np.stack([a[i:i + side, j:j + side] for i in range(0, h - side + 1, stride)
                     for j in range(0, w - side + 1, stride)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/colour/patches.npz")
    args = p.parse_args()
    china, flower = load_sample_images().images
    half = flower.shape[1] // 2
    train = np.concatenate([patches(china), patches(flower[:, :half])])
    test = patches(flower[:, half:], stride=16)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, x_train=train, x_test=test)
    print(f"wrote {len(train)} training and {len(test)} test patches to {args.out}")


if __name__ == "__main__":
    main()
