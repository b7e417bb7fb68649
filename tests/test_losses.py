"""Losses and the softmax family (fastgrad.losses).

Every loss is checked three ways: against a hand derivation, against
centered finite differences, and (where installed) against
torch.nn.functional in float64. Bad targets must raise the documented error
with the offending value in the message.
"""

import math

import numpy as np
import pytest

import fastgrad
from fastgrad import (
    Value,
    bce,
    bce_with_logits,
    cross_entropy,
    cross_entropy_with_logits,
    hinge,
    log_softmax,
    mse,
    softmax,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def analytic(loss_of, xs):
    """(value, gradient) of loss_of(list of Values) at the point xs."""
    vs = [Value(float(x)) for x in xs]
    out = loss_of(vs)
    out.backward()
    return out.data, [v.grad for v in vs]


def centered_differences(loss_of, xs, h=1e-6):
    """d loss / d x_i by (f(x + h e_i) - f(x - h e_i)) / 2h."""
    grads = []
    for i in range(len(xs)):
        plus = [float(x) for x in xs]
        minus = [float(x) for x in xs]
        plus[i] += h
        minus[i] -= h
        fp = loss_of([Value(x) for x in plus]).data
        fm = loss_of([Value(x) for x in minus]).data
        grads.append((fp - fm) / (2 * h))
    return grads


def assert_fd(loss_of, xs, rel=1e-6, abs_=1e-7):
    _, g = analytic(loss_of, xs)
    num = centered_differences(loss_of, xs)
    assert g == pytest.approx(num, rel=rel, abs=abs_)


def torch_grads(torch, fn, xs):
    """(value, grad) of a torch float64 function of a 1-d tensor."""
    t = torch.tensor([float(x) for x in xs], dtype=torch.float64, requires_grad=True)
    out = fn(t)
    out.backward()
    return out.item(), t.grad.tolist()


RNG = np.random.default_rng(1234)
PRED = RNG.uniform(-2, 2, 6).tolist()
TARG = RNG.uniform(-2, 2, 6).tolist()
PROBS = RNG.uniform(0.05, 0.95, 6).tolist()
SOFT = RNG.uniform(0, 1, 6).tolist()
HARD = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
LOGITS = RNG.normal(0, 2, 5).tolist()


# ---------------------------------------------------------------------------
# mse
# ---------------------------------------------------------------------------


def test_mse_value_and_gradient_by_hand():
    ps = [Value(1.0), Value(2.0), Value(4.0)]
    loss = mse(ps, [0.0, 2.0, 1.0])
    assert loss.data == pytest.approx(10.0 / 3.0, rel=1e-15)
    loss.backward()
    # d/dp_i mean((p - t)^2) = 2 (p_i - t_i) / n
    assert [p.grad for p in ps] == pytest.approx([2 / 3, 0.0, 2.0], rel=1e-15)


def test_mse_sum_reduction_and_single_value():
    ps = [Value(1.0), Value(2.0), Value(4.0)]
    assert mse(ps, [0.0, 2.0, 1.0], reduction="sum").data == pytest.approx(10.0)
    p = Value(3.0)
    loss = mse(p, 1.0)
    assert loss.data == 4.0
    loss.backward()
    assert p.grad == 4.0


def test_mse_targets_may_be_values_and_get_gradients():
    p, t = Value(3.0), Value(1.0)
    mse([p], [t]).backward()
    assert p.grad == pytest.approx(4.0)
    assert t.grad == pytest.approx(-4.0)


def test_mse_matches_finite_differences():
    assert_fd(lambda vs: mse(vs, TARG), PRED)
    assert_fd(lambda vs: mse(vs, TARG, reduction="sum"), PRED)


def test_mse_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tt = torch.tensor(TARG, dtype=torch.float64)
    for red in ("mean", "sum"):
        v, g = analytic(lambda vs: mse(vs, TARG, reduction=red), PRED)
        tv, tg = torch_grads(torch, lambda t: F.mse_loss(t, tt, reduction=red), PRED)
        assert v == pytest.approx(tv, rel=1e-13)
        assert g == pytest.approx(tg, rel=1e-13, abs=1e-15)


# ---------------------------------------------------------------------------
# bce
# ---------------------------------------------------------------------------


def test_bce_value_and_gradient_by_hand():
    p = Value(0.8)
    loss = bce(p, 1.0)
    assert loss.data == pytest.approx(-math.log(0.8), rel=1e-14)
    loss.backward()
    assert p.grad == pytest.approx(-1 / 0.8, rel=1e-12)

    q = Value(0.3)
    loss = bce(q, 0.25)   # soft target
    expected = -(0.25 * math.log(0.3) + 0.75 * math.log(0.7))
    assert loss.data == pytest.approx(expected, rel=1e-14)
    loss.backward()
    # d/dp = -(y/p - (1-y)/(1-p))
    assert q.grad == pytest.approx(-(0.25 / 0.3 - 0.75 / 0.7), rel=1e-12)


def test_bce_list_mean():
    ps = [Value(0.9), Value(0.2)]
    loss = bce(ps, [1.0, 0.0])
    assert loss.data == pytest.approx((-math.log(0.9) - math.log(0.8)) / 2, rel=1e-14)


@pytest.mark.parametrize("p,y", [(0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (1.0, 1.0), (0.0, 0.5)])
def test_bce_is_clamped_so_extreme_probabilities_stay_finite(p, y):
    pv = Value(p)
    loss = bce(pv, y)
    assert math.isfinite(loss.data)
    loss.backward()
    assert math.isfinite(pv.grad)
    if p != y:
        # a confident wrong prediction is expensive, not free
        assert loss.data > 10.0
    else:
        assert loss.data < 1e-6


def test_bce_matches_finite_differences():
    assert_fd(lambda vs: bce(vs, SOFT), PROBS)
    assert_fd(lambda vs: bce(vs, HARD, reduction="sum"), PROBS)


def test_bce_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for targets in (SOFT, HARD):
        tt = torch.tensor(targets, dtype=torch.float64)
        for red in ("mean", "sum"):
            v, g = analytic(lambda vs: bce(vs, targets, reduction=red), PROBS)
            tv, tg = torch_grads(
                torch, lambda t: F.binary_cross_entropy(t, tt, reduction=red), PROBS)
            assert v == pytest.approx(tv, rel=1e-13)
            assert g == pytest.approx(tg, rel=1e-12)


@pytest.mark.parametrize("bad", [1.5, -0.25])
def test_bce_rejects_targets_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=str(bad)):
        bce(Value(0.5), bad)
    with pytest.raises(ValueError, match=str(bad)):
        bce_with_logits(Value(0.5), bad)


# ---------------------------------------------------------------------------
# softmax / log_softmax
# ---------------------------------------------------------------------------


def test_softmax_values_by_hand_and_sum_to_one():
    ls = [Value(x) for x in LOGITS]
    ps = softmax(ls)
    assert isinstance(ps, list) and len(ps) == len(LOGITS)
    z = sum(math.exp(x) for x in LOGITS)
    assert [p.data for p in ps] == pytest.approx([math.exp(x) / z for x in LOGITS], rel=1e-13)
    assert math.fsum(p.data for p in ps) == pytest.approx(1.0, abs=1e-15)


def test_softmax_is_stable_at_large_logits():
    ls = [Value(1000.0), Value(-1000.0), Value(0.0)]
    ps = softmax(ls)
    data = [p.data for p in ps]
    assert not any(math.isnan(d) for d in data)
    assert data == pytest.approx([1.0, 0.0, 0.0], abs=1e-300)
    assert math.fsum(data) == pytest.approx(1.0)
    # backward through it stays finite too
    fastgrad.sum([p * w for p, w in zip(ps, (0.5, -1.0, 2.0))]).backward()
    assert all(math.isfinite(v.grad) for v in ls)

    ties = softmax([Value(1000.0), Value(1000.0)])
    assert [p.data for p in ties] == pytest.approx([0.5, 0.5], rel=1e-15)
    low = softmax([Value(-1000.0), Value(-1000.0), Value(-1000.0)])
    assert [p.data for p in low] == pytest.approx([1 / 3] * 3, rel=1e-14)


def test_softmax_gradient_matches_hand_jacobian():
    # d softmax_i / d l_j = s_i (delta_ij - s_j); weight the outputs by w
    w = [0.3, -1.2, 2.0, 0.7, -0.4]
    ls = [Value(x) for x in LOGITS]
    ps = softmax(ls)
    fastgrad.sum([p * wi for p, wi in zip(ps, w)]).backward()
    s = [p.data for p in ps]
    expected = [s[j] * (w[j] - sum(wi * si for wi, si in zip(w, s))) for j in range(len(s))]
    assert [v.grad for v in ls] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_softmax_and_log_softmax_match_finite_differences():
    w = [0.3, -1.2, 2.0, 0.7, -0.4]
    assert_fd(lambda vs: fastgrad.sum([p * wi for p, wi in zip(softmax(vs), w)]), LOGITS)
    assert_fd(lambda vs: fastgrad.sum([p * wi for p, wi in zip(log_softmax(vs), w)]), LOGITS)


def test_log_softmax_equals_log_of_softmax_and_is_stable():
    ls = [Value(x) for x in LOGITS]
    lp = log_softmax(ls)
    assert [v.data for v in lp] == pytest.approx([math.log(p.data) for p in softmax(ls)],
                                                 rel=1e-12)
    big = log_softmax([Value(1000.0), Value(-1000.0)])
    # exact answer [0, -2000]; the naive log(exp(..)) route gives -inf/nan
    assert [v.data for v in big] == pytest.approx([0.0, -2000.0], abs=1e-9)


def test_softmax_and_log_softmax_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = [0.3, -1.2, 2.0, 0.7, -0.4]
    tw = torch.tensor(w, dtype=torch.float64)
    for ours, theirs in ((softmax, F.softmax), (log_softmax, F.log_softmax)):
        ls = [Value(x) for x in LOGITS]
        out = ours(ls)
        t = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
        tout = theirs(t, dim=0)
        assert [v.data for v in out] == pytest.approx(tout.tolist(), rel=1e-13)
        fastgrad.sum([o * wi for o, wi in zip(out, w)]).backward()
        (tout * tw).sum().backward()
        assert [v.grad for v in ls] == pytest.approx(t.grad.tolist(), rel=1e-11, abs=1e-14)
    for big in ([1000.0, -1000.0, 0.0], [-1000.0, -999.0]):
        t = torch.tensor(big, dtype=torch.float64)
        assert [v.data for v in softmax([Value(x) for x in big])] == pytest.approx(
            F.softmax(t, dim=0).tolist(), rel=1e-13, abs=1e-300)
        assert [v.data for v in log_softmax([Value(x) for x in big])] == pytest.approx(
            F.log_softmax(t, dim=0).tolist(), rel=1e-13)


# ---------------------------------------------------------------------------
# cross_entropy (the seed's: probabilities in, -log p_target out)
# ---------------------------------------------------------------------------


def test_cross_entropy_is_minus_log_p_target():
    ps = [Value(0.2), Value(0.5), Value(0.3)]
    loss = cross_entropy(ps, 1)
    assert loss.data == pytest.approx(-math.log(0.5), rel=1e-15)
    loss.backward()
    assert [p.grad for p in ps] == pytest.approx([0.0, -2.0, 0.0], rel=1e-15)
    assert cross_entropy(ps, 2).data == pytest.approx(-math.log(0.3), rel=1e-15)


def test_cross_entropy_accepts_numpy_int_target():
    ps = [Value(0.2), Value(0.5), Value(0.3)]
    assert cross_entropy(ps, np.int64(2)).data == pytest.approx(-math.log(0.3), rel=1e-15)


def test_cross_entropy_of_softmax_matches_finite_differences():
    for t in range(len(LOGITS)):
        assert_fd(lambda vs, t=t: cross_entropy(softmax(vs), t), LOGITS)


def test_cross_entropy_of_softmax_gradient_is_softmax_minus_onehot():
    ls = [Value(x) for x in LOGITS]
    loss = cross_entropy(softmax(ls), 3)
    loss.backward()
    s = [p.data for p in softmax([Value(x) for x in LOGITS])]
    expected = [si - (1.0 if i == 3 else 0.0) for i, si in enumerate(s)]
    assert [v.grad for v in ls] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cross_entropy_matches_torch_nll_of_probabilities():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    probs = [0.1, 0.6, 0.3]
    for target in range(3):
        ps = [Value(p) for p in probs]
        loss = cross_entropy(ps, target)
        loss.backward()
        t = torch.tensor(probs, dtype=torch.float64, requires_grad=True)
        tl = F.nll_loss(torch.log(t).unsqueeze(0), torch.tensor([target]))
        tl.backward()
        assert loss.data == pytest.approx(tl.item(), rel=1e-15)
        assert [p.grad for p in ps] == pytest.approx(t.grad.tolist(), rel=1e-15)


# ---------------------------------------------------------------------------
# cross_entropy_with_logits (fused)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", range(5))
def test_cross_entropy_with_logits_equals_softmax_then_cross_entropy(target):
    a = [Value(x) for x in LOGITS]
    b = [Value(x) for x in LOGITS]
    fused = cross_entropy_with_logits(a, target)
    seed = cross_entropy(softmax(b), target)
    assert fused.data == pytest.approx(seed.data, rel=1e-13)
    fused.backward()
    seed.backward()
    assert [v.grad for v in a] == pytest.approx([v.grad for v in b], rel=1e-12, abs=1e-15)


def test_cross_entropy_with_logits_is_one_node_over_the_logits():
    ls = [Value(x) for x in LOGITS]
    out = cross_entropy_with_logits(ls, 2)
    assert out._prev == set(ls)      # direct parents: exactly the logits
    assert out._op                   # an op name, not a leaf


def test_cross_entropy_with_logits_is_stable_at_large_logits():
    ls = [Value(1000.0), Value(-1000.0), Value(0.0)]
    loss = cross_entropy_with_logits(ls, 1)
    assert loss.data == pytest.approx(2000.0, rel=1e-15)
    loss.backward()
    assert [v.grad for v in ls] == pytest.approx([1.0, -1.0, 0.0], abs=1e-300)
    ok = cross_entropy_with_logits([Value(1000.0), Value(-1000.0)], 0)
    assert ok.data == pytest.approx(0.0, abs=1e-300)


def test_cross_entropy_with_logits_matches_finite_differences():
    for t in (0, 4):
        assert_fd(lambda vs, t=t: cross_entropy_with_logits(vs, t), LOGITS)


def test_cross_entropy_with_logits_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for logits in (LOGITS, [1000.0, -1000.0, 3.0], [50.0, 51.0, -20.0, 0.0]):
        for target in range(len(logits)):
            v, g = analytic(lambda vs: cross_entropy_with_logits(vs, target), logits)
            tv, tg = torch_grads(
                torch, lambda t: F.cross_entropy(t.unsqueeze(0), torch.tensor([target])),
                logits)
            assert v == pytest.approx(tv, rel=1e-13, abs=1e-300)
            assert g == pytest.approx(tg, rel=1e-12, abs=1e-300)


# ---------------------------------------------------------------------------
# bce_with_logits (fused)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("x", [-4.0, -0.7, 0.0, 0.3, 2.5, 9.0])
@pytest.mark.parametrize("y", [0.0, 0.2, 1.0])
def test_bce_with_logits_equals_bce_of_sigmoid(x, y):
    a, b = Value(x), Value(x)
    fused = bce_with_logits(a, y)
    plain = bce(b.sigmoid(), y)
    assert fused.data == pytest.approx(plain.data, rel=1e-9)
    fused.backward()
    plain.backward()
    assert a.grad == pytest.approx(b.grad, rel=1e-9)
    # and the gradient is sigmoid(x) - y
    assert a.grad == pytest.approx(1 / (1 + math.exp(-x)) - y, rel=1e-13, abs=1e-16)


def test_bce_with_logits_list_reductions():
    xs = [Value(x) for x in PRED]
    mean = bce_with_logits(xs, HARD)
    total = bce_with_logits(xs, HARD, reduction="sum")
    each = [bce_with_logits(Value(x), y).data for x, y in zip(PRED, HARD)]
    assert total.data == pytest.approx(math.fsum(each), rel=1e-14)
    assert mean.data == pytest.approx(math.fsum(each) / len(each), rel=1e-14)


@pytest.mark.parametrize("x,y,value,grad", [
    (1000.0, 0.0, 1000.0, 1.0),
    (-1000.0, 1.0, 1000.0, -1.0),
    (1000.0, 1.0, 0.0, 0.0),
    (-1000.0, 0.0, 0.0, 0.0),
])
def test_bce_with_logits_is_stable_at_large_logits(x, y, value, grad):
    v = Value(x)
    loss = bce_with_logits(v, y)
    assert loss.data == pytest.approx(value, abs=1e-12)
    loss.backward()
    assert v.grad == pytest.approx(grad, abs=1e-12)


def test_bce_with_logits_matches_finite_differences():
    assert_fd(lambda vs: bce_with_logits(vs, SOFT), PRED)
    assert_fd(lambda vs: bce_with_logits(vs, HARD, reduction="sum"), PRED)


def test_bce_with_logits_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits = PRED + [1000.0, -1000.0]
    for targets in (SOFT + [0.0, 1.0], HARD + [1.0, 0.0], HARD + [0.0, 1.0]):
        tt = torch.tensor(targets, dtype=torch.float64)
        for red in ("mean", "sum"):
            v, g = analytic(lambda vs: bce_with_logits(vs, targets, reduction=red), logits)
            tv, tg = torch_grads(
                torch, lambda t: F.binary_cross_entropy_with_logits(t, tt, reduction=red),
                logits)
            assert v == pytest.approx(tv, rel=1e-13)
            assert g == pytest.approx(tg, rel=1e-12, abs=1e-300)


# ---------------------------------------------------------------------------
# hinge (micrograd's max-margin loss)
# ---------------------------------------------------------------------------

SCORES = [0.5, -1.5, 2.0, 0.9, -0.2, 1.1]
LABELS = [1, 1, -1, -1, -1, 1]


def test_hinge_equals_hand_built_max_margin():
    a = [Value(s) for s in SCORES]
    b = [Value(s) for s in SCORES]
    ours = hinge(a, LABELS)
    # the demo's formula, written with plain Value ops
    losses = [(1 + -yi * si).relu() for yi, si in zip(LABELS, b)]
    ref = sum(losses) * (1.0 / len(losses))
    assert ours.data == pytest.approx(ref.data, rel=1e-15)
    ours.backward()
    ref.backward()
    assert [v.grad for v in a] == pytest.approx([v.grad for v in b], rel=1e-15)
    # by hand: margins 0.5, 2.5, 3.0, 1.9, 0.8, -0.1 -> relu -> mean
    assert ours.data == pytest.approx((0.5 + 2.5 + 3.0 + 1.9 + 0.8 + 0.0) / 6, rel=1e-14)
    assert hinge(a, LABELS, reduction="sum").data == pytest.approx(8.7, rel=1e-14)


def test_hinge_equals_micrograd_max_margin():
    mg = pytest.importorskip("micrograd.engine")
    ms = [mg.Value(s) for s in SCORES]
    losses = [(1 + -yi * si).relu() for yi, si in zip(LABELS, ms)]
    ref = sum(losses) * (1.0 / len(losses))
    ref.backward()
    fs = [Value(s) for s in SCORES]
    ours = hinge(fs, LABELS)
    ours.backward()
    assert ours.data == pytest.approx(ref.data, rel=1e-15)
    assert [v.grad for v in fs] == pytest.approx([v.grad for v in ms], rel=1e-15)


def test_hinge_matches_torch():
    torch = pytest.importorskip("torch")
    ty = torch.tensor(LABELS, dtype=torch.float64)
    v, g = analytic(lambda vs: hinge(vs, LABELS), SCORES)
    tv, tg = torch_grads(torch, lambda t: torch.relu(1 - ty * t).mean(), SCORES)
    assert v == pytest.approx(tv, rel=1e-14)
    assert g == pytest.approx(tg, rel=1e-14)


def test_hinge_matches_finite_differences():
    # every margin is at least 0.1 away from the kink at 0
    assert_fd(lambda vs: hinge(vs, LABELS), SCORES)
    assert_fd(lambda vs: hinge(vs, LABELS, reduction="sum"), SCORES)


def test_hinge_rejects_labels_other_than_plus_minus_one():
    with pytest.raises(ValueError, match="0"):
        hinge([Value(0.5), Value(0.1)], [1, 0])


# ---------------------------------------------------------------------------
# bad targets and arguments: the error type, and the value in the message
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [3, 7, -1])
def test_class_target_out_of_range_is_index_error(target):
    ps = [Value(0.2), Value(0.5), Value(0.3)]
    with pytest.raises(IndexError, match=str(target)):
        cross_entropy(ps, target)
    with pytest.raises(IndexError, match=str(target)):
        cross_entropy_with_logits(ps, target)


@pytest.mark.parametrize("target", [1.0, "1", None, True, 1.5])
def test_class_target_not_an_int_is_type_error(target):
    ps = [Value(0.2), Value(0.5), Value(0.3)]
    with pytest.raises(TypeError, match=repr(target).replace(".", r"\.")):
        cross_entropy(ps, target)
    with pytest.raises(TypeError, match=repr(target).replace(".", r"\.")):
        cross_entropy_with_logits(ps, target)


@pytest.mark.parametrize("fn,targets", [
    (mse, [0.0, 1.0]),
    (bce, [0.0, 1.0]),
    (bce_with_logits, [0.0, 1.0]),
    (hinge, [1, -1]),
])
def test_length_mismatch_is_value_error_naming_both_lengths(fn, targets):
    ps = [Value(0.2), Value(0.5), Value(0.3)]
    with pytest.raises(ValueError) as info:
        fn(ps, targets)
    assert "3" in str(info.value) and "2" in str(info.value)


@pytest.mark.parametrize("fn,targets", [
    (mse, [0.0, 1.0]),
    (bce, [0.0, 1.0]),
    (bce_with_logits, [0.0, 1.0]),
    (hinge, [1, -1]),
])
@pytest.mark.parametrize("reduction", ["avg", "none", None])
def test_bad_reduction_is_value_error_quoting_it(fn, targets, reduction):
    ps = [Value(0.2), Value(0.5)]
    with pytest.raises(ValueError, match=repr(reduction)):
        fn(ps, targets, reduction=reduction)


def test_empty_logits_are_rejected():
    for fn in (softmax, log_softmax):
        with pytest.raises((TypeError, ValueError)):
            fn([])
    with pytest.raises((TypeError, ValueError, IndexError)):
        cross_entropy_with_logits([], 0)


def test_bce_keeps_pushing_a_saturated_wrong_prediction_back():
    """bce follows PyTorch's BCELoss: logs bounded at -100 and the gradient
    (p - y) / max(p (1 - p), 1e-12), so sigmoid(28) against target 0 still
    gets about 0.69 of gradient on the logit (clamping p gave 0)."""
    for logit, target in [(28.0, 0.0), (-28.0, 1.0), (40.0, 0.0), (-3.0, 1.0)]:
        z = Value(logit)
        p = z.sigmoid()
        loss = fastgrad.bce(p, target)
        loss.backward()
        pd = p.data
        expected_loss = -(target * max(math.log(pd) if pd > 0 else -math.inf, -100.0)
                          + (1 - target) * max(math.log(1 - pd) if pd < 1 else -math.inf, -100.0))
        assert loss.data == pytest.approx(expected_loss, rel=1e-12)
        dldp = (pd - target) / max(pd * (1 - pd), 1e-12)
        assert z.grad == pytest.approx(dldp * pd * (1 - pd), rel=1e-9)
        if abs(logit) < 30:
            assert abs(z.grad) > 0.5
    for p, target in [(0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (1.0, 1.0)]:
        v = Value(p)
        loss = fastgrad.bce(v, target)
        loss.backward()
        assert math.isfinite(loss.data) and math.isfinite(v.grad)
        assert loss.data == (100.0 if p != target else 0.0)


def test_bce_saturated_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    for logit, target in [(28.0, 0.0), (-28.0, 1.0), (40.0, 0.0), (5.0, 0.3)]:
        z = Value(logit)
        loss = fastgrad.bce(z.sigmoid(), target)
        loss.backward()
        tz = torch.tensor(logit, dtype=torch.float64, requires_grad=True)
        tl = torch.nn.functional.binary_cross_entropy(
            torch.sigmoid(tz), torch.tensor(target, dtype=torch.float64))
        tl.backward()
        assert loss.data == pytest.approx(tl.item(), rel=1e-12, abs=1e-12)
        # 1 - p cancels at p ~ 1 - 7e-13, so both engines round it a little
        # differently: agreement to 1e-6 is what float64 allows here
        assert z.grad == pytest.approx(tz.grad.item(), rel=1e-6, abs=1e-15)


def test_bce_refuses_a_probability_outside_0_1():
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\], got 1.5"):
        fastgrad.bce(Value(1.5), 1.0)
    with pytest.raises(ValueError, match="got nan"):
        fastgrad.bce(Value(float("nan")), 0.0)
