"""Semi-supervised learning: an encoder pretrained without labels (the run's model, `encode`), then a classifier
trained on its codes with few labels, against the same classifier trained from scratch on pixels (and on PCA
codes of the same size) with the same labels.

    idx = balanced_subset(y_pool, 100, seed)                 # 100 labels, class-balanced, fixed seed
    probe = CodeClassifier(LatentReducer(model)).fit(x_pool[idx], y_pool[idx])
    probe.score(x_test, y_test)                              # accuracy
    end_to_end(model, x, y, classes)                         # optional: the encoder fine-tuned with a linear head

The classifier ("head") is the same in every row: standardised features, then a multinomial logistic regression
(L2, C = 1) or a one-hidden-layer MLP (256 ReLU units, Adam) from scikit-learn. Label budgets are drawn from the
labelled pool (the training split) class-balanced: n // K per class, classes with fewer images giving all they
have and the rest spread over the others, ties broken by a seeded generator; "all" is the whole pool. With
`repeats` > 1, each budget below the pool is drawn that many times (seeds seed, seed + 1, ...) and the accuracies
averaged. End-to-end fine-tuning (optional) trains a copy of the model's encoder with a linear head by
cross-entropy (Adam), against the same network re-initialised (from scratch), on the same labels.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .reduce import LatentReducer, PCAReducer, PixelSpace
from .registry import AppContext, app, model_device, model_name, option, positive_int

HEADS = ("logreg", "mlp")


def balanced_subset(y, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of n labelled examples, as class-balanced as the pool allows (module docstring), sorted."""
    y = np.asarray(y).ravel()
    if n >= len(y):
        return torch.arange(len(y))
    if n < 1:
        raise UserError(f"a label budget must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    members = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    take = {c: 0 for c in classes}
    left, open_ = n, list(classes)
    while left > 0 and open_:
        if left < len(open_):  # fewer labels left than classes that have more: one each to random ones
            for i in rng.permutation(len(open_))[:left]:
                take[open_[i]] += 1
            break
        share = left // len(open_)
        for c in open_:
            k = min(share, len(members[c]) - take[c])
            take[c] += k
            left -= k
        open_ = [c for c in open_ if take[c] < len(members[c])]
    idx = np.concatenate([members[c][: take[c]] for c in classes])
    return torch.from_numpy(np.sort(idx)).long()


def make_head(head: str = "logreg", seed: int = 0):
    """The classifier every row shares: standardisation, then logistic regression or an MLP."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if head not in HEADS:
        raise UserError(f"the classifier head must be one of {', '.join(HEADS)}, got '{head}'")
    clf = (LogisticRegression(C=1.0, max_iter=1000) if head == "logreg"
           else MLPClassifier((256,), max_iter=300, random_state=seed))
    return make_pipeline(StandardScaler(), clf)


class CodeClassifier:
    """A classifier on the codes of any reducer (LatentReducer(model), PCAReducer(k), PixelSpace())."""

    def __init__(self, reducer, head: str = "logreg", seed: int = 0):
        self.reducer, self.head, self.seed = reducer, head, seed
        self.clf = None

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "CodeClassifier":
        return self.fit_codes(self.reducer.fit(x).transform(x), y)

    def fit_codes(self, z: torch.Tensor, y: torch.Tensor) -> "CodeClassifier":
        """Fit the head on codes already computed (the reducer fitted before)."""
        y = np.asarray(y).ravel()
        if len(np.unique(y)) < 2:
            raise UserError("a classifier needs labelled examples of at least two classes")
        self.clf = make_head(self.head, self.seed).fit(z.double().numpy(), y)
        return self

    def predict_codes(self, z: torch.Tensor) -> torch.Tensor:
        if self.clf is None:
            raise UserError("the classifier is not fitted yet: call fit(x, y) first")
        return torch.from_numpy(self.clf.predict(z.double().numpy())).long()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_codes(self.reducer.transform(x))

    def score(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.predict(x) == torch.as_tensor(y)).double().mean())


def accuracy(pred, y) -> float:
    return float((torch.as_tensor(pred) == torch.as_tensor(y)).double().mean())


# ---------------------------------------------------------------- end-to-end fine-tuning (optional)
def _reinit(net: nn.Module) -> None:
    for m in net.modules():
        if m is not net and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def end_to_end(model, x: torch.Tensor, y: torch.Tensor, num_classes: int, x_test: torch.Tensor,
               scratch: bool = False, epochs: int = 20, lr: float = 1e-3, batch_size: int = 64,
               seed: int = 0) -> torch.Tensor:
    """Train a copy of the model's encoder (`encode`) with a linear head on (x, y) by cross-entropy, from the
    pretrained weights or re-initialised (`scratch`); -> predictions on x_test."""
    if not isinstance(model, nn.Module) or not hasattr(model, "encode"):
        raise UserError(f"end-to-end fine-tuning needs an encoder that is a torch module, and "
                        f"'{model_name(model)}' has none")
    torch.manual_seed(seed)
    dev = model_device(model)
    net = copy.deepcopy(model).to(dev)
    if scratch:
        _reinit(net)
    for p in net.parameters():
        p.requires_grad_(True)
    net.train()
    with torch.no_grad():
        d = net.encode(x[:2].to(dev)).flatten(1).shape[1]
    head = nn.Linear(d, num_classes).to(dev)
    params = [p for p in net.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch_size):
                j = order[i : i + batch_size]
                if len(j) < 2:
                    continue
                logits = head(net.encode(x[j].to(dev)).flatten(1))
                loss = F.cross_entropy(logits, y[j].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x_test), 256):
            out.append(head(net.encode(x_test[i : i + 256].to(dev)).flatten(1)).argmax(1).cpu())
    return torch.cat(out)


# ---------------------------------------------------------------- the application
def _budgets(spec: str, pool: int) -> list[tuple[str, int]]:
    out = []
    for s in str(spec).split(","):
        s = s.strip()
        if not s:
            continue
        if s == "all":
            out.append(("all", pool))
            continue
        try:
            n = int(s)
        except ValueError:
            raise UserError(f"--labels takes label counts or 'all' separated by commas, got '{s}'") from None
        if n < 1:
            raise UserError(f"a label budget must be at least 1, got {n}")
        out.append((str(n), min(n, pool)))
    if not out:
        raise UserError("--labels takes label counts or 'all' separated by commas, e.g. 100,1000,all")
    return out


@app("finetune", "encode",
     "semi-supervised learning: a classifier on the codes with 100, 1000 and all labels, against the same "
     "classifier on pixels and PCA",
     options=(option("--labels", metavar="LIST", help="label budgets, comma-separated (default 100,1000,all)"),
              option("--head", choices=HEADS, help="the classifier on the features (default logreg)"),
              option("--pool-n", type=positive_int,
                     help="training images in the labelled pool, 'all' being these (default: the whole split)"),
              option("--repeats", type=positive_int, help="draws of each budget below the pool, averaged (default 1)"),
              option("--end-to-end", action="store_true",
                     help="also fine-tune the encoder with a linear head, against the same network from scratch"),
              option("--epochs", type=positive_int, help="epochs of end-to-end training (default 20)")))
def run(ctx: AppContext) -> dict:
    model = ctx.model
    if getattr(model, "conditional", False):
        raise UserError(f"genlab apply finetune needs an encoder that does not read labels, and "
                        f"'{model_name(model)}' is conditional (its code would carry the label it should predict)")
    x_pool, y_pool, _ = ctx.tensors("train", ctx.option("pool_n", 10**9))
    x, y, _ = ctx.tensors()
    if y_pool is None or y is None:
        raise UserError("genlab apply finetune measures classification accuracy, and this dataset has no labels")
    budgets = _budgets(ctx.option("labels", "100,1000,all"), len(x_pool))
    head, repeats = ctx.option("head", "logreg"), ctx.option("repeats", 1)
    latent = LatentReducer(model, ctx.batch_size, "genlab apply finetune").fit(x_pool[:2])
    k = latent.n_components_
    pca = PCAReducer(k, ctx.info.range, ctx.seed).fit(x_pool[:10000])
    pixels = PixelSpace(ctx.info.range).fit(x_pool)
    feats = {name: (r.transform(x_pool), r.transform(x)) for name, r in
             (("latent", latent), ("pca", pca), ("pixels", pixels))}
    results: dict = {name: {} for name in feats}
    sizes = {}
    for label, n in budgets:
        draws = 1 if n >= len(x_pool) else repeats
        subsets = [balanced_subset(y_pool, n, ctx.seed + r) for r in range(draws)]
        sizes[label] = n
        for name, (zp, zt) in feats.items():
            accs = [CodeClassifier(None, head, ctx.seed).fit_codes(zp[i], y_pool[i]).predict_codes(zt) for i in subsets]
            results[name][f"acc@{label}"] = float(np.mean([accuracy(p, y) for p in accs]))
        if ctx.option("end_to_end"):
            classes = max(int(y_pool.max()), int(y.max())) + 1
            for name, scratch in (("end_to_end", False), ("end_to_end_scratch", True)):
                accs = [accuracy(end_to_end(model, x_pool[i], y_pool[i], classes, x, scratch,
                                            ctx.option("epochs", 20), seed=ctx.seed + r), y)
                        for r, i in enumerate(subsets)]
                results.setdefault(name, {})[f"acc@{label}"] = float(np.mean(accs))
    counts = np.bincount(y_pool[balanced_subset(y_pool, budgets[0][1], ctx.seed)].numpy())
    figures = [_plot(results, budgets, ctx.path("accuracy.png"))]
    proto = ctx.protocol(split=ctx.split, n=len(x), pool=f"the first {len(x_pool)} training images", labels=sizes,
                         code_size=k, head=("standardised features, logistic regression (C = 1)" if head == "logreg"
                                            else "standardised features, MLP with 256 ReLU units"),
                         subsets=f"class-balanced, seed {ctx.seed}" + (f" .. {ctx.seed + repeats - 1}, averaged"
                                                                      if repeats > 1 else ""),
                         per_class_at_smallest_budget=counts.tolist(),
                         baseline=f"the same classifier on raw pixels and on PCA with {pca.n_components_} components "
                                  f"(fitted without labels on {min(len(x_pool), 10000)} training images)",
                         figures="accuracy.png: test accuracy against the number of labels")
    if ctx.option("end_to_end"):
        proto["end_to_end"] = (f"a copy of the encoder with a linear head, Adam 1e-3, {ctx.option('epochs', 20)} "
                               f"epochs; scratch: the same network re-initialised")
    return {"results": results, "protocol": proto, "figures": figures}


def _plot(results: dict, budgets, path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=110)
    xs = [n for _, n in budgets]
    for name, row in results.items():
        ax.plot(xs, [row.get(f"acc@{label}") for label, _ in budgets], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
