"""Metric floors on real MNIST and extractor throughput: what the metrics say when nothing is generated.

    python benchmarks/metric_floors.py                      # everything (domain: minutes; Inception: ~10 min)
    python benchmarks/metric_floors.py --inception-n 200    # a shorter Inception part
    python benchmarks/metric_floors.py --n 0 --inception-source npz:patches.npz --inception-n 475   # a user's set

Prints, with the protocol of each number:
- feature extraction throughput (images/s) of the domain classifier and of the FID Inception on this CPU,
  and the FID-10k wall time each implies (10k generated images; the reference features are cached);
- MNIST train vs test: FID and KID (domain features: 10k vs 10k; Inception: --inception-n vs --inception-n, on
  MNIST or on --inception-source, n random training images against the first n test images, with
  precision/recall there too),
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


def domain_floors(n: int) -> None:
    """The domain classifier's throughput and floors on MNIST, n images a side."""
    mnist = load("mnist")
    train = mnist.train.images[:n].float() / 255
    test = mnist.test.images[:n].float() / 255

    dom = get_extractor("domain")
    rate, f_test = throughput(dom, test)
    f_train = dom.features(train)
    print(f"\ndomain classifier ({dom.identity}, {dom.dim}-d): {rate:.0f} images/s; "
          f"FID-10k (10k samples, cached reference) ~{10000 / rate:.1f} s of feature extraction")
    fid = fid_from_features(f_train, f_test)
    kid, kid_std = kernel_inception_distance(f_train, f_test, subsets=100, subset_size=1000)
    pr = precision_recall(f_test, f_train, k=3)
    dc = density_coverage(f_test, f_train, k=5)
    print(f"MNIST train[:{n}] vs test[:{n}], domain features: FID {fid:.3f}, KID {kid:.5f} +- {kid_std:.5f}, "
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
    modes = mode_coverage(probs.argmax(1), class_distribution(mnist.test.labels[:n], 10))
    print(f"IS of MNIST test[:{n}] under the domain classifier: {is_mean:.3f} +- {is_std:.3f} (10 splits); "
          f"classes covered {modes['classes_covered']}/10, KL(data || predicted) {modes['kl_data_to_samples']:.5f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000, help="images per side for the domain floors")
    p.add_argument("--inception-n", type=int, default=1000, help="images per side for the Inception floors")
    p.add_argument("--inception-source", default="mnist", help="the data source of the Inception floors")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="the Inception's arithmetic")
    args = p.parse_args()
    print(f"machine: {machine()}")
    if args.n:
        domain_floors(args.n)
    n = args.inception_n
    if n:
        data = load(args.inception_source)
        # 'generated' = a random sample of the training split (seed 0): a source's files may be in a spatial or
        # writer order, which its first n would carry
        pick = torch.randperm(len(data.train.images), generator=torch.Generator().manual_seed(0))[:n]
        train, test = data.train.images[pick].float() / 255, data.test.images[:n].float() / 255
        inc = get_extractor("inception", precision=args.precision)
        rate, i_test = throughput(inc, test)
        i_train = inc.features(train)
        pr = precision_recall(i_test, i_train, k=3)
        print(f"\nInception ({inc.identity}, 2048-d, {inc.preprocess}, {args.precision}): {rate:.2f} images/s; "
              f"FID-10k (10k samples, cached reference) ~{10000 / rate / 60:.0f} min of feature extraction")
        print(f"{args.inception_source} {len(train)} random training images vs test[:{len(test)}], Inception features: "
              f"FID {fid_from_features(i_train, i_test):.3f}, "
              f"KID {kernel_inception_distance(i_train, i_test, subsets=100, subset_size=min(1000, n))[0]:.5f}, "
              f"precision {pr['precision']:.3f}, recall {pr['recall']:.3f}  (real = test, 'generated' = train)")


if __name__ == "__main__":
    main()
