"""Applications of trained models, each measured on real data against a baseline (`genlab apply NAME DIR`).

    reduce     dimensionality reduction: reconstruction error against PCA at equal code size
    retrieve   similar-image search: precision@k in latent space against pixels and PCA
    anomaly    anomaly detection: AUROC / AUPRC by reconstruction error or likelihood against PCA
    cluster    k-means on codes against pixels and PCA: NMI and clustering accuracy
    (interpolation lives in `interpolate`, used by `genlab interpolate`)

`registry.APPS` maps each name to its function, the capabilities it needs and its command-line options.
"""
from .anomaly import AnomalyScorer, PCAAnomalyScorer, detection, drop_classes, held_out_class, keep_classes
from .cluster import EmbeddingKMeans, LatentKMeans, cluster_scores
from .reduce import LatentReducer, PCAReducer, PixelSpace
from .registry import APPS, App, AppContext, apply
from .retrieve import Retriever

__all__ = ["APPS", "AnomalyScorer", "App", "AppContext", "EmbeddingKMeans", "LatentKMeans", "LatentReducer",
           "PCAAnomalyScorer", "PCAReducer", "PixelSpace", "Retriever", "apply", "cluster_scores", "detection",
           "drop_classes", "held_out_class", "keep_classes"]
