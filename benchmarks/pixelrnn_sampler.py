"""PixelRNN's Diagonal BiLSTM sampler: genlab's cursor (one cell step per pixel and layer, one right-to-left
sweep per finished row) against the generic autoregressive sampler (one pass of the whole network, cropped to
the rows drawn so far, per sub-pixel), on the same model and generator state.

    python benchmarks/pixelrnn_sampler.py --n 8 --monitor-n 1000 --threads 1

The model is the registered default (h = 16, 7 layers) on 28 x 28 binarised MNIST, at its initialisation: the
cost does not depend on the weights. Prints the seconds of each, their ratio, whether both drew the same
images, and the cursor's seconds for the mode monitor's 1,000 samples.
"""
from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from genlab.data import DataInfo
from genlab.models import registry
from genlab.models.autoregressive import Autoregressive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="images for the comparison")
    p.add_argument("--monitor-n", type=int, default=1000, help="images for the cursor alone (0: skip)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = registry.get("pixelrnn").config_cls(variant="diagonal_bilstm")
    model = registry.build("pixelrnn", cfg, DataInfo(1, 28, 28, range="01", binarized="dynamic")).eval()
    start = time.perf_counter()
    cursor = model.sample(args.n, generator=torch.Generator().manual_seed(0))
    cursor_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad(), tqdm(disable=True) as bar:  # the generic sampler: a network pass per sub-pixel
        full = Autoregressive._draw(model, torch.zeros(args.n, 1, 28, 28), 0, torch.Generator().manual_seed(0), None,
                                    bar)
    full_s = time.perf_counter() - start
    print(f"PixelRNN Diagonal BiLSTM (h = {cfg.width}, {cfg.layers} layers), {args.n} images of 28 x 28, "
          f"{args.threads} thread(s)")
    print(f"genlab cursor {cursor_s:.2f} s, full passes {full_s:.1f} s, ratio {full_s / cursor_s:.0f}; "
          f"same images: {bool(torch.equal(cursor, full))}")
    if args.monitor_n:
        start = time.perf_counter()
        model.sample(args.monitor_n, generator=torch.Generator().manual_seed(0))
        print(f"genlab cursor, {args.monitor_n} images: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
