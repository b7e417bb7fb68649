"""Behaviour of fastgrad's compiled Value: every op's value and gradient
(against hand derivations and centered finite differences), operands on
either side, IEEE cases, the micrograd-compatible surface (_prev, _op, repr,
hashing), fused sum/dot, no_grad, backward semantics, bad inputs, pickling."""

import copy
import functools
import math
import pickle

import numpy as np
import pytest

import fastgrad
from fastgrad import Value

INF = math.inf


def fd(f, x, h=1e-6):
    """Centered finite difference of a float -> float function."""
    return (f(x + h) - f(x - h)) / (2 * h)


def fd_ok(analytic, numeric, rel=1e-6, abs_=1e-7):
    return math.isclose(analytic, numeric, rel_tol=rel, abs_tol=abs_)


# ---------------------------------------------------------------------------
# Unary ops: value and derivative by hand, and by finite differences
# ---------------------------------------------------------------------------

UNARY = {
    # name: (apply to a Value, value by hand, derivative by hand)
    "neg": (lambda v: -v, lambda x: -x, lambda x: -1.0),
    "relu": (lambda v: v.relu(), lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0),
    "tanh": (lambda v: v.tanh(), math.tanh, lambda x: 1.0 / math.cosh(x) ** 2),
    "sigmoid": (
        lambda v: v.sigmoid(),
        lambda x: 1.0 / (1.0 + math.exp(-x)),
        lambda x: math.exp(-x) / (1.0 + math.exp(-x)) ** 2,
    ),
    "exp": (lambda v: v.exp(), math.exp, math.exp),
    "log": (lambda v: v.log(), math.log, lambda x: 1.0 / x),
    "abs": (lambda v: v.abs(), abs, lambda x: 1.0 if x > 0 else -1.0),
    "abs()": (lambda v: abs(v), abs, lambda x: 1.0 if x > 0 else -1.0),
}
UNARY_POINTS = [-2.3, -0.7, 0.4, 1.9, 3.1]


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("x", UNARY_POINTS)
def test_unary_value_and_grad(name, x):
    op, f, df = UNARY[name]
    if name == "log" and x <= 0:
        x = -x
    a = Value(x)
    y = op(a)
    assert isinstance(y, Value)
    assert y.data == pytest.approx(f(x), rel=1e-14, abs=1e-300)
    y.backward()
    assert y.grad == 1.0
    assert a.grad == pytest.approx(df(x), rel=1e-12)
    numeric = fd(lambda t: op(Value(t)).data, x)
    assert fd_ok(a.grad, numeric), (a.grad, numeric)


@pytest.mark.parametrize("x", [-1e6, -50.0, -1.0, 0.0, 1.0, 50.0, 1e6])
def test_sigmoid_stable_for_large_inputs(x):
    a = Value(x)
    y = a.sigmoid()
    y.backward()
    s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    assert y.data == pytest.approx(s, rel=1e-15)
    assert 0.0 <= y.data <= 1.0
    assert a.grad == pytest.approx(s * (1 - s), rel=1e-12, abs=1e-300)


def test_relu_and_abs_derivative_at_zero_is_zero():
    for method in ("relu", "abs"):
        a = Value(0.0)
        y = getattr(a, method)()
        y.backward()
        assert y.data == 0.0
        assert a.grad == 0.0, method


def test_relu_negative_is_zero_with_zero_grad():
    a = Value(-3.0)
    y = a.relu()
    y.backward()
    assert y.data == 0.0
    assert a.grad == 0.0


# ---------------------------------------------------------------------------
# Binary ops in all three forms: Value op Value, Value op number, number op Value
# ---------------------------------------------------------------------------

BINARY = {
    # name: (python operator, d/dx by hand, d/dy by hand)
    "+": (lambda x, y: x + y, lambda x, y: 1.0, lambda x, y: 1.0),
    "-": (lambda x, y: x - y, lambda x, y: 1.0, lambda x, y: -1.0),
    "*": (lambda x, y: x * y, lambda x, y: y, lambda x, y: x),
    "/": (lambda x, y: x / y, lambda x, y: 1.0 / y, lambda x, y: -x / (y * y)),
    "**": (lambda x, y: x**y, lambda x, y: y * x ** (y - 1), lambda x, y: x**y * math.log(x)),
}
BINARY_POINTS = [(1.7, -0.6), (0.3, 2.5), (2.2, 3.0), (4.0, 0.5)]


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("x,y", BINARY_POINTS)
def test_binary_value_value(name, x, y):
    op, dx, dy = BINARY[name]
    a, b = Value(x), Value(y)
    out = op(a, b)
    assert isinstance(out, Value)
    assert out.data == pytest.approx(op(x, y), rel=1e-15)
    out.backward()
    assert a.grad == pytest.approx(dx(x, y), rel=1e-12)
    assert b.grad == pytest.approx(dy(x, y), rel=1e-12)
    assert fd_ok(a.grad, fd(lambda t: op(Value(t), Value(y)).data, x))
    assert fd_ok(b.grad, fd(lambda t: op(Value(x), Value(t)).data, y))


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("x,y", BINARY_POINTS)
def test_binary_value_number(name, x, y):
    op, dx, _ = BINARY[name]
    a = Value(x)
    out = op(a, y)
    assert isinstance(out, Value)
    assert out.data == pytest.approx(op(x, y), rel=1e-15)
    out.backward()
    assert a.grad == pytest.approx(dx(x, y), rel=1e-12)
    assert fd_ok(a.grad, fd(lambda t: op(Value(t), y).data, x))


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("x,y", BINARY_POINTS)
def test_binary_number_value(name, x, y):
    op, _, dy = BINARY[name]
    b = Value(y)
    out = op(x, b)
    assert isinstance(out, Value)
    assert out.data == pytest.approx(op(x, y), rel=1e-15)
    out.backward()
    assert b.grad == pytest.approx(dy(x, y), rel=1e-12)
    assert fd_ok(b.grad, fd(lambda t: op(x, Value(t)).data, y))


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_values_are_exact_ieee(name):
    # The forward value is the IEEE double result of the same operation.
    op = BINARY[name][0]
    for x, y in [(0.1, 0.2), (1.0 / 3.0, 7.0), (2.5, 1.1)]:
        assert op(Value(x), Value(y)).data == op(x, y)
        assert op(Value(x), y).data == op(x, y)
        assert op(x, Value(y)).data == op(x, y)


def test_binary_same_value_both_sides():
    x = 1.3
    a = Value(x)
    (a * a).backward()
    assert a.grad == 2 * x
    a = Value(x)
    (a - a).backward()
    assert a.grad == 0.0
    a = Value(x)
    (a / a).backward()
    assert a.grad == pytest.approx(0.0, abs=1e-15)
    a = Value(x)
    out = a**a  # d/dx x**x = x**x (log x + 1)
    out.backward()
    assert a.grad == pytest.approx(x**x * (math.log(x) + 1), rel=1e-12)
    assert fd_ok(a.grad, fd(lambda t: (Value(t) ** Value(t)).data, x))


def test_pow_with_number_and_value_exponent():
    a = Value(3.0)
    assert (a**2).data == 9.0
    assert (a**-1).data == pytest.approx(1 / 3)
    assert (a**0.5).data == pytest.approx(math.sqrt(3))
    e = Value(2.0)
    y = a**e
    y.backward()
    assert y.data == 9.0
    assert a.grad == pytest.approx(6.0)
    assert e.grad == pytest.approx(9.0 * math.log(3.0))
    b = Value(2.0)
    y = 3**b
    y.backward()
    assert y.data == 9.0
    assert b.grad == pytest.approx(9.0 * math.log(3.0))


@pytest.mark.parametrize(
    "x,y,value,da,db",
    [
        # PyTorch's conventions (the engine's documented ones)
        (0.0, 2.0, 0.0, 0.0, 0.0),  # d/db = 0 where a == 0 and b >= 0
        (0.0, 0.0, 1.0, 0.0, 0.0),  # d/da = 0 where b == 0
        (-2.0, 0.0, 1.0, 0.0, math.nan),
        (0.0, -1.0, INF, -INF, -INF),
        (-2.0, 3.0, -8.0, 12.0, math.nan),
        (-2.0, 0.5, math.nan, math.nan, math.nan),
        (0.0, 0.5, 0.0, INF, 0.0),
        (2.0, 0.0, 1.0, 0.0, math.log(2.0)),
    ],
)
def test_pow_edge_conventions(x, y, value, da, db):
    def same(p, q):
        return (math.isnan(p) and math.isnan(q)) or p == pytest.approx(q, rel=1e-15)

    for form in ("vv", "vc", "cv"):
        a, b = Value(x), Value(y)
        out = {"vv": lambda: a**b, "vc": lambda: a**y, "cv": lambda: x**b}[form]()
        out.backward()
        assert same(out.data, value), (form, out.data)
        if form != "cv":
            assert same(a.grad, da), (form, a.grad)
        if form != "vc":
            assert same(b.grad, db), (form, b.grad)


def test_pow_with_modulo_is_not_supported():
    with pytest.raises(TypeError):
        pow(Value(2.0), 3, 5)


# ---------------------------------------------------------------------------
# numpy scalars on either side
# ---------------------------------------------------------------------------

NP_SCALARS = [np.float64(1.5), np.float32(1.5), np.int64(3), np.bool_(True)]
OPS = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y,
    "**": lambda x, y: x**y,
}


@pytest.mark.parametrize("c", NP_SCALARS, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("name", list(OPS))
def test_numpy_scalar_operands(c, name):
    op, dx, dy = BINARY[name]
    cf = float(c)
    x = 1.25
    # Value op numpy
    a = Value(x)
    out = op(a, c)
    assert type(out) is Value
    assert out.data == op(x, cf)
    out.backward()
    assert a.grad == pytest.approx(dx(x, cf), rel=1e-12)
    # numpy op Value: numpy must hand the operation to Value's reflected op
    b = Value(x)
    out = op(c, b)
    assert type(out) is Value
    assert out.data == op(cf, x)
    out.backward()
    assert b.grad == pytest.approx(dy(cf, x), rel=1e-12)


@pytest.mark.parametrize("c", NP_SCALARS, ids=lambda c: type(c).__name__)
def test_numpy_scalar_constructor_and_setters(c):
    v = Value(c)
    assert type(v.data) is float
    assert v.data == float(c)
    v.data = c
    v.grad = c
    assert type(v.data) is float and type(v.grad) is float
    assert v.data == float(c) and v.grad == float(c)


def test_numpy_float32_converted_exactly():
    c = np.float32(0.1)
    assert Value(c).data == float(c) == 0.10000000149011612
    assert (Value(1.0) * c).data == float(c)


def test_python_number_types():
    assert Value(True).data == 1.0
    assert Value(False).data == 0.0
    assert Value(3).data == 3.0 and type(Value(3).data) is float
    assert Value(2**53 + 1).data == float(2**53 + 1)
    assert (Value(2.0) + True).data == 3.0


# ---------------------------------------------------------------------------
# += builds a new node
# ---------------------------------------------------------------------------


def test_iadd_builds_a_new_node():
    a = Value(1.0)
    b = a
    b += 2.0
    assert b is not a
    assert a.data == 1.0 and a.is_leaf
    assert b.data == 3.0
    assert a in b._prev
    c = b
    c += a
    assert c is not b and c._prev == {a, b}
    c *= 2
    c -= a
    c /= 4
    c **= 2
    c.backward()
    # c = (((a + 2) + a) * 2 - a) / 4) ** 2 = ((3a + 4) / 4) ** 2; dc/da = 2 * (3a+4)/4 * 3/4
    assert c.data == pytest.approx((7 / 4) ** 2)
    assert a.grad == pytest.approx(2 * (7 / 4) * 3 / 4)


# ---------------------------------------------------------------------------
# IEEE semantics: nothing raises
# ---------------------------------------------------------------------------


def test_log_zero_is_minus_inf():
    a = Value(0.0)
    y = a.log()
    assert y.data == -INF
    y.backward()
    assert a.grad == INF


def test_log_negative_is_nan():
    assert math.isnan(Value(-1.0).log().data)


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: Value(1.0) / 0, INF),
        (lambda: Value(1.0) / 0.0, INF),
        (lambda: Value(-1.0) / 0, -INF),
        (lambda: Value(1.0) / -0.0, -INF),
        (lambda: Value(1.0) / Value(0.0), INF),
        (lambda: 1 / Value(0.0), INF),
        (lambda: 1.0 / Value(-0.0), -INF),
        (lambda: Value(0.0) ** -1, INF),
        (lambda: Value(0.0) ** Value(-2.0), INF),
        (lambda: Value(1000.0).exp(), INF),
        (lambda: Value(10.0) ** 400, INF),
        (lambda: Value(-10.0) ** 401, -INF),
        (lambda: 10.0 ** Value(400.0), INF),
        (lambda: Value(1e308) * 10, INF),
        (lambda: Value(0.0) / 0, math.nan),
        (lambda: Value(0.0) / Value(0.0), math.nan),
        (lambda: Value(-8.0) ** (1 / 3), math.nan),
        (lambda: Value(INF) - INF, math.nan),
    ],
)
def test_ieee_results_never_raise(make, expected):
    y = make()
    if math.isnan(expected):
        assert math.isnan(y.data)
    else:
        assert y.data == expected
    y.backward()  # must not raise either


def test_division_by_zero_gradients():
    a, b = Value(1.0), Value(0.0)
    (a / b).backward()
    assert a.grad == INF
    assert b.grad == -INF
    a = Value(0.0)
    (2.0 / a).backward()
    assert a.grad == -INF


@pytest.mark.parametrize(
    "x,y",
    [
        (1e300, 1e160),  # exact d/dy = -1e-20, but y * y overflows to inf
        (3.0, 1e155),  # exact d/dy = -3e-310 (subnormal)
        (1e-300, 1e-170),  # exact d/dy = -1e40, but y * y underflows to 0
        (0.0, 1e-310),  # exact d/dy = -0.0, but 0 / (y * y) = 0 / 0 = nan
        (-2.0, 1e-160),  # exact d/dy = 2e320 -> overflows to inf honestly
    ],
)
def test_division_gradient_wrt_denominator_has_no_spurious_overflow(x, y):
    # d(x/y)/dy = -x / y**2 must be computed as -(x / y) / y (as PyTorch
    # does): forming y * y first overflows or underflows for |y| beyond
    # ~1e154 or below ~1e-154 although the derivative itself is representable.
    exact = -(x / y) / y

    def check(got):
        if math.isinf(exact):
            assert got == exact
        else:
            assert got == pytest.approx(exact, rel=1e-12, abs=0.0), (got, exact)

    a, b = Value(x), Value(y)
    (a / b).backward()
    assert a.grad == pytest.approx(1.0 / y, rel=1e-15)
    check(b.grad)
    b = Value(y)
    (x / b).backward()  # number / Value
    check(b.grad)


def test_self_division_of_a_tiny_value_has_zero_gradient():
    # d(x/x)/dx = 1/x - x/x**2 = 0; with x * x underflowing the second term
    # must not become infinite.
    for x in (1e-170, 3.184163856433385e-307, 1e170, 2.0):
        a = Value(x)
        y = a / a
        y.backward()
        assert y.data == 1.0
        assert a.grad == 0.0, (x, a.grad)


def test_exp_of_minus_inf_and_tanh_of_inf():
    a = Value(-INF)
    y = a.exp()
    y.backward()
    assert y.data == 0.0 and a.grad == 0.0
    a = Value(INF)
    y = a.tanh()
    y.backward()
    assert y.data == 1.0 and a.grad == 0.0


def test_nan_propagates():
    a = Value(math.nan)
    y = (a * 2 + 1).tanh()
    y.backward()
    assert math.isnan(y.data)
    assert math.isnan(a.grad)


# ---------------------------------------------------------------------------
# .data / .grad, repr, float, item
# ---------------------------------------------------------------------------


def test_data_and_grad_read_write():
    a = Value(2.0)
    assert a.data == 2.0 and a.grad == 0.0
    a.data = 5
    a.grad = 1.5
    assert a.data == 5.0 and type(a.data) is float
    assert a.grad == 1.5 and type(a.grad) is float
    b = a * 3
    assert b.data == 15.0
    b.backward()
    assert a.grad == 1.5 + 3.0  # leaf gradients accumulate onto what was written


def test_writing_data_changes_later_gradients_not_earlier_values():
    a = Value(2.0)
    b = a * a
    assert b.data == 4.0
    a.data = 3.0
    assert b.data == 4.0  # forward values are not recomputed
    b.backward()
    assert a.grad == 6.0  # local derivatives read the current data


@pytest.mark.parametrize("bad", ["1.0", None, [1.0], 1 + 2j, object()])
@pytest.mark.parametrize("attr", ["data", "grad"])
def test_bad_writes_raise_type_error(attr, bad):
    a = Value(2.0)
    with pytest.raises(TypeError, match=type(bad).__name__):
        setattr(a, attr, bad)
    assert getattr(a, attr) == (2.0 if attr == "data" else 0.0)


def test_repr():
    a = Value(2.5)
    assert repr(a) == "Value(data=2.5, grad=0.0)"
    b = a * -2
    b.backward()
    assert repr(a) == "Value(data=2.5, grad=-2.0)"
    assert repr(b) == "Value(data=-5.0, grad=1.0)"
    assert repr(Value(3)) == "Value(data=3.0, grad=0.0)"
    assert repr(Value(0.1)) == "Value(data=0.1, grad=0.0)"
    assert repr(Value(math.nan)) == "Value(data=nan, grad=0.0)"
    assert repr(Value(-INF)) == "Value(data=-inf, grad=0.0)"


def test_float_and_item():
    a = Value(2.75)
    assert float(a) == 2.75 and type(float(a)) is float
    assert a.item() == 2.75 and type(a.item()) is float
    b = a * 2
    assert float(b) == 5.5 and b.item() == 5.5
    assert math.exp(Value(1.0)) == math.e  # usable where Python wants a float


# ---------------------------------------------------------------------------
# Identity hashing, _prev and _op
# ---------------------------------------------------------------------------


def test_identity_hashing_and_equality():
    a, b = Value(1.0), Value(1.0)
    assert a == a
    assert not (a == b)
    assert a != b
    assert not (a == 1.0)
    assert len({a, b}) == 2
    assert len({a, a}) == 1
    h = hash(a)
    a.data = 7.0
    a.grad = 3.0
    assert hash(a) == h
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"


def test_prev_and_op_of_binary_ops():
    a, b = Value(2.0), Value(3.0)
    for op, sym in [
        (lambda: a + b, "+"),
        (lambda: a - b, "-"),
        (lambda: a * b, "*"),
        (lambda: a / b, "/"),
        (lambda: a**b, "**"),
    ]:
        y = op()
        assert y._op == sym
        assert y._prev == {a, b}
        assert isinstance(y._prev, set)
        assert not y.is_leaf


def test_prev_and_op_of_unary_ops():
    a = Value(0.5)
    for y, sym in [
        (a.relu(), "ReLU"),
        (a.tanh(), "tanh"),
        (a.sigmoid(), "sigmoid"),
        (a.exp(), "exp"),
        (a.log(), "log"),
        (a.abs(), "abs"),
    ]:
        assert y._op == sym
        assert y._prev == {a}
    assert (-a)._prev == {a}


def test_op_of_pow_with_number_exponent():
    a = Value(2.0)
    assert (a**2)._op == "**2"
    assert (a**-1)._op == "**-1"
    assert (a**0.5)._op == "**0.5"
    assert a in (a**2)._prev
    assert all(isinstance(p, Value) for p in (a**2)._prev)


def test_prev_with_number_operands_wraps_them_like_micrograd():
    # micrograd wraps the number in a Value: _prev == {a, Value(c)}
    a = Value(2.0)
    for y, c, sym in [
        (a * 3, 3.0, "*"),
        (3 * a, 3.0, "*"),
        (a + 4, 4.0, "+"),
        (4 + a, 4.0, "+"),
    ]:
        assert y._op == sym
        assert len(y._prev) == 2 and a in y._prev
        (other,) = y._prev - {a}
        assert isinstance(other, Value) and other.is_leaf and other.data == c


def test_leaf_has_no_prev_and_empty_op():
    a = Value(1.0)
    assert a._prev == set()
    assert a._op == ""
    assert a.is_leaf


def test_prev_can_be_walked_like_micrograd_trace():
    # micrograd's draw_dot builds nodes/edges by walking _prev
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    d = (c + a).tanh()
    nodes, edges = set(), set()

    def build(v):
        if v not in nodes:
            nodes.add(v)
            for child in v._prev:
                edges.add((child, v))
                build(child)

    build(d)
    assert {a, b, c, d} <= nodes
    assert (a, c) in edges and (b, c) in edges
    assert len(nodes) == 5  # a, b, c, c + a, d
    assert all(isinstance(n._op, str) for n in nodes)


# ---------------------------------------------------------------------------
# Fused n-ary ops: fastgrad.sum, fastgrad.dot
# ---------------------------------------------------------------------------


def test_sum_is_one_node_with_many_parents():
    xs = [Value(float(i) + 0.5) for i in range(10)]
    s = fastgrad.sum(xs)
    assert s._op == "sum"
    assert s._prev == set(xs)
    assert s.data == sum(x.data for x in xs)
    s.backward(2.0)
    assert all(x.grad == 2.0 for x in xs)


def test_sum_matches_chain_of_adds():
    vals = [0.3, -1.7, 2.2, 0.9, 5.5]
    a = [Value(v) for v in vals]
    b = [Value(v) for v in vals]
    s1 = fastgrad.sum([a[0], 2.5, a[1], a[2], a[3], a[4], a[0]])
    s2 = b[0] + 2.5 + b[1] + b[2] + b[3] + b[4] + b[0]
    assert s1.data == s2.data
    (s1 * s1).tanh().backward()
    (s2 * s2).tanh().backward()
    for x, y in zip(a, b):
        assert x.grad == pytest.approx(y.grad, rel=1e-14)
    assert a[0].grad == 2 * a[1].grad  # used twice


def test_sum_start_and_iterables():
    a, b, c = Value(1.0), Value(2.0), Value(4.0)
    s = fastgrad.sum((v for v in [a, b]), 10)
    assert s.data == 13.0
    s = fastgrad.sum([a, b], c)
    assert s.data == 7.0 and s._prev == {a, b, c}
    s.backward()
    assert (a.grad, b.grad, c.grad) == (1.0, 1.0, 1.0)
    s = fastgrad.sum([], c)
    assert s.data == 4.0
    s.backward()
    assert c.grad == 2.0
    s = fastgrad.sum([a, np.float64(0.5), np.int64(2), np.bool_(True), 3])
    assert s.data == 1.0 + 0.5 + 2 + 1 + 3


def test_sum_empty_is_a_leaf():
    s = fastgrad.sum([])
    assert isinstance(s, Value) and s.data == 0.0 and s.is_leaf
    assert fastgrad.sum([], 2.5).data == 2.5


def test_sum_bad_items():
    a = Value(1.0)
    with pytest.raises(TypeError, match="str"):
        fastgrad.sum([a, "x"])
    with pytest.raises(TypeError, match="NoneType"):
        fastgrad.sum([None])
    with pytest.raises(TypeError):
        fastgrad.sum(3)
    with pytest.raises(TypeError, match="str"):
        fastgrad.sum([a], "0")


def test_dot_is_one_node_with_many_parents():
    ws = [Value(0.5 * i - 1) for i in range(6)]
    xs = [Value(1.5 - 0.25 * i) for i in range(6)]
    d = fastgrad.dot(ws, xs)
    assert d._op == "dot"
    assert d._prev == set(ws) | set(xs)
    assert d.data == pytest.approx(sum(w.data * x.data for w, x in zip(ws, xs)), rel=1e-15)
    d.backward()
    for w, x in zip(ws, xs):
        assert w.grad == x.data
        assert x.grad == w.data


def test_dot_matches_chain_of_mul_add():
    wv = [0.3, -1.2, 2.0, 0.7]
    xv = [1.1, 0.4, -0.9, 2.5]
    ws1, xs1 = [Value(w) for w in wv], [Value(x) for x in xv]
    ws2, xs2 = [Value(w) for w in wv], [Value(x) for x in xv]
    d1 = fastgrad.dot(ws1, xs1)
    d2 = ws2[0] * xs2[0] + ws2[1] * xs2[1] + ws2[2] * xs2[2] + ws2[3] * xs2[3]
    assert d1.data == pytest.approx(d2.data, rel=1e-15)
    d1.tanh().backward()
    d2.tanh().backward()
    for p, q in zip(ws1 + xs1, ws2 + xs2):
        assert p.grad == pytest.approx(q.grad, rel=1e-14)


@pytest.mark.parametrize("side", ["numbers_right", "numbers_left", "mixed"])
def test_dot_with_numbers_on_either_side(side):
    vals = [Value(1.5), Value(-2.0), Value(0.25)]
    nums = [2.0, np.float64(3.0), np.int64(-1)]
    if side == "numbers_right":
        ws, xs = vals, nums
    elif side == "numbers_left":
        ws, xs = nums, vals
    else:
        ws = [vals[0], nums[1], vals[2]]
        xs = [nums[0], vals[1], nums[2]]
    d = fastgrad.dot(ws, xs)
    assert d._op == "dot"
    assert set(vals) <= d._prev
    assert d.data == 1.5 * 2.0 + (-2.0) * 3.0 + 0.25 * (-1)
    d.backward()
    assert [v.grad for v in vals] == [2.0, 3.0, -1.0]


def test_dot_with_numpy_array_of_numbers():
    vals = [Value(1.0), Value(2.0)]
    d = fastgrad.dot(vals, np.array([3.0, 4.0]))
    assert d.data == 11.0
    d.backward()
    assert [v.grad for v in vals] == [3.0, 4.0]


def test_dot_repeated_values():
    a, b = Value(3.0), Value(-2.0)
    d = fastgrad.dot([a, a, b], [a, b, 5.0])  # a*a + a*b + 5b
    assert d.data == 9.0 - 6.0 - 10.0
    d.backward()
    assert a.grad == 2 * 3.0 + (-2.0)
    assert b.grad == 3.0 + 5.0


def test_dot_of_numbers_only_and_empty():
    d = fastgrad.dot([1, 2], [3.0, 4.0])
    assert isinstance(d, Value) and d.data == 11.0 and d.is_leaf
    e = fastgrad.dot([], [])
    assert e.data == 0.0 and e.is_leaf


def test_dot_length_mismatch():
    with pytest.raises(ValueError):
        fastgrad.dot([Value(1.0)], [1.0, 2.0])
    with pytest.raises(ValueError):
        fastgrad.dot([1.0, 2.0], [Value(1.0)])


@pytest.mark.parametrize(
    "ws,xs,typename",
    [
        (lambda a: [a, "x"], lambda a: [1.0, 2.0], "str"),
        (lambda a: [a, a], lambda a: [1.0, None], "NoneType"),
        (lambda a: [a, 2.0], lambda a: [1.0, [3]], "list"),
        (lambda a: [1.0, object()], lambda a: [a, a], "object"),
        (lambda a: [1.0, 2.0], lambda a: [1.0, 1j], "complex"),
    ],
)
def test_dot_bad_items(ws, xs, typename):
    a = Value(1.0)
    with pytest.raises(TypeError, match=typename):
        fastgrad.dot(ws(a), xs(a))


def test_nary_error_paths_release_references():
    import sys

    a = Value(1.0)
    before = sys.getrefcount(a)
    for _ in range(10):
        with pytest.raises(TypeError):
            fastgrad.sum([a, a, a, "x"])
        with pytest.raises(TypeError):
            fastgrad.dot([a, a, a], [a, a, "x"])
        with pytest.raises(TypeError):
            fastgrad.dot([a, a, a], [1.0, 2.0, "x"])
    assert sys.getrefcount(a) == before


# ---------------------------------------------------------------------------
# no_grad / enable_grad
# ---------------------------------------------------------------------------

ALL_OPS = {
    "add": lambda a, b: a + b,
    "radd": lambda a, b: 2 + a,
    "sub": lambda a, b: a - b,
    "rsub": lambda a, b: 2 - a,
    "mul": lambda a, b: a * b,
    "mulc": lambda a, b: a * 3,
    "div": lambda a, b: a / b,
    "divc": lambda a, b: a / 3,
    "rdiv": lambda a, b: 3 / a,
    "pow": lambda a, b: a**b,
    "powc": lambda a, b: a**2,
    "rpow": lambda a, b: 2**a,
    "neg": lambda a, b: -a,
    "relu": lambda a, b: a.relu(),
    "tanh": lambda a, b: a.tanh(),
    "sigmoid": lambda a, b: a.sigmoid(),
    "exp": lambda a, b: a.exp(),
    "log": lambda a, b: a.log(),
    "abs": lambda a, b: a.abs(),
    "sum": lambda a, b: fastgrad.sum([a, b, 1.0]),
    "sum_start": lambda a, b: fastgrad.sum([a], b),
    "dot": lambda a, b: fastgrad.dot([a, b], [b, a]),
    "dotc": lambda a, b: fastgrad.dot([a, b], [2.0, 3.0]),
}


@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_no_grad_records_no_parents(name):
    op = ALL_OPS[name]
    a, b = Value(1.5), Value(0.5)
    expected = op(a, b).data
    with fastgrad.no_grad():
        assert fastgrad.is_grad_enabled() is False
        y = op(a, b)
    assert fastgrad.is_grad_enabled() is True
    assert y.data == expected
    assert y.is_leaf
    assert y._prev == set()
    assert y._op == ""
    y.backward()
    assert y.grad == 1.0
    assert a.grad == 0.0 and b.grad == 0.0


def test_no_grad_nests_and_restores():
    a = Value(1.0)
    assert fastgrad.is_grad_enabled()
    with fastgrad.no_grad():
        with fastgrad.no_grad():
            assert not fastgrad.is_grad_enabled()
        assert not fastgrad.is_grad_enabled()
        assert (a * 2).is_leaf
    assert fastgrad.is_grad_enabled()
    assert not (a * 2).is_leaf


def test_same_no_grad_instance_can_nest():
    ng = fastgrad.no_grad()
    with ng:
        with ng:
            assert not fastgrad.is_grad_enabled()
        assert not fastgrad.is_grad_enabled()
    assert fastgrad.is_grad_enabled()


def test_no_grad_restores_on_exception():
    with pytest.raises(ZeroDivisionError):
        with fastgrad.no_grad():
            1 / 0
    assert fastgrad.is_grad_enabled()
    with fastgrad.no_grad():
        with pytest.raises(KeyError):
            with fastgrad.enable_grad():
                raise KeyError("x")
        assert not fastgrad.is_grad_enabled()
    assert fastgrad.is_grad_enabled()


def test_no_grad_as_decorator():
    @fastgrad.no_grad()
    def f(v):
        """doc"""
        assert not fastgrad.is_grad_enabled()
        return v * 2 + 1

    a = Value(1.0)
    y = f(a)
    assert y.data == 3.0 and y.is_leaf
    assert fastgrad.is_grad_enabled()
    assert f.__name__ == "f" and f.__doc__ == "doc"

    @fastgrad.no_grad()
    def g():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        g()
    assert fastgrad.is_grad_enabled()
    # reusable, and re-entrant through recursion
    @fastgrad.no_grad()
    def rec(n):
        return a * 1 if n == 0 else rec(n - 1)

    assert rec(5).is_leaf and rec(3).is_leaf
    assert fastgrad.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    a = Value(2.0)
    with fastgrad.no_grad():
        with fastgrad.enable_grad():
            assert fastgrad.is_grad_enabled()
            y = a * 3
        assert not fastgrad.is_grad_enabled()
        z = a * 3
    assert y._prev and a in y._prev and not y.is_leaf
    assert z.is_leaf
    y.backward()
    assert a.grad == 3.0

    @fastgrad.enable_grad()
    def build(v):
        return v * v

    with fastgrad.no_grad():
        w = build(a)
        assert not fastgrad.is_grad_enabled()
    assert w._prev == {a}


def test_enable_grad_outside_no_grad_is_harmless():
    with fastgrad.enable_grad():
        assert fastgrad.is_grad_enabled()
    assert fastgrad.is_grad_enabled()


# ---------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------


def test_reused_nodes():
    a = Value(3.0)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad == 4.0
    assert b.grad == 2.0


def test_diamond():
    a = Value(2.0)
    b = a * 3
    c = a.exp()
    d = b * c  # 3a e^a; d' = 3 e^a (1 + a)
    d.backward()
    assert a.grad == pytest.approx(3 * math.exp(2.0) * 3.0, rel=1e-14)


def _dyadic_graph():
    # every value and every partial sum is exactly representable
    a, b = Value(0.5), Value(-1.25)
    c = a * b + a
    d = c * c + b * 2 - a
    e = fastgrad.sum([d, c, a, b]) * 0.25 + fastgrad.dot([a, b], [c, 4.0])
    return a, b, c, d, e


def test_backward_twice_doubles_leaves_and_recomputes_interior():
    a, b, c, d, e = _dyadic_graph()
    e.backward()
    g1 = (a.grad, b.grad)
    i1 = (c.grad, d.grad, e.grad)
    assert g1 != (0.0, 0.0)
    e.backward()
    assert (a.grad, b.grad) == (2 * g1[0], 2 * g1[1])
    assert (c.grad, d.grad, e.grad) == i1
    e.backward()
    assert (a.grad, b.grad) == (3 * g1[0], 3 * g1[1])
    assert (c.grad, d.grad, e.grad) == i1


def test_backward_values_of_dyadic_graph_by_hand():
    a, b, c, d, e = _dyadic_graph()
    # a=0.5, b=-1.25: c = ab + a = -0.125; d = c^2 + 2b - a = -2.984375
    # e = (d + c + a + b)/4 + a*c + 4b
    assert c.data == -0.125 and d.data == -2.984375
    e.backward()
    # de/dc = 1/4 + a + (1/4)(2c) ; de/dd = 1/4
    dc = 0.25 + 0.5 + 0.25 * 2 * -0.125
    assert c.grad == dc and d.grad == 0.25
    # de/da = dc*(b + 1) + 0.25*(-1) + 0.25 + c ; de/db = dc*a + 0.25*2 + 0.25 + 4
    assert a.grad == dc * (-1.25 + 1) - 0.25 + 0.25 + -0.125
    assert b.grad == dc * 0.5 + 0.5 + 0.25 + 4.0


def test_backward_twice_generic_graph():
    a, b = Value(0.37), Value(-1.3)
    y = ((a * b).tanh() + (a / b).sigmoid() * a.exp()) ** 2
    y.backward()
    g = (a.grad, b.grad)
    y.backward()
    assert a.grad == pytest.approx(2 * g[0], rel=1e-15)
    assert b.grad == pytest.approx(2 * g[1], rel=1e-15)
    assert y.grad == 1.0


def test_backward_gradient_seed():
    a, b, c, d, e = _dyadic_graph()
    e.backward()
    g = (a.grad, b.grad, c.grad)
    a.grad = b.grad = 0.0
    e.backward(gradient=3)
    assert (a.grad, b.grad, c.grad) == (3 * g[0], 3 * g[1], 3 * g[2])
    assert e.grad == 3.0
    a.grad = b.grad = 0.0
    e.backward(np.float32(-0.5))
    assert (a.grad, b.grad) == (-0.5 * g[0], -0.5 * g[1])
    with pytest.raises(TypeError, match="str"):
        e.backward("1")


def test_backward_on_a_leaf():
    a = Value(5.0)
    a.backward()
    assert a.grad == 1.0
    a.backward()
    assert a.grad == 2.0
    a.backward(gradient=2.5)
    assert a.grad == 4.5


def test_backward_from_an_interior_node_and_from_different_roots():
    a, b = Value(2.0), Value(3.0)
    c = a * b
    d = c + a
    e = c * 2
    d.backward()
    assert (a.grad, b.grad, c.grad) == (4.0, 2.0, 1.0)
    a.grad = b.grad = 0.0
    e.backward()
    assert c.grad == 2.0  # recomputed for the new root, not accumulated
    assert (a.grad, b.grad) == (6.0, 4.0)
    a.grad = b.grad = 0.0
    c.backward()
    assert c.grad == 1.0
    assert (a.grad, b.grad) == (3.0, 2.0)
    assert d.grad == 1.0 and e.grad == 1.0  # untouched: not reachable from c


def test_interior_grad_written_by_user_is_reset():
    a = Value(2.0)
    b = a * 3
    c = b + 1
    b.grad = 100.0
    c.backward()
    assert b.grad == 1.0
    assert a.grad == 3.0


def test_leaf_created_under_no_grad_blocks_gradient():
    a = Value(2.0)
    with fastgrad.no_grad():
        b = a * 3
    c = b * a
    c.backward()
    assert a.grad == 6.0  # only through the direct edge
    assert b.grad == 2.0


def test_composite_expression_against_finite_differences():
    def f(x, y, z, w):
        a, b, c, d = Value(x), Value(y), Value(z), Value(w)
        t = (a * b + c / d).tanh() - (b**2 + 1).log() * c.sigmoid()
        u = fastgrad.dot([a, b, 2.0], [c, d, a]) + fastgrad.sum([a, t, d.exp()])
        v = (u.relu() + (-t).abs()) ** 1.5 + 2**a - 1 / (c + 3)
        return (a, b, c, d), v

    x0 = (0.7, -1.1, 0.9, 1.6)
    leaves, v = f(*x0)
    v.backward()
    for i, leaf in enumerate(leaves):

        def fi(t, i=i):
            args = list(x0)
            args[i] = t
            return f(*args)[1].data

        numeric = fd(fi, x0[i])
        assert fd_ok(leaf.grad, numeric, rel=1e-6), (i, leaf.grad, numeric)


def test_micrograd_readme_example():
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    assert f"{g.data:.4f}" == "24.7041"
    g.backward()
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["3", None, [1], 1 + 2j, np.complex128(1 + 1j), {1: 2}, b"1", np.array([1.0, 2.0])],
    ids=lambda b: type(b).__name__,
)
def test_constructor_rejects_non_real(bad):
    with pytest.raises(TypeError) as info:
        Value(bad)
    assert type(bad).__name__ in str(info.value)


def test_constructor_rejects_value():
    with pytest.raises(TypeError, match="Value"):
        Value(Value(1.0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Value(1) + "a",
        lambda: "a" + Value(1),
        lambda: Value(1) - "a",
        lambda: "a" - Value(1),
        lambda: Value(1) * None,
        lambda: None * Value(1),
        lambda: Value(1) / [1],
        lambda: [1] / Value(1),
        lambda: Value(1) ** "2",
        lambda: "2" ** Value(1),
        lambda: Value(1) + 1j,
        lambda: 1j * Value(1),
    ],
)
def test_operators_reject_non_real(make):
    with pytest.raises(TypeError):
        make()


def test_value_is_final():
    with pytest.raises(TypeError):

        class Sub(Value):  # noqa: F841
            pass


# ---------------------------------------------------------------------------
# pickle and copy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clone",
    [
        lambda v: pickle.loads(pickle.dumps(v)),
        lambda v: pickle.loads(pickle.dumps(v, protocol=0)),
        copy.deepcopy,
        copy.copy,
    ],
    ids=["pickle", "pickle0", "deepcopy", "copy"],
)
def test_copy_of_a_leaf_keeps_data_and_grad(clone):
    a = Value(-2.5)
    a.grad = 0.75
    b = clone(a)
    assert type(b) is Value and b is not a
    assert b.data == -2.5 and b.grad == 0.75 and b.is_leaf
    b.data = 1.0
    assert a.data == -2.5  # independent
    lst = clone([a, a])
    assert lst[0] is lst[1]  # one object stays one object
    assert lst[0].data == -2.5 and lst[0].grad == 0.75


@pytest.mark.parametrize(
    "clone",
    [pickle.dumps, copy.deepcopy, copy.copy],
    ids=["pickle", "deepcopy", "copy"],
)
def test_copy_of_a_non_leaf_raises(clone):
    a = Value(1.0)
    for y in (a * 2, a + a, a.tanh(), fastgrad.sum([a]), fastgrad.dot([a], [a])):
        with pytest.raises(TypeError):
            clone(y)


def test_no_grad_result_is_picklable():
    a = Value(1.0)
    with fastgrad.no_grad():
        y = a * 4
    assert pickle.loads(pickle.dumps(y)).data == 4.0


def test_functools_reduce_over_values():
    xs = [Value(float(i)) for i in range(1, 6)]
    p = functools.reduce(lambda u, v: u * v, xs)
    p.backward()
    assert p.data == 120.0
    assert [x.grad for x in xs] == [120.0 / x.data for x in xs]


def test_prev_of_power_by_a_number_is_the_base_only_as_in_micrograd():
    a = Value(2.0)
    assert (a**2)._prev == {a}
    # other number operands are wrapped as leaves, as micrograd wraps them
    prev = (a * 3)._prev
    assert len(prev) == 2 and a in prev
    assert sorted(v.data for v in prev) == [2.0, 3.0]


def _plain_neuron(w, x, b, act):
    z = b
    for wi, xi in zip(w, x):
        z = z + wi * xi
    return {0: lambda v: v, 1: Value.relu, 2: Value.tanh, 3: Value.sigmoid}[act](z)


@pytest.mark.parametrize("act", [0, 1, 2, 3])
@pytest.mark.parametrize("inputs", ["values", "numbers", "mixed"])
def test_fused_layer_equals_plain_ops_in_value_and_gradient(act, inputs):
    """fastgrad._engine.layer shares one holder of the inputs between its
    neurons; values and gradients (weights, biases, inputs) must equal the
    same neurons written with + and *."""
    import random

    from fastgrad import _engine

    rng = random.Random(act)

    class N:  # the attributes a neuron needs: w and b
        def __init__(self):
            self.w = [Value(rng.uniform(-1, 1)) for _ in range(5)]
            self.b = Value(rng.uniform(-1, 1))

    neurons = [N() for _ in range(4)]
    raw = [rng.uniform(-1, 1) for _ in range(5)]
    make = {"values": lambda: [Value(v) for v in raw],
            "numbers": lambda: list(raw),
            "mixed": lambda: [Value(v) if i % 2 else v for i, v in enumerate(raw)]}[inputs]
    x_fused, x_plain = make(), make()
    fused = _engine.layer(neurons, x_fused, act)
    loss = fastgrad.sum([o * (k + 1) for k, o in enumerate(fused)])
    loss.backward()
    loss.backward()                      # twice: leaves accumulate exactly double
    got_w = [v.grad for n in neurons for v in n.w + [n.b]]
    got_x = [v.grad for v in x_fused if isinstance(v, Value)]
    for n in neurons:
        for v in n.w + [n.b]:
            v.grad = 0.0
    plain = [_plain_neuron(n.w, x_plain, n.b, act) for n in neurons]
    ref = fastgrad.sum([o * (k + 1) for k, o in enumerate(plain)])
    ref.backward()
    ref.backward()
    assert [o.data for o in fused] == pytest.approx([o.data for o in plain], rel=1e-12)
    assert got_w == pytest.approx([v.grad for n in neurons for v in n.w + [n.b]], rel=1e-12)
    assert got_x == pytest.approx([v.grad for v in x_plain if isinstance(v, Value)], rel=1e-12)
    assert all(o._prev >= set(neurons[k].w) | {neurons[k].b} for k, o in enumerate(fused))
    with fastgrad.no_grad():
        inference = _engine.layer(neurons, make(), act)
    assert all(o.is_leaf for o in inference)


def test_fused_layer_rejects_a_bad_weight_without_leaking_references():
    import sys

    from fastgrad import _engine

    class N:
        pass

    good = N()
    good.w, good.b = [Value(1.0), Value(2.0), Value(3.0)], Value(0.0)
    bad = N()
    bad.w, bad.b = [Value(1.0), "w", Value(2.0)], Value(0.0)
    x = [Value(1.0), Value(2.0), Value(3.0)]
    before = [sys.getrefcount(v) for v in good.w + bad.w[:1] + x]
    with pytest.raises(TypeError, match=r"neuron 1: weight 1 must be a Value, got str"):
        _engine.layer([good, bad], x, 1)
    after = [sys.getrefcount(v) for v in good.w + bad.w[:1] + x]
    assert after == before
    short = N()
    short.w, short.b = [Value(1.0)], Value(0.0)
    with pytest.raises(ValueError, match="neuron 0 has 1 weights but the input has 3 values"):
        _engine.layer([short], x, 0)


# ---------------------------------------------------------------------------
# Grad mode is per thread; the engine never trusts a list across Python code
# ---------------------------------------------------------------------------


def _run_threads(*targets):
    """Start one thread per function and wait for all of them."""
    import threading

    threads = [threading.Thread(target=f) for f in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def test_grad_mode_is_per_thread():
    import threading

    inside, release = threading.Event(), threading.Event()

    def hold_no_grad():
        with fastgrad.no_grad():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold_no_grad)
    t.start()
    inside.wait(10)
    try:
        assert fastgrad.is_grad_enabled()          # another thread's no_grad
        w = Value(3.0)
        y = w * w
        y.backward()
        assert w.grad == 6.0
    finally:
        release.set()
        t.join()
    assert fastgrad.is_grad_enabled()


def test_interleaved_no_grad_in_two_threads_restores_each_thread():
    import threading

    steps = [threading.Event() for _ in range(4)]
    seen = {}

    def a():
        with fastgrad.no_grad():
            steps[0].set()
            steps[1].wait(10)
        seen["a"] = fastgrad.is_grad_enabled()
        steps[2].set()

    def b():
        steps[0].wait(10)
        with fastgrad.no_grad():
            steps[1].set()
            steps[2].wait(10)
            seen["b_inside"] = fastgrad.is_grad_enabled()
        seen["b"] = fastgrad.is_grad_enabled()

    _run_threads(a, b)
    assert seen == {"a": True, "b_inside": False, "b": True}
    assert fastgrad.is_grad_enabled()


def test_layer_records_by_the_mode_at_its_start_even_if_it_changes():
    """Iterating the neurons may run Python code that flips the grad mode;
    the layer decides once (this used to dereference a NULL pack)."""
    from fastgrad import _engine

    layer = fastgrad.nn.Layer(2, 3)

    def neurons():
        with fastgrad.enable_grad():
            yield from layer.neurons

    with fastgrad.no_grad():
        out = _engine.layer(neurons(), [Value(1.0), Value(2.0)], 1)
    assert all(o.is_leaf for o in out)

    def neurons_off():
        with fastgrad.no_grad():
            yield from layer.neurons

    out = _engine.layer(neurons_off(), [Value(1.0), Value(2.0)], 1)
    assert not any(o.is_leaf for o in out)
    fastgrad.sum(out).backward()                 # and the graph is usable


def test_no_grad_as_bare_decorator_and_on_generators():
    @fastgrad.no_grad
    def f(x):
        return x * 2, fastgrad.is_grad_enabled()

    y, mode = f(Value(1.0))
    assert y.is_leaf and mode is False and fastgrad.is_grad_enabled()

    @fastgrad.no_grad()
    def gen():
        for _ in range(2):
            yield fastgrad.is_grad_enabled()

    it = gen()
    assert next(it) is False
    assert fastgrad.is_grad_enabled()            # not between the yields
    assert next(it) is False
    assert list(it) == []
    with pytest.raises(TypeError, match="no_grad"):
        fastgrad.no_grad(3)


class _Sneaky:
    """A real number whose conversion empties the list being read."""

    def __init__(self, victim):
        self.victim = victim

    def __float__(self):
        self.victim.clear()
        return 1.0


def test_converting_an_item_cannot_pull_the_list_from_under_the_engine():
    import numbers

    numbers.Real.register(_Sneaky)
    values = [Value(1.0), Value(2.0)]
    values.insert(1, _Sneaky(values))
    s = fastgrad.sum(values)                       # used to crash
    assert s.data == 4.0
    xs = [Value(1.0), Value(2.0), Value(3.0)]
    ws = [2.0, 0.0, 1.0]
    ws[1] = _Sneaky(ws)
    d = fastgrad.dot(xs, ws)
    assert d.data == 2.0 + 2.0 + 3.0
    lse_in = [Value(0.0), Value(0.0)]
    lse_in.append(_Sneaky(lse_in))
    assert fastgrad.logsumexp(lse_in).data == pytest.approx(math.log(2 + math.e))


@pytest.mark.parametrize("computed", ["none", "weight", "bias", "both"])
def test_fused_neuron_back_propagates_into_computed_weights_and_biases(computed):
    """backward skips the weights of a fused neuron when they were all
    leaves at build time; a computed weight or bias (tied to another Value)
    must still receive and pass on its gradient."""
    from fastgrad import _engine

    base = Value(0.7)
    w = [Value(0.3), Value(-0.2), Value(0.5)]
    b = Value(0.1)
    if computed in ("weight", "both"):
        w[1] = base * 2.0
    if computed in ("bias", "both"):
        b = base - 1.0
    x = [Value(1.0), Value(2.0), Value(-1.0)]
    y = _engine.affine(w, x, b, 2)
    y.backward()
    z = w[0].data * 1.0 + w[1].data * 2.0 + w[2].data * -1.0 + b.data
    dz = 1.0 - math.tanh(z) ** 2
    expected_base = (2.0 * 2.0 * dz if computed in ("weight", "both") else 0.0) + \
        (dz if computed in ("bias", "both") else 0.0)
    assert y.data == pytest.approx(math.tanh(z), rel=1e-14)
    assert base.grad == pytest.approx(expected_base, rel=1e-12, abs=0.0)
    assert [xi.grad for xi in x] == pytest.approx([wi.data * dz for wi in w], rel=1e-12)
    leaves = [wi for wi in w if wi.is_leaf]
    assert [wi.grad for wi in leaves] == pytest.approx(
        [xi.data * dz for wi, xi in zip(w, x) if wi.is_leaf], rel=1e-12)


def test_one_no_grad_instance_shared_by_two_threads():
    import threading

    shared = fastgrad.no_grad()
    steps = [threading.Event() for _ in range(3)]
    seen = {}

    def a():                               # grad on, enters the shared instance
        with shared:
            steps[0].set()
            steps[1].wait(10)
        seen["a_after"] = fastgrad.is_grad_enabled()
        steps[2].set()

    def b():                               # already in its own no_grad
        with fastgrad.no_grad():
            steps[0].wait(10)
            with shared:
                steps[1].set()
                steps[2].wait(10)
            seen["b_after_shared"] = fastgrad.is_grad_enabled()
        seen["b_after"] = fastgrad.is_grad_enabled()

    _run_threads(a, b)
    assert seen == {"a_after": True, "b_after_shared": False, "b_after": True}


def test_dot_holds_both_sides_when_converting_one_could_change_the_other():
    import numbers

    ws = [Value(float(i)) for i in range(1000)]

    class Clears:
        def __float__(self):
            ws.clear()
            return 1.0

    numbers.Real.register(Clears)
    xs = [1.0] * 999 + [Clears()]
    assert fastgrad.dot(ws, xs).data == sum(range(1000))
    mixed = [Value(1.0)] * 999 + [Clears()]
    ws[:] = [Value(2.0)] * 1000
    assert fastgrad.dot(ws, mixed).data == 2000.0


def test_cross_entropy_target_is_read_before_the_logits():
    from fastgrad import _engine

    logits = [Value(float(i)) for i in range(1000)]

    class Target(int):
        """An int whose comparisons empty the logits list."""

        def _clear(self, other):
            logits.clear()
            return NotImplemented

        __lt__ = __le__ = __gt__ = __ge__ = _clear

    import numbers
    assert isinstance(Target(3), numbers.Integral)
    out = _engine.cross_entropy_with_logits(logits, Target(3))
    assert out.data == pytest.approx(math.log(sum(math.exp(i - 999) for i in range(1000))) + 999 - 3)
    with pytest.raises(IndexError, match="target 5 is out of range for 2 classes"):
        _engine.cross_entropy_with_logits([Value(0.0), Value(1.0)], 5)
    with pytest.raises(IndexError, match="target -1 is out of range"):
        _engine.cross_entropy_with_logits([Value(0.0), Value(1.0)], -1)
    with pytest.raises(IndexError, match=f"target {2**70} is out of range"):
        _engine.cross_entropy_with_logits([Value(0.0), Value(1.0)], 2**70)
