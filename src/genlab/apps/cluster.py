"""Clustering: k-means on a model's codes against k-means on pixels and on PCA codes of the same size,
scored by NMI and clustering accuracy (Hungarian matching of clusters to classes) against the labels.

    km = LatentKMeans(model, n_clusters=10).fit(x)     # or EmbeddingKMeans(PCAReducer(k) | PixelSpace(), 10)
    km.labels_, km.predict(x_new)
    cluster_scores(y, km.labels_)                       # {"nmi", "accuracy"}

The application fits and scores k-means on the same split (the usual transductive protocol).
"""
from __future__ import annotations

import torch

from ..errors import UserError
from .metrics import clustering_accuracy, nmi
from .reduce import LatentReducer, PCAReducer, PixelSpace
from .registry import AppContext, app, option, positive_int


class EmbeddingKMeans:
    """k-means (scikit-learn, k-means++ starts, best of n_init) on the codes of any reducer."""

    def __init__(self, reducer, n_clusters: int, seed: int = 0, n_init: int = 10):
        if n_clusters < 1:
            raise UserError(f"k-means needs at least one cluster, got {n_clusters}")
        self.reducer, self.n_clusters, self.seed, self.n_init = reducer, n_clusters, seed, n_init
        self.kmeans = None
        self.labels_: torch.Tensor | None = None

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None) -> "EmbeddingKMeans":
        """`y` reaches only a conditional model's encoder; k-means never sees labels."""
        from sklearn.cluster import KMeans

        codes = self.reducer.fit(x, y).transform(x, y).double().numpy()
        if len(codes) < self.n_clusters:
            raise UserError(f"k-means with {self.n_clusters} clusters needs at least as many images, got {len(codes)}")
        self.kmeans = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.seed).fit(codes)
        self.labels_ = torch.from_numpy(self.kmeans.labels_).long()
        return self

    def predict(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.kmeans is None:
            raise UserError("k-means is not fitted yet: call fit(x) first")
        return torch.from_numpy(self.kmeans.predict(self.reducer.transform(x, y).double().numpy())).long()

    def fit_predict(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.fit(x, y).labels_

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Distances of each image's code to every cluster centre; N x n_clusters."""
        return torch.from_numpy(self.kmeans.transform(self.reducer.transform(x, y).double().numpy())).float()


class LatentKMeans(EmbeddingKMeans):
    """k-means in a trained model's latent space (its `encode`)."""

    def __init__(self, model, n_clusters: int, seed: int = 0, n_init: int = 10, batch_size: int = 256):
        super().__init__(LatentReducer(model, batch_size, "clustering in latent space"), n_clusters, seed, n_init)


def cluster_scores(labels, clusters) -> dict[str, float]:
    return {"nmi": nmi(labels, clusters), "accuracy": clustering_accuracy(labels, clusters)}


@app("cluster", "encode",
     "clustering: k-means on codes against k-means on pixels and PCA; NMI and Hungarian-matched accuracy",
     options=(option("--clusters", type=positive_int, help="number of clusters (default: the number of classes)"),
              option("--n-init", type=positive_int, help="k-means restarts, the best kept (default 10)")))
def run(ctx: AppContext) -> dict:
    x, y, classes = ctx.tensors()
    if y is None:
        raise UserError("genlab apply cluster scores clusters against class labels, and this dataset has none")
    k = ctx.option("clusters") or max(int(y.max()) + 1, len(classes or ()))
    n_init = ctx.option("n_init", 10)
    latent = LatentReducer(ctx.model, ctx.batch_size, "genlab apply cluster")
    runs = {"latent": EmbeddingKMeans(latent, k, ctx.seed, n_init).fit(x, y)}
    code = latent.n_components_
    runs["pca"] = EmbeddingKMeans(PCAReducer(code, ctx.info.range, ctx.seed), k, ctx.seed, n_init).fit(x)
    runs["pixels"] = EmbeddingKMeans(PixelSpace(ctx.info.range), k, ctx.seed, n_init).fit(x)
    results = {name: cluster_scores(y.numpy(), km.labels_.numpy()) for name, km in runs.items()}
    # the figure: one row per latent cluster, its members nearest the centre first
    km, per_row = runs["latent"], 12
    dist = km.transform(x, y)
    rows, shown = [], min(k, 20)
    for c in range(shown):
        members = torch.nonzero(km.labels_ == c).flatten()
        members = members[dist[members, c].argsort()][:per_row]
        pad = x.new_full((per_row - len(members), *x.shape[1:]), 1.0)  # white in either range
        rows += [x[members], pad]
    figures = [ctx.save_images(torch.cat(rows), "clusters.png", nrow=per_row)]
    proto = ctx.protocol(split=ctx.split, n=len(x), clusters=k, code_size=code, n_init=n_init,
                         fitted_on=f"the same {len(x)} {ctx.split} images that are scored",
                         baseline=f"k-means on raw pixels and on PCA with "
                                  f"{runs['pca'].reducer.n_components_} components",
                         accuracy="clusters matched one-to-one to classes by the Hungarian algorithm",
                         figures=f"clusters.png: one row per latent cluster (the first {shown}), members nearest "
                                 f"its centre first, white padding")
    if getattr(ctx.model, "conditional", False):
        proto["note"] = "a conditional model encodes with the true labels, which favours latent clustering"
    return {"results": results, "protocol": proto, "figures": figures}
