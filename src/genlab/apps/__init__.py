"""Applications of trained models, each measured on real data against a baseline (`genlab apply NAME DIR`).

    reduce     dimensionality reduction: reconstruction error against PCA at equal code size
    retrieve   similar-image search: precision@k in latent space against pixels and PCA
    anomaly    anomaly detection: AUROC / AUPRC by reconstruction error or likelihood against PCA
    cluster    k-means on codes against pixels and PCA: NMI and clustering accuracy
    restore    denoising, inpainting, colourisation: PSNR / SSIM of restored and corrupted images
    interpolate  linear / spherical paths between codes or noise: smoothness, endpoints, against a cross-fade
    attributes latent arithmetic (mean code with minus without): the measured property along the sweep
    finetune   a classifier on the codes with 100, 1000, all labels against the same one on pixels and PCA
    swap       shared encoder, one decoder per domain (deepfake-style) on MNIST and its dilated copy
    (the interpolation paths live in `interpolate`, used by `genlab interpolate` and the application)

`registry.APPS` maps each name to its function, the capabilities it needs and its command-line options.
"""
from .anomaly import AnomalyScorer, PCAAnomalyScorer, detection, drop_classes, held_out_class, keep_classes
from .attributes import AttributeVector
from .cluster import EmbeddingKMeans, LatentKMeans, cluster_scores
from .finetune import CodeClassifier, balanced_subset
from .reduce import LatentReducer, PCAReducer, PixelSpace
from .registry import APPS, App, AppContext, apply
from .restore import Restorer, degrade
from .retrieve import Retriever
from .swap import SwapAutoencoder, fit_swap

__all__ = ["APPS", "AnomalyScorer", "App", "AppContext", "AttributeVector", "CodeClassifier", "EmbeddingKMeans",
           "LatentKMeans", "LatentReducer", "PCAAnomalyScorer", "PCAReducer", "PixelSpace", "Restorer", "Retriever",
           "SwapAutoencoder", "apply", "balanced_subset", "cluster_scores", "degrade", "detection", "drop_classes",
           "fit_swap", "held_out_class", "keep_classes"]
