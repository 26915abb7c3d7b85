"""Check a classifier run and ship it as genlab's MNIST domain extractor.

    genlab train --config configs/classifier_mnist.toml --out runs/classifier
    python benchmarks/export_classifier.py runs/classifier

Measures test accuracy on the full MNIST test set (10k), refuses to ship below 99.3% or above 2 MB,
then copies config.json and model.safetensors into src/genlab/assets/mnist_classifier/.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from genlab.data import Batches, Pipeline, load, prepare
from genlab.run import load_model

ASSET = Path(__file__).resolve().parent.parent / "src" / "genlab" / "assets" / "mnist_classifier"
MIN_ACCURACY, MAX_BYTES = 0.993, 2_000_000


@torch.no_grad()
def accuracy(run_dir: Path) -> float:
    model, cfg = load_model(run_dir)
    test = prepare(load(cfg.data.source).test, cfg.data)
    correct = 0
    for x, y in Batches(test, Pipeline(cfg.data), 1000, shuffle=False, drop_last=False).epoch(0):
        correct += int((model.logits(x).argmax(1) == y).sum())
    return correct / len(test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    acc = accuracy(args.run)
    size = (args.run / "model.safetensors").stat().st_size
    print(f"test accuracy {acc:.4%} on 10000 MNIST test images; weights {size / 1e6:.2f} MB")
    if acc < MIN_ACCURACY or size > MAX_BYTES:
        raise SystemExit(f"not shipped: needs accuracy >= {MIN_ACCURACY:.1%} and size <= {MAX_BYTES / 1e6:.0f} MB")
    ASSET.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "config.json", ASSET / "config.json")
    shutil.copyfile(args.run / "model.safetensors", ASSET / "model.safetensors")
    provenance = {"test_accuracy": acc, "test_images": 10000, "bytes": size,
                  "recipe": "genlab train --config configs/classifier_mnist.toml --out runs/classifier"}
    (ASSET / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"shipped to {ASSET}")


if __name__ == "__main__":
    main()
