"""NADE and MADE: causal conditionals, a normalised exact likelihood, a sampler that draws from it, the ensemble."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.fvbn import made_masks

CASES = [("nade", {}), ("nade", {"ordering": "random"}), ("made", {"hidden": (12, 10)}),
         ("made", {"hidden": (12,), "masks": 3, "order_agnostic": True})]
IDS = [f"{n}-{','.join(f'{k}={v}' for k, v in f.items())}" for n, f in CASES]


def make(name, shape=(1, 2, 2), seed=0, range_="01", **fields):
    torch.manual_seed(seed)
    cfg = registry.get(name).config_cls(**({"units": 6} if name == "nade" else {}) | fields)
    model = registry.build(name, cfg, DataInfo(*shape, range=range_, binarized="dynamic"))
    with torch.no_grad():  # off the small initialisation, so that every check has power
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 1)))
    return model.eval()


def all_images(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d))).view(-1, 1, 1, d)


def orders(model) -> list[torch.Tensor]:
    if model.registry_name == "nade":
        return [model.order]
    return [getattr(model, f"order_{k}") for k in range(model.cfg.masks)]


@pytest.mark.parametrize("name,fields", CASES, ids=IDS)
def test_each_conditional_sees_only_earlier_pixels(name, fields):
    model = make(name, (1, 3, 3), **fields)
    v = torch.rand(1, 9)
    for k, order in enumerate(orders(model)):
        def f(u, k=k):
            return model.conditional_logits(u, k) if name == "made" else model.conditional_logits(u)

        jac = torch.autograd.functional.jacobian(lambda u: f(u)[0], v)[:, 0]  # output pixel x input pixel
        pos = torch.empty(9, dtype=torch.long)
        pos[order] = torch.arange(9)  # each pixel's place in the ordering
        later_or_same = pos.view(1, -1) >= pos.view(-1, 1)  # input j at or after output i
        assert jac[later_or_same].abs().max() == 0
        assert jac[~later_or_same].abs().max() > 0  # and the earlier ones do reach it


@pytest.mark.parametrize("name,fields", CASES, ids=IDS)
def test_the_likelihood_sums_to_one_over_every_binary_image(name, fields):
    model = make(name, (1, 2, 2), **fields)
    total = float(model.log_prob(all_images(4).view(-1, 1, 2, 2)).detach().exp().sum())
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name,fields", CASES, ids=IDS)
def test_samples_follow_the_likelihood(name, fields):
    """The sampler's chain and log_prob are one distribution: frequencies of 20,000 draws of a 2x2 image match
    exp(log p) within 5 standard errors."""
    model = make(name, (1, 2, 2), **fields)
    images = all_images(4).view(-1, 1, 2, 2)
    p = model.log_prob(images).exp().detach()
    draws = model.sample(20000, generator=torch.Generator().manual_seed(0)).flatten(1)
    index = (draws * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()  # itertools.product order
    freq = torch.bincount(index, minlength=16).float() / len(draws)
    se = (p * (1 - p) / len(draws)).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-4).all()


def test_samples_lie_in_the_data_range():
    model = make("nade", (1, 3, 3), range_="-11")
    s = model.sample(5)
    assert s.shape == (5, 1, 3, 3) and set(s.unique().tolist()) <= {-1.0, 1.0}
    x = torch.tensor([-1.0, 1.0]).repeat(9)[:9].view(1, 1, 3, 3)
    assert torch.allclose(model.log_prob(x), make("nade", (1, 3, 3), range_="01").log_prob((x + 1) / 2))


def test_made_ensemble_is_the_mean_of_its_masks_probabilities():
    model = make("made", (1, 2, 2), hidden=(10,), masks=3, order_agnostic=True)
    x = all_images(4).view(-1, 1, 2, 2)
    v = x.flatten(1)
    each = torch.stack([(-torch.nn.functional.binary_cross_entropy_with_logits(model.conditional_logits(v, k), v,
                                                                              reduction="none").sum(1)).exp()
                        for k in range(3)])
    assert torch.allclose(model.log_prob(x).exp(), each.mean(0), atol=1e-6)
    assert len({tuple(o.tolist()) for o in orders(model)}) > 1  # order-agnostic: the masks' orderings differ


def test_made_training_cycles_its_masks_and_keeps_the_place_in_its_state():
    model = make("made", (1, 2, 2), hidden=(8,), masks=3).train()
    x = all_images(4).view(-1, 1, 2, 2)[:5]
    seen = []
    for _ in range(4):
        seen.append(int(model.next_mask))
        model.losses(x)
    assert seen == [0, 1, 2, 0] and "next_mask" in model.state_dict()


def test_made_masks_follow_the_degree_rule():
    g = torch.Generator().manual_seed(0)
    order = torch.tensor([2, 0, 3, 1])
    masks = made_masks(4, (7, 5), order, g)
    assert [m.shape for m in masks] == [(7, 4), (5, 7), (4, 5)]
    path = masks[2] @ masks[1] @ masks[0]  # paths from input j to output i
    pos = torch.empty(4, dtype=torch.long)
    pos[order] = torch.arange(4)
    assert (path[pos.view(-1, 1) <= pos.view(1, -1)] == 0).all()


@pytest.mark.parametrize("name", ["nade", "made"])
def test_grey_or_dequantised_data_is_refused(name):
    cls = registry.get(name).config_cls
    with pytest.raises(UserError, match="binary images: set data.binarize"):
        registry.build(name, cls(), DataInfo(1, 4, 4))
    with pytest.raises(UserError, match="binary images"):
        registry.build(name, cls(), DataInfo(1, 4, 4, binarized="dynamic", dequantized=True))


@pytest.mark.parametrize("name,setting", [("nade", {"units": 0}), ("nade", {"ordering": "zigzag"}),
                                          ("made", {"masks": 0}), ("made", {"hidden": ()})])
def test_bad_settings_are_refused(name, setting):
    from genlab.config import from_dict

    with pytest.raises(UserError, match=f"model.{next(iter(setting))}"):
        from_dict(registry.get(name).config_cls, setting)


def test_nade_log_likelihood_costs_one_pass():
    """O(HD): the B x D x H activations of one forward pass, no loop over the D conditionals."""
    model = make("nade", (1, 8, 8))
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    chain = torch.zeros(3)
    v = x.flatten(1)
    for d, i in enumerate(model.order.tolist()):  # the same conditionals, one at a time
        a = model.c + v[:, model.order[:d]] @ model.W[:, model.order[:d]].t()
        p = torch.sigmoid(torch.sigmoid(a) @ model.V[i] + model.b[i])
        chain += torch.where(v[:, i] > 0, p.log(), (1 - p).log())
    assert torch.allclose(model.log_prob(x), chain, atol=1e-4)
    assert math.isfinite(float(model.losses(x)["loss"].detach()))
