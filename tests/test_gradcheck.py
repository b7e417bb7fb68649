"""numerical_grad and gradcheck (fastgrad.gradcheck)."""

import math

import pytest

import fastgrad
from fastgrad import Value
from fastgrad.gradcheck import GradcheckError, GradcheckResult, gradcheck, numerical_grad


class TinyModule:
    """A stand-in Module (nn.py is written elsewhere): parameters() and named_parameters()."""

    def __init__(self):
        self.w = Value(0.7)
        self.b = Value(-0.2)

    def parameters(self):
        return [self.w, self.b]

    def named_parameters(self):
        return [("w", self.w), ("b", self.b)]

    def __call__(self, x):
        return (self.w * x + self.b).tanh()


# --- numerical_grad against hand derivatives -------------------------------------

@pytest.mark.parametrize("a0, b0", [(0.3, -1.2), (-2.0, 0.5), (1.5, 3.0)])
def test_numerical_grad_matches_hand_derivatives(a0, b0):
    a, b = Value(a0), Value(b0)
    # f = a*b + tanh(a):  df/da = b + 1 - tanh(a)^2,  df/db = a
    ga, gb = numerical_grad(lambda: a * b + a.tanh(), [a, b])
    assert ga == pytest.approx(b0 + 1 - math.tanh(a0) ** 2, abs=1e-8)
    assert gb == pytest.approx(a0, abs=1e-8)


def test_numerical_grad_more_functions():
    x, y = Value(0.8), Value(1.7)
    # f = exp(x) / y + log(y) * x**3
    gx, gy = numerical_grad(lambda: x.exp() / y + y.log() * x**3, [x, y])
    assert gx == pytest.approx(math.exp(0.8) / 1.7 + math.log(1.7) * 3 * 0.8**2, rel=1e-7)
    assert gy == pytest.approx(-math.exp(0.8) / 1.7**2 + 0.8**3 / 1.7, rel=1e-7)
    # f = sigmoid(x * y) + relu(x - y) with x < y (relu branch off)
    s = 1 / (1 + math.exp(-0.8 * 1.7))
    gx, gy = numerical_grad(lambda: (x * y).sigmoid() + (x - y).relu(), [x, y])
    assert gx == pytest.approx(s * (1 - s) * 1.7, rel=1e-7)
    assert gy == pytest.approx(s * (1 - s) * 0.8, rel=1e-7)


def test_numerical_grad_of_unused_parameter_is_zero_and_eps_matters():
    a, c = Value(2.0), Value(5.0)
    assert numerical_grad(lambda: a * a, [a, c]) == [pytest.approx(4.0, abs=1e-8), 0.0]
    # a*a is quadratic, so centered differences are exact up to rounding for any eps;
    # a**3 is not: the error is eps**2, visible with a large step.
    assert numerical_grad(lambda: a**3, [a], eps=0.5)[0] == pytest.approx(12.0 + 0.25, abs=1e-12)


def test_numerical_grad_accepts_named_pairs_modules_and_generators():
    m = TinyModule()
    x = Value(1.3)
    f = lambda: m(x)  # noqa: E731
    expected = numerical_grad(f, [m.w, m.b])
    assert numerical_grad(f, m) == expected
    assert numerical_grad(f, m.named_parameters()) == expected
    assert numerical_grad(f, (p for p in m.parameters())) == expected
    t = math.tanh(0.7 * 1.3 - 0.2)
    assert expected[0] == pytest.approx((1 - t * t) * 1.3, rel=1e-7)


def test_numerical_grad_does_not_build_a_graph():
    a = Value(1.0)
    grad_modes = []

    def f():
        grad_modes.append(fastgrad.is_grad_enabled())
        return a * a

    numerical_grad(f, [a])
    assert grad_modes == [False, False]


# --- parameters restored -----------------------------------------------------------

AWKWARD = [0.1, 1.0 / 3.0, -7.123456789012345e-5, 1e8, 5e-324, -0.0, 123456.789]


def test_params_restored_bit_exactly_and_grads_untouched():
    ps = [Value(v) for v in AWKWARD]
    for i, p in enumerate(ps):
        p.grad = i + 0.25
    numerical_grad(lambda: fastgrad.sum([p * p for p in ps]), ps)
    assert [p.data.hex() for p in ps] == [float(v).hex() for v in AWKWARD]
    assert [p.grad for p in ps] == [i + 0.25 for i in range(len(ps))]


def test_a_step_too_small_for_the_value_is_refused():
    big, small = Value(1e20), Value(0.5)  # 1e20 +- 1e-6 == 1e20
    with pytest.raises(ValueError, match=r"eps=1e-06.*params\[1\].*1e\+20"):
        numerical_grad(lambda: small * big, [small, big])
    assert (small.data, big.data) == (0.5, 1e20)
    assert numerical_grad(lambda: small * big, [small, big], eps=1e6) == pytest.approx([1e20, 0.5])


def test_params_restored_when_f_raises():
    ps = [Value(v) for v in AWKWARD]
    calls = []

    def f():
        calls.append([p.data for p in ps])
        if len(calls) == 4:  # fail while the second parameter is nudged
            raise RuntimeError("boom")
        return fastgrad.sum(ps)

    with pytest.raises(RuntimeError, match="boom"):
        numerical_grad(f, ps)
    assert calls[3][1] != AWKWARD[1]  # the failure really happened mid-perturbation
    assert [p.data.hex() for p in ps] == [float(v).hex() for v in AWKWARD]


def test_params_restored_when_f_returns_a_non_value():
    a = Value(0.1)
    calls = iter([lambda: a * 2, lambda: 3.0])
    with pytest.raises(TypeError, match="float"):
        numerical_grad(lambda: next(calls)(), [a])
    assert a.data.hex() == (0.1).hex()


# --- gradcheck passes on correct gradients -------------------------------------------

def test_gradcheck_passes_on_correct_gradients():
    a, b, c = Value(0.3), Value(-1.2), Value(2.5)
    f = lambda: (a * b + a.tanh()) * c.exp() / (b**2 + 1) + (c - a).relu().log()  # noqa: E731
    result = gradcheck(f, [a, b, c])
    assert isinstance(result, GradcheckResult)
    assert result.ok and bool(result)
    assert result.max_abs_diff < 1e-6
    assert len(result.analytical) == len(result.numerical) == 3
    assert len(result.worst) == 1  # the parameter closest to failing
    w = result.worst[0]
    ratios = [abs(x - n) / (1e-5 + 1e-3 * abs(n)) for x, n in zip(result.analytical, result.numerical)]
    assert w.index == ratios.index(max(ratios))
    assert result.max_abs_diff == max(abs(x - n) for x, n in zip(result.analytical, result.numerical))
    assert w.analytical == result.analytical[w.index] and w.numerical == result.numerical[w.index]


def test_gradcheck_on_a_module_and_fused_ops():
    m = TinyModule()
    xs = [Value(0.4), Value(-0.9), Value(1.1)]
    ws = [Value(0.2), Value(-0.5), Value(0.3)]
    assert gradcheck(lambda: m(fastgrad.dot(ws, xs)) ** 2, list(m.parameters()) + ws)
    assert gradcheck(lambda: fastgrad.sum(m(x) for x in xs), m)


def test_gradcheck_runs_with_grad_enabled_even_inside_no_grad():
    a = Value(1.5)
    with fastgrad.no_grad():
        assert gradcheck(lambda: a * a.sigmoid(), [a])


# --- gradcheck fails on wrong gradients ------------------------------------------------

def test_gradcheck_raises_on_a_broken_graph_naming_the_parameter():
    a, b = Value(0.5), Value(-1.5)
    # The value is a*b**2, but b.data is a constant to backward: d/db comes out a*b, not 2ab.
    broken = lambda: a * b.data * b  # noqa: E731
    with pytest.raises(GradcheckError) as info:
        gradcheck(broken, [("a", a), ("b", b)])
    message = str(info.value)
    assert "b (index 1)" in message and "a (index 0)" not in message
    assert repr(0.5 * -1.5) in message  # analytical a*b
    assert "numerical=-1.5" in message  # numerical 2ab = -1.5 (to rounding)
    assert isinstance(info.value, RuntimeError)
    result = info.value.result
    assert not result.ok
    assert [m.name for m in result.worst] == ["b"]
    assert result.worst[0].analytical == pytest.approx(-0.75)
    assert result.worst[0].numerical == pytest.approx(-1.5, abs=1e-8)
    assert result.max_abs_diff == pytest.approx(0.75, abs=1e-8)
    # the honest function passes
    assert gradcheck(lambda: a * b * b, [("a", a), ("b", b)])


def test_gradcheck_fails_at_a_kink():
    # relu at 0: backward uses the subgradient 0, centered differences see 1/2.
    x = Value(0.0)
    result = gradcheck(lambda: x.relu(), [x], raise_exception=False)
    assert not result and not result.ok
    assert result.analytical == [0.0]
    assert result.numerical == [pytest.approx(0.5)]
    with pytest.raises(GradcheckError, match=r"params\[0\]"):
        gradcheck(lambda: x.relu(), [x])


def test_gradcheck_names_module_parameters():
    m = TinyModule()
    with pytest.raises(GradcheckError, match=r"w \(index 0\)") as info:
        gradcheck(lambda: m.w * m.w.data + m.b, m)  # d/dw is w, not 2w
    assert [e.name for e in info.value.result.worst] == ["w"]


def test_gradcheck_lists_failures_worst_first():
    ps = [Value(float(i + 1)) for i in range(8)]
    # d/dp_i of sum(p_i**2) is 2 p_i; cutting the graph through .data halves it: gaps p_i
    result = gradcheck(lambda: fastgrad.sum([p * p.data for p in ps]), ps, raise_exception=False)
    assert [e.index for e in result.worst] == [7, 6, 5, 4, 3, 2, 1, 0]
    with pytest.raises(GradcheckError, match="8 of 8") as info:
        gradcheck(lambda: fastgrad.sum([p * p.data for p in ps]), ps)
    assert "and 3 more" in str(info.value)


def test_nan_gradients_fail():
    x = Value(-1.0)
    result = gradcheck(lambda: x.log(), [x], raise_exception=False)  # log(-1) = nan
    assert not result.ok
    assert math.isnan(result.max_abs_diff)
    # a NaN ranks worse than any finite gap: sqrt at 0 is NaN one step to the left
    x, y = Value(0.0), Value(3.0)
    result = gradcheck(lambda: x**0.5 + y * y.data, [y, x], raise_exception=False)
    assert math.isnan(result.numerical[1]) and result.numerical[0] == pytest.approx(6.0)
    assert [e.index for e in result.worst] == [1, 0]
    assert math.isnan(result.worst[0].abs_diff) and result.worst[1].abs_diff == pytest.approx(3.0)


def test_tolerances_decide():
    a = Value(1.0)
    # value 1.001 a**2: numerical 2.002; half of the 0.001 term is cut from the graph,
    # so analytical is 2.001 -- a gap of 0.001.
    g = lambda: a * a.data * 0.001 + a * a  # noqa: E731
    assert not gradcheck(g, [a], atol=0.0, rtol=1e-4, raise_exception=False)
    assert gradcheck(g, [a], atol=0.0, rtol=1e-3, raise_exception=False)  # 0.001 <= 0.002
    assert gradcheck(g, [a], atol=2e-3, rtol=0.0, raise_exception=False)


# --- gradcheck leaves the parameters alone -------------------------------------------------

def test_gradcheck_restores_grads_and_data():
    a, b = Value(0.3), Value(-1.2)
    a.grad, b.grad = 10.0, -3.5  # a training loop's accumulated gradients
    gradcheck(lambda: a * b + a.tanh(), [a, b])
    assert (a.grad, b.grad) == (10.0, -3.5)
    assert (a.data, b.data) == (0.3, -1.2)
    with pytest.raises(GradcheckError):
        gradcheck(lambda: a * b.data * b, [a, b])
    assert (a.grad, b.grad) == (10.0, -3.5)
    assert (a.data.hex(), b.data.hex()) == ((0.3).hex(), (-1.2).hex())


def test_analytical_grads_ignore_previous_accumulation():
    a = Value(2.0)
    a.grad = 100.0
    result = gradcheck(lambda: a * a, [a])
    assert result.analytical == [4.0]


def test_grads_restored_when_f_raises_in_the_analytical_pass():
    a = Value(1.0)
    a.grad = 7.0

    def f():
        raise ValueError("bad model")

    with pytest.raises(ValueError, match="bad model"):
        gradcheck(f, [a])
    assert a.grad == 7.0


# --- argument validation ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, text", [
    ({"eps": 0.0}, ValueError, "eps.*0.0"),
    ({"eps": -1e-6}, ValueError, "eps.*-1e-06"),
    ({"eps": math.inf}, ValueError, "eps.*inf"),
    ({"eps": math.nan}, ValueError, "eps.*nan"),
    ({"eps": "1e-6"}, TypeError, "eps.*'1e-6'"),
    ({"atol": -1.0}, ValueError, "atol.*-1.0"),
    ({"rtol": -0.5}, ValueError, "rtol.*-0.5"),
    ({"rtol": math.nan}, ValueError, "rtol.*nan"),
    ({"raise_exception": 0}, TypeError, "raise_exception.*0"),
])
def test_gradcheck_validates_arguments(kwargs, exc, text):
    a = Value(1.0)
    with pytest.raises(exc, match=text):
        gradcheck(lambda: a * a, [a], **kwargs)


def test_numerical_grad_validates_eps():
    a = Value(1.0)
    with pytest.raises(ValueError, match="eps.*0.0"):
        numerical_grad(lambda: a, [a], eps=0.0)


@pytest.mark.parametrize("check", [gradcheck, numerical_grad])
def test_bad_f_and_params(check):
    a = Value(1.0)
    with pytest.raises(TypeError, match="callable.*int"):
        check(3, [a])
    with pytest.raises(TypeError, match="f\\(\\) must return a single Value, got float"):
        check(lambda: 2.0, [a])
    with pytest.raises(TypeError, match="list.*fastgrad.sum"):
        check(lambda: [a, a], [a])
    with pytest.raises(ValueError, match="empty"):
        check(lambda: a, [])
    with pytest.raises(TypeError, match=r"params\[1\].*float"):
        check(lambda: a, [a, 2.0])
    with pytest.raises(TypeError, match=r"params\[0\].*tuple"):
        check(lambda: a, [("a", 1.0)])
    with pytest.raises(TypeError, match="params.*Value"):
        check(lambda: a, a)  # a single Value, not an iterable of them
    assert a.data == 1.0 and a.grad == 0.0


# --- against PyTorch ---------------------------------------------------------------------------

def test_numerical_grad_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    vals = [0.3, -1.2, 0.8]
    ps = [Value(v) for v in vals]
    a, b, c = ps
    ours = numerical_grad(lambda: (a * b).tanh() * c.exp() + (b - c) ** 2 / (a.sigmoid() + 1), ps)
    ta, tb, tc = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in vals)
    out = torch.tanh(ta * tb) * torch.exp(tc) + (tb - tc) ** 2 / (torch.sigmoid(ta) + 1)
    theirs = torch.autograd.grad(out, (ta, tb, tc))
    assert ours == pytest.approx([t.item() for t in theirs], abs=1e-8)
    # and our analytical gradients agree with both
    result = gradcheck(lambda: (a * b).tanh() * c.exp() + (b - c) ** 2 / (a.sigmoid() + 1), ps)
    assert result.analytical == pytest.approx([t.item() for t in theirs], abs=1e-12)
