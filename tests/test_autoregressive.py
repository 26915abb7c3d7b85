"""Autoregressive models: causality from gradients, the blind spot, heads that normalise, exact sampling reuse,
completion, and refusals."""
from __future__ import annotations

import math

import pytest
import torch
from tqdm import tqdm

from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.autoregressive import Autoregressive
from genlab.nn.heads import HEADS, LogisticMixture, discretized_logistic_mixture_log_prob
from genlab.nn.masked import causal_mask

AR_MODELS = [n for n in registry.names() if issubclass(registry.get(n).model_cls, Autoregressive)]
AR_CASES = [("pixelcnn", {}), ("gated_pixelcnn", {}), ("gated_pixelcnn", {"conditional": True}),
            ("pixelrnn", {"variant": "row_lstm"}), ("pixelrnn", {"variant": "diagonal_bilstm"})]


def make(name, shape=(1, 6, 6), binarized="dynamic", seed=0, **fields):
    torch.manual_seed(seed)
    cfg = registry.get(name).config_cls(**{"width": 6, "layers": 2, **fields})
    return registry.build(name, cfg, DataInfo(*shape, num_classes=3, binarized=binarized)).double()


def test_every_autoregressive_model_is_covered():
    assert {n for n, _ in AR_CASES} == set(AR_MODELS)


def _jacobian(model, shape, y=None, draws=3):
    """|d(network outputs)/d(input)| summed over a few random images (a ReLU may close a path for one input):
    (C * P * H * W) x (C * H * W), both flattened channel-major."""
    out = lambda v: model.network(v, y)  # noqa: E731
    torch.manual_seed(1)
    return sum(torch.autograd.functional.jacobian(out, torch.randn(1, *shape, dtype=torch.float64),
                                                  vectorize=True).abs()
               for _ in range(draws)).reshape(-1, math.prod(shape))


def _order(c, h, w):
    """Generation position of sub-pixel (channel, row, column): raster over pixels, then channels."""
    idx = torch.arange(c * h * w).view(c, h, w)
    ch, row, col = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    pos = (row * w + col) * c + ch
    return idx.flatten(), pos.flatten()


@pytest.mark.parametrize("name,fields", AR_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("colours", [1, 3])
def test_causality_from_gradients(name, fields, colours):
    """Output for sub-pixel s has zero gradient w.r.t. every input at or after s in the generation order
    (raster, then R, G, B), and a non-zero gradient w.r.t. some earlier input."""
    shape = (colours, 5, 5)
    model = make(name, shape, head="logistic_mixture", mixtures=2, width=12, **fields)
    y = torch.tensor([1]) if fields.get("conditional") else None
    jac = _jacobian(model, shape, y)  # (C * P * H * W) x (C * H * W)
    c, h, w = shape
    p = model.head.params
    _, pos = _order(c, h, w)  # pos[k]: generation position of input sub-pixel k (flattened c, h, w)
    jac = jac.view(c, p, h * w, c * h * w)  # outputs grouped by the channel they predict
    out_pos = pos.view(c, h * w)
    for ch in range(c):
        for k in range(h * w):
            g = jac[ch, :, k].sum(0)  # C * H * W
            here = out_pos[ch, k]
            assert torch.all(g[pos >= here] == 0), f"output {ch},{k} sees the future"
            if here > 0:
                assert torch.any(g[pos < here] != 0), f"output {ch},{k} sees nothing of the past"


def _seen(model, shape, row, col):
    """Which input pixels reach the output at (row, col) of a one-channel image: H x W booleans."""
    jac = _jacobian(model, shape).view(shape[1], shape[2], *shape[1:])
    return jac[row, col] > 0


def test_pixelcnn_blind_spot_and_gated_full_context():
    """Stacked 3x3 masks cannot reach pixels up and to the right (the blind spot); the gated stacks reach every
    earlier pixel once deep enough (first layer 7 wide, then +1 column each way per layer)."""
    shape = (1, 8, 8)
    earlier = torch.zeros(8, 8, dtype=torch.bool)
    earlier[:7] = True  # output at (7, 0): every pixel of the rows above is earlier
    plain = _seen(make("pixelcnn", shape, layers=3), shape, 7, 0)
    assert plain[6, :4].all() and not plain[6, 4:].any(), "the blind spot: row 6, columns 4.. are unseen"
    gated = _seen(make("gated_pixelcnn", shape, layers=5), shape, 7, 0)
    assert torch.equal(gated, earlier)
    diag = _seen(make("pixelrnn", shape, variant="diagonal_bilstm"), shape, 7, 0)
    # the whole past but one pixel: (6, 7) enters the stream only at row 7 (the 7x7 mask-A kernel, columns 4..7),
    # which the left-to-right LSTM at (7, 0) cannot read and the shifted right-to-left one has not yet seen
    earlier[6, 7] = False
    assert torch.equal(diag, earlier), "the Diagonal BiLSTM's context is the past but the row above's last pixel"


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn"])
def test_receptive_rows_give_exact_cropped_rows(name):
    """Sampling computes row i from only `receptive_rows` rows above it; that must equal the full network."""
    shape = (3, 12, 5)
    model = make(name, shape, binarized="none", head="logistic_mixture", mixtures=2, layers=3, width=24)
    x = torch.randn(4, *shape, dtype=torch.float64)
    full = model.network(x, None)
    r = model.receptive_rows
    for i in range(r + 1, shape[1]):
        crop = model.network(x[:, :, i - r:i + 1], None)[:, :, -1]
        torch.testing.assert_close(crop, full[:, :, i], rtol=0, atol=1e-12)
    # one row fewer is not enough: the bound is tight
    i = shape[1] - 1
    short = model.network(x[:, :, i - r + 1:i + 1], None)[:, :, -1]
    assert not torch.allclose(short, full[:, :, i])


def test_discretized_logistic_mixture_sums_to_one():
    torch.manual_seed(0)
    levels = torch.arange(256, dtype=torch.float64)
    x = (levels / 255 * 2 - 1).view(256, 1)
    for log_s_scale in (-6.0, -3.0, 0.0):  # sharp components (one bin), medium, wide (mass in the edge bins)
        k = 4
        params = [torch.randn(1, k, 1, dtype=torch.float64).expand(256, k, 1) for _ in range(3)]
        logit_pi, mu, log_s = params[0], params[1], params[2] * 0.1 + log_s_scale
        p = discretized_logistic_mixture_log_prob(x, logit_pi, mu, log_s).exp()
        torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-9)
        assert torch.all(p > 0)


def test_logistic_mixture_single_component_matches_logistic_cdf():
    mu, s = torch.tensor(0.1), torch.tensor(0.05)
    x = torch.tensor([2 * 140 / 255 - 1])  # an interior level
    b = 1 / 255
    cdf = lambda v: torch.sigmoid((v - mu) / s)  # noqa: E731
    want = torch.log(cdf(x + b) - cdf(x - b))
    got = discretized_logistic_mixture_log_prob(x, torch.zeros(1, 1), mu.view(1, 1), s.log().view(1, 1))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_normalise_over_values(head):
    """Summing p(value) over every value a sub-pixel can take gives 1 (a 1x1 image, one channel)."""
    torch.manual_seed(0)
    h = HEADS[head](type("C", (), {"mixtures": 3}))
    values = torch.tensor([0.0, 1.0]) if head == "bernoulli" else torch.arange(256) / 255
    out = torch.randn(1, h.params, 1, 1).expand(len(values), -1, -1, -1)
    t = h.target(values.view(-1, 1, 1, 1))
    total = h.log_prob(out, t).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0), rtol=0, atol=1e-5)


def test_head_samples_follow_their_probabilities():
    """Draws from a logistic-mixture head land on levels with the frequencies its log_prob gives."""
    torch.manual_seed(0)
    h = LogisticMixture(2)
    p = torch.tensor([[0.3, -0.2, -0.5, 0.4, -1.5, -2.0]])  # pi logits, mu, log s
    g = torch.Generator().manual_seed(1)
    draws = h.sample(p.expand(400_000, -1), g)
    levels = (draws * 255).round().long()
    freq = torch.bincount(levels, minlength=256).float() / len(levels)
    t = h.target(torch.arange(256).float().view(-1, 1, 1, 1) / 255)
    prob = h.log_prob(p.view(1, 6, 1, 1).expand(256, -1, -1, -1), t).exp().flatten()
    assert (freq - prob).abs().sum() < 0.03  # L1 distance; sampling noise alone gives ~0.02 at 400k draws


def test_mask_centre_taps_follow_colour_order():
    m = causal_mask(6, 3, 3, 3, "A", colours=3)
    centre = m[:, :, 1, 1]  # out feature groups 0,0,1,1,2,2 vs input channels R, G, B
    assert centre.tolist() == [[0, 0, 0]] * 2 + [[1, 0, 0]] * 2 + [[1, 1, 0]] * 2
    assert torch.all(m[:, :, 2] == 0) and torch.all(m[:, :, 1, 2] == 0) and torch.all(m[:, :, 0] == 1)
    b = causal_mask(6, 3, 1, 1, "B", colours=3)[:, :, 0, 0]
    assert b.tolist() == [[1, 0, 0]] * 2 + [[1, 1, 0]] * 2 + [[1, 1, 1]] * 2


@pytest.mark.parametrize("name,fields", [("pixelcnn", {}), ("pixelrnn", {"variant": "row_lstm"})], ids=str)
def test_log_prob_is_the_sum_of_the_sampling_conditionals(name, fields):
    """log p(x) from one parallel pass equals the chain of conditionals the sampler uses, pixel by pixel."""
    shape = (1, 4, 4)
    model = make(name, shape, **fields)
    x = torch.bernoulli(torch.full((2, *shape), 0.5, dtype=torch.float64))
    chain = torch.zeros(2, dtype=torch.float64)
    for i in range(4):
        for j in range(4):
            masked = x.clone()
            masked.view(2, -1)[:, i * 4 + j:] = 0  # the future is unknown to the sampler
            logit = model.network(masked * 2 - 1, None)[:, 0, i, j]
            chain += torch.where(x[:, 0, i, j] > 0, torch.nn.functional.logsigmoid(logit),
                                 torch.nn.functional.logsigmoid(-logit))
    torch.testing.assert_close(model.log_prob(x), chain)


@pytest.mark.parametrize("shape,fields", [((1, 6, 5), {}), ((3, 5, 4), {"binarized": "none", "head": "categorical"})],
                         ids=["grey", "rgb"])
def test_the_diagonal_bilstm_cursor_draws_what_the_full_passes_draw(shape, fields):
    """PixelRNN's incremental sampler (one cell step per pixel and layer, one right-to-left sweep per row) must be
    exact: from the same generator it draws the very images that a full network pass per sub-pixel draws, when
    sampling and when completing kept rows. The weights are pushed off their initialisation so every state
    matters, including the padding's bias-driven edge states."""
    model = make("pixelrnn", shape, variant="diagonal_bilstm", width=8, layers=3, **fields).float()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    def full(v, start):  # the generic sampler: a network pass per sub-pixel
        with torch.no_grad(), tqdm(disable=True) as bar:
            return Autoregressive._draw(model, v, start, torch.Generator().manual_seed(1), None, bar)

    drawn = model.sample(16, torch.Generator().manual_seed(1))
    assert torch.equal(drawn, full(torch.zeros(16, *shape), 0))
    assert 0 < drawn.mean() < 1  # not a degenerate draw that any sampler would match
    x = drawn.flip(0)
    kept = model.complete(x, 2, torch.Generator().manual_seed(1))
    assert torch.equal(kept, full(model.head.unit(model._targets(x)[0]), 2))
    assert torch.equal(kept[:, :, :2], x[:, :, :2]) and not torch.equal(kept, x)


def test_complete_keeps_the_top_rows_and_is_seeded():
    shape = (1, 6, 6)
    model = make("gated_pixelcnn", shape).float()
    x = torch.bernoulli(torch.full((3, *shape), 0.5))
    a = model.complete(x, 3, torch.Generator().manual_seed(0))
    b = model.complete(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.equal(a[:, :, :3], x[:, :, :3])
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(UserError, match="rows to keep"):
        model.complete(x, 6)


def test_sample_in_data_range_for_each_head():
    shape = (3, 4, 4)
    for head, binarized in (("categorical", "none"), ("logistic_mixture", "none"), ("bernoulli", "dynamic")):
        torch.manual_seed(0)
        cfg = registry.get("pixelcnn").config_cls(width=6, layers=1, head=head, mixtures=2)
        model = registry.build("pixelcnn", cfg, DataInfo(*shape, range="-11", binarized=binarized))
        s = model.sample(2, torch.Generator().manual_seed(0))
        assert s.shape == (2, *shape) and s.min() >= -1 and s.max() <= 1
        levels = (s + 1) / 2 * (1 if head == "bernoulli" else 255)
        torch.testing.assert_close(levels, levels.round())  # only values the head can score


def test_training_lowers_the_nll():
    torch.manual_seed(0)
    model = make("pixelcnn", (1, 6, 6)).float()
    x = torch.zeros(16, 1, 6, 6)
    x[:, :, :, ::2] = 1  # stripes: a strongly predictable pattern
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = float(model.losses(x)["loss"].detach())
    for _ in range(30):
        loss = model.losses(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.losses(x)["loss"].detach()) < 0.2 * first


def test_refusals():
    with pytest.raises(UserError, match="binarise"):
        make("pixelcnn", binarized="none", head="bernoulli")
    with pytest.raises(UserError, match="dequantize"):
        registry.build("pixelcnn", registry.get("pixelcnn").config_cls(), DataInfo(1, 8, 8, dequantized=True))
    with pytest.raises(UserError, match="odd"):
        make("pixelcnn", kernel=4)
    with pytest.raises(UserError, match="labelled"):
        registry.build("gated_pixelcnn", registry.get("gated_pixelcnn").config_cls(conditional=True), DataInfo(1, 8, 8))
    with pytest.raises(UserError, match="model.variant"):
        registry.get("pixelrnn").config_cls(variant="grid_lstm").validate()


def test_skew_shifts_rows_and_unskew_inverts_it():
    from genlab.models.pixelrnn import skew, unskew

    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4) + 1
    s = skew(x)
    assert s.shape == (1, 2, 3, 6)
    for i in range(3):
        assert torch.equal(s[0, :, i, i:i + 4], x[0, :, i])
        assert torch.all(s[0, :, i, :i] == 0) and torch.all(s[0, :, i, i + 4:] == 0)
    assert torch.equal(unskew(s, 4), x)
