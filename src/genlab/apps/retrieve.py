"""Similar-image search: the nearest neighbours of a query in a model's latent space, against the same search
in pixel space and in PCA space with as many components as the model's code.

    r = Retriever(LatentReducer(model)).fit(x_db, y_db)
    dist, idx = r.kneighbors(queries, k=10)          # N x k each, nearest first (scikit-learn's shape)
    r.precision_at_k(queries, y_queries, k=10)       # the fraction of neighbours sharing the query's label

Any reducer works (`PCAReducer(k)`, `PixelSpace()`); distances are Euclidean, or cosine (1 - cos) on request.
"""
from __future__ import annotations

import torch

from ..data.transforms import as_unit
from ..errors import UserError
from .metrics import precision_at_k
from .reduce import LatentReducer, PCAReducer, PixelSpace
from .registry import AppContext, app, option, positive_int

METRICS = ("euclidean", "cosine")


class Retriever:
    def __init__(self, reducer, metric: str = "euclidean", chunk: int = 1024):
        if metric not in METRICS:
            raise UserError(f"the search metric must be one of {', '.join(METRICS)}, got '{metric}'")
        self.reducer, self.metric, self.chunk = reducer, metric, chunk
        self.codes_: torch.Tensor | None = None
        self.labels_: torch.Tensor | None = None

    def fit(self, x_db: torch.Tensor, y_db: torch.Tensor | None = None) -> "Retriever":
        """Fit the reducer on the database images and store their codes (and labels)."""
        self.reducer.fit(x_db, y_db)
        self.codes_ = self._prepare(self.reducer.transform(x_db, y_db))
        self.labels_ = None if y_db is None else y_db.cpu()
        return self

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        z = z.float().flatten(1)
        return torch.nn.functional.normalize(z, dim=1) if self.metric == "cosine" else z

    def kneighbors(self, queries: torch.Tensor, k: int = 10, y: torch.Tensor | None = None,
                   exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, database indices), each N x k, nearest first. `y`: the queries' labels (only a conditional
        model's encoder reads them); `exclude`: per query one database index to leave out (the query itself
        when queries are drawn from the database), -1 for none."""
        if self.codes_ is None:
            raise UserError("the retriever is not fitted yet: call fit(x_db, y_db) first")
        if not 1 <= k <= len(self.codes_) - (exclude is not None):
            raise UserError(f"k must lie between 1 and the database size ({len(self.codes_)}), got {k}")
        q = self._prepare(self.reducer.transform(queries, y))
        dists, idxs = [], []
        for i in range(0, len(q), self.chunk):
            d = torch.cdist(q[i : i + self.chunk], self.codes_)
            if self.metric == "cosine":
                d = d.pow(2) / 2  # |a - b|^2 / 2 = 1 - cos for unit vectors
            if exclude is not None:
                e = exclude[i : i + self.chunk].long().cpu()
                rows = torch.nonzero(e >= 0).flatten()
                d[rows, e[rows]] = float("inf")
            top = d.topk(k, dim=1, largest=False)
            dists.append(top.values)
            idxs.append(top.indices)
        return torch.cat(dists), torch.cat(idxs)

    def precision_at_k(self, queries: torch.Tensor, y_queries: torch.Tensor, k: int = 10,
                       exclude: torch.Tensor | None = None) -> float:
        if self.labels_ is None:
            raise UserError("precision@k needs the labels of the database images")
        _, idx = self.kneighbors(queries, k, y_queries, exclude)
        return precision_at_k(self.labels_[idx], y_queries.cpu(), k)


def framed(images: torch.Tensor, colours: list[tuple[float, float, float]], width: int = 1) -> torch.Tensor:
    """[0, 1] images N x C x H x W -> RGB N x 3 x (H + 2w) x (W + 2w), each in a frame of its colour."""
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    n, _, h, w = rgb.shape
    out = torch.tensor(colours, dtype=rgb.dtype).view(n, 3, 1, 1).expand(n, 3, h + 2 * width, w + 2 * width).clone()
    out[:, :, width : width + h, width : width + w] = rgb
    return out


QUERY, MATCH, MISS = (0.2, 0.4, 1.0), (0.1, 0.7, 0.2), (0.9, 0.1, 0.1)


def neighbour_rows(x_q, y_q, x_db, y_db, idx, value_range: str) -> torch.Tensor:
    """Rows of query then its neighbours, framed: query blue, same label green, another label red (grey: no labels)."""
    rows, colours = [], []
    for i in range(len(x_q)):
        rows += [x_q[i : i + 1], x_db[idx[i]]]
        if y_q is None or y_db is None:
            colours += [QUERY] + [(0.6, 0.6, 0.6)] * idx.shape[1]
        else:
            colours += [QUERY] + [MATCH if y_db[j] == y_q[i] else MISS for j in idx[i].tolist()]
    return framed(as_unit(torch.cat(rows).float(), value_range), colours)


@app("retrieve", "encode",
     "similar-image search: precision@k by label in latent space against pixel space and PCA (same code size)",
     options=(option("--k", type=positive_int, help="neighbours per query (default 10)"),
              option("--db-n", type=positive_int, help="training images in the database (default 10000)"),
              option("--metric", choices=METRICS, help="distance between codes (default euclidean)")))
def run(ctx: AppContext) -> dict:
    from ..viz import save_grid, upscale_for_display

    k, metric = ctx.option("k", 10), ctx.option("metric", "euclidean")
    x_q, y_q, _ = ctx.tensors()
    x_db, y_db, _ = ctx.tensors("train", ctx.option("db_n", 10000))
    if y_q is None or y_db is None:
        raise UserError("genlab apply retrieve measures precision@k by label, and this dataset has no labels")
    exclude = None
    if ctx.split == "train":  # queries are database images too: leave each one out of its own search
        exclude = torch.arange(len(x_q))
        exclude[exclude >= len(x_db)] = -1
    latent = Retriever(LatentReducer(ctx.model, ctx.batch_size, "genlab apply retrieve"), metric).fit(x_db, y_db)
    code = latent.reducer.n_components_
    searches = {"latent": latent, "pca": Retriever(PCAReducer(code, ctx.info.range, ctx.seed), metric).fit(x_db),
                "pixels": Retriever(PixelSpace(ctx.info.range), metric).fit(x_db)}
    ks = sorted({1, k})
    results, shown = {}, {}
    for name, r in searches.items():
        _, idx = r.kneighbors(x_q, max(ks), y_q, exclude)
        results[name] = {f"p@{j}": precision_at_k(y_db[idx], y_q, j) for j in ks}
        shown[name] = idx
    m, kk = min(8, len(x_q)), min(k, 8)
    scale = upscale_for_display(ctx.info.height + 2)
    figures = []
    for name in ("latent", "pixels"):
        tiles = neighbour_rows(x_q[:m], y_q[:m], x_db, y_db, shown[name][:m, :kk], ctx.info.range)
        figures.append(str(save_grid(tiles, ctx.path(f"neighbours_{name}.png"), nrow=kk + 1, scale=scale)))
    proto = ctx.protocol(queries=f"first {len(x_q)} images of the {ctx.split} split", n=len(x_q),
                         database=f"first {len(x_db)} images of the train split", code_size=code, metric=metric,
                         baseline=f"the same search on raw pixels and on PCA with {code} components "
                                  f"(fitted on the database)",
                         relevant="a neighbour with the query's label")
    if getattr(ctx.model, "conditional", False):
        proto["note"] = "a conditional model encodes with the true labels, which favours the latent search"
    return {"results": results, "protocol": proto, "figures": figures}
