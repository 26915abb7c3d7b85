"""Metric floors on real MNIST and extractor throughput: what the metrics say when nothing is generated.

    python benchmarks/metric_floors.py                      # everything (domain: minutes; Inception: ~10 min)
    python benchmarks/metric_floors.py --inception-n 200    # a shorter Inception part

Prints, with the protocol of each number:
- feature extraction throughput (images/s) of the domain classifier and of the FID Inception on this CPU,
  and the FID-10k wall time each implies (10k generated images; the reference features are cached);
- MNIST train vs test: FID and KID (domain features: 10k vs 10k; Inception: --inception-n vs --inception-n),
  and the domain FID of two disjoint random training samples of 500 to 10k images (FID's bias at small n),
  precision/recall and density/coverage (domain, 10k vs 10k);
- the Inception Score of the MNIST test set under the domain classifier (published: about 9.88 with an
  MNIST classifier) and its mode coverage.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from genlab.data import load
from genlab.metrics.features import get_extractor
from genlab.metrics.frechet import fid_from_features
from genlab.metrics.inception_score import inception_score
from genlab.metrics.kid import kernel_inception_distance
from genlab.metrics.modes import class_distribution, mode_coverage
from genlab.metrics.precision_recall import density_coverage, precision_recall


def throughput(ext, images: torch.Tensor) -> tuple[float, torch.Tensor]:
    ext.features(images[: min(8, len(images))])  # warm-up
    t = time.perf_counter()
    feats = ext.features(images)
    return len(images) / (time.perf_counter() - t), feats


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {platform.python_version()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000, help="images per side for the domain floors")
    p.add_argument("--inception-n", type=int, default=1000, help="images per side for the Inception floors")
    args = p.parse_args()
    print(f"machine: {machine()}")
    mnist = load("mnist")
    train = mnist.train.images[: args.n].float() / 255
    test = mnist.test.images[: args.n].float() / 255

    dom = get_extractor("domain")
    rate, f_test = throughput(dom, test)
    f_train = dom.features(train)
    print(f"\ndomain classifier ({dom.identity}, {dom.dim}-d): {rate:.0f} images/s; "
          f"FID-10k (10k samples, cached reference) ~{10000 / rate:.1f} s of feature extraction")
    fid = fid_from_features(f_train, f_test)
    kid, kid_std = kernel_inception_distance(f_train, f_test, subsets=100, subset_size=1000)
    pr = precision_recall(f_test, f_train, k=3)
    dc = density_coverage(f_test, f_train, k=5)
    print(f"MNIST train[:{args.n}] vs test[:{args.n}], domain features: FID {fid:.3f}, KID {kid:.5f} +- {kid_std:.5f}, "
          f"precision {pr['precision']:.3f}, recall {pr['recall']:.3f}, density {dc['density']:.3f}, "
          f"coverage {dc['coverage']:.3f}  (real = test, 'generated' = train)")
    # FID's upward bias at small n: two disjoint random samples of the training images (seed 0), so that nothing
    # but the sample size differs (MNIST's test images are not in random order: its first 5,000 are the cleaner
    # writers', and test[:5000] against train[:5000] gives 37.5 where 10k against 10k gives 5.8)
    order = torch.randperm(len(mnist.train.images), generator=torch.Generator().manual_seed(0))
    pool = dom.features(mnist.train.images[order[:20000]].float() / 255)
    bias = {m: fid_from_features(pool[:m], pool[10000:10000 + m]) for m in (500, 1000, 2000, 5000, 10000)}
    print("FID of two disjoint random samples of n training images (domain features; the bias genlab eval warns "
          "of): " + ", ".join(f"n={m}: {v:.2f}" for m, v in bias.items()))
    probs = dom.probs(test)
    is_mean, is_std = inception_score(probs, splits=10)
    modes = mode_coverage(probs.argmax(1), class_distribution(mnist.test.labels[: args.n], 10))
    print(f"IS of MNIST test[:{args.n}] under the domain classifier: {is_mean:.3f} +- {is_std:.3f} (10 splits); "
          f"classes covered {modes['classes_covered']}/10, KL(data || predicted) {modes['kl_data_to_samples']:.5f}")

    n = args.inception_n
    if n:
        inc = get_extractor("inception")
        rate, i_test = throughput(inc, test[:n])
        i_train = inc.features(train[:n])
        print(f"\nInception ({inc.identity}, 2048-d, {inc.preprocess}): {rate:.2f} images/s; "
              f"FID-10k (10k samples, cached reference) ~{10000 / rate / 60:.0f} min of feature extraction")
        print(f"MNIST train[:{n}] vs test[:{n}], Inception features: FID {fid_from_features(i_train, i_test):.3f}, "
              f"KID {kernel_inception_distance(i_train, i_test, subsets=100, subset_size=min(1000, n))[0]:.5f}")


if __name__ == "__main__":
    main()
