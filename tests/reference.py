"""A small pure-Python reference engine: the executable specification of
fastgrad's Value.

It is deliberately written the slow, obvious way (micrograd's closures and a
topological sort) and is the oracle the random-graph tests compare the
compiled engine against. It follows the engine's documented conventions
(src/fastgrad/_engine.pyx, section 1):

* IEEE-754 semantics everywhere; nothing raises where IEEE gives inf or nan
  (``log(0) = -inf``, ``x/0 = +-inf``, ``0/0 = nan``, ``exp(1000) = inf``).
  Python's ``math`` functions raise in those cases, so they go through the
  ``safe_*`` helpers below, which return what C's libm returns.
* ``relu'(x) = 1 if relu(x) > 0 else 0``  (so relu'(0) = 0 and relu'(nan) = 0)
* ``abs'(x) = sign(x)`` with ``abs'(0) = 0`` (and ``abs'(nan) = nan``)
* ``a ** b``: ``d/da = 0`` when ``b == 0``, else ``b * a ** (b - 1)``;
  ``d/db = 0`` when ``a == 0 and b >= 0``, else ``a ** b * log(a)``
  (PyTorch's conventions).
* ``backward(gradient)``: on a leaf, adds ``gradient`` to its grad; otherwise
  resets the grads of the interior nodes reachable from the root, seeds the
  root with ``gradient`` and sweeps the topological order backwards. Leaf
  gradients accumulate across calls.

Parents are kept in order (a tuple, duplicates allowed), and the topological
order is the post-order of a depth-first search over parents in that order,
the same order the engine uses, so gradients accumulate in the same order
and agree to the last bit in all but pathological cases.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "RefValue",
    "ref_dot",
    "ref_sum",
    "safe_div",
    "safe_exp",
    "safe_log",
    "safe_pow",
]


# ---------------------------------------------------------------------------
# IEEE-754 arithmetic that never raises (the values C's libm returns)
# ---------------------------------------------------------------------------


def _is_odd_integer(y: float) -> bool:
    return math.isfinite(y) and y.is_integer() and math.fmod(y, 2.0) != 0.0


def safe_div(a: float, b: float) -> float:
    """a / b with IEEE semantics: x/0 = +-inf, 0/0 = nan/0 = nan."""
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def safe_pow(a: float, b: float) -> float:
    """C99 pow(a, b) (Annex F): math.pow raises only where libm gives inf or nan."""
    try:
        return math.pow(a, b)
    except (ValueError, OverflowError):
        pass
    # Here a and b are finite (math.pow handles the non-finite cases itself).
    if a == 0.0:  # pole: 0 ** negative
        return math.copysign(math.inf, a) if _is_odd_integer(b) else math.inf
    if a < 0.0 and not b.is_integer():  # negative base, fractional exponent
        return math.nan
    # overflow
    return -math.inf if (a < 0.0 and _is_odd_integer(b)) else math.inf


def safe_exp(a: float) -> float:
    """exp(a); inf on overflow instead of OverflowError."""
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf


def safe_log(a: float) -> float:
    """log(a): -inf at 0, nan below 0 and at nan, inf at inf."""
    if a > 0.0:
        return math.log(a)
    if a == 0.0:
        return -math.inf
    return math.nan


def _sigmoid(a: float) -> float:
    # 1 / (1 + exp(-a)) without overflow for large |a|
    if a >= 0.0:
        return 1.0 / (1.0 + safe_exp(-a))
    e = safe_exp(a)
    return e / (1.0 + e)


# Local derivatives, as functions so the conventions are written once.


def div_da(a: float, b: float) -> float:
    return safe_div(1.0, b)


def div_db(a: float, b: float) -> float:
    # -(a / b) / b, not -a / (b * b): b * b overflows (or underflows) for
    # |b| beyond ~1e154 (or below ~1e-154) where the derivative itself is
    # representable. PyTorch computes it this way too.
    return safe_div(-safe_div(a, b), b)


def pow_da(a: float, b: float) -> float:
    return 0.0 if b == 0.0 else b * safe_pow(a, b - 1.0)


def pow_db(a: float, b: float, y: float) -> float:
    return 0.0 if (a == 0.0 and b >= 0.0) else y * safe_log(a)


def relu_d(y: float) -> float:
    return 1.0 if y > 0.0 else 0.0


def abs_d(a: float) -> float:
    if a > 0.0:
        return 1.0
    if a < 0.0:
        return -1.0
    return a * 0.0  # 0 at 0, nan at nan


# ---------------------------------------------------------------------------
# The Value type
# ---------------------------------------------------------------------------


def _to_float(x: object, what: str) -> float:
    if isinstance(x, RefValue):
        raise TypeError(f"{what} must be a real number, got RefValue")
    if isinstance(x, numbers.Real):
        return float(x)
    try:  # numpy's bool_ is not registered as numbers.Real
        import numpy as np

        if isinstance(x, np.bool_):
            return 1.0 if x else 0.0
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{what} must be a real number, got {type(x).__name__}: {x!r}")


def _is_number(x: object) -> bool:
    try:
        _to_float(x, "")
    except TypeError:
        return False
    return True


class RefValue:
    """One scalar of the reference engine (micrograd's Value, extended)."""

    __slots__ = ("data", "grad", "_prev", "_op", "_backward")
    __array_ufunc__ = None  # numpy scalars defer to the reflected operators

    def __init__(self, data, _children=(), _op=""):
        self.data = _to_float(data, "RefValue(data)")
        self.grad = 0.0
        self._prev = tuple(_children)  # ordered parents, duplicates kept
        self._op = _op
        self._backward = _noop

    @property
    def is_leaf(self) -> bool:
        return not self._prev

    def __repr__(self):
        return f"RefValue(data={self.data!r}, grad={self.grad!r})"

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _wrap(x):
        if isinstance(x, RefValue):
            return x
        if _is_number(x):
            return RefValue(x)
        return None

    # -- binary ops -----------------------------------------------------------

    def __add__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        out = RefValue(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __radd__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        return other + self

    def __sub__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        out = RefValue(self.data - other.data, (self, other), "-")

        def _backward():
            self.grad += out.grad
            other.grad -= out.grad

        out._backward = _backward
        return out

    def __rsub__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        return other - self

    def __mul__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        out = RefValue(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += out.grad * other.data
            other.grad += out.grad * self.data

        out._backward = _backward
        return out

    def __rmul__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        return other * self

    def __truediv__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        out = RefValue(safe_div(self.data, other.data), (self, other), "/")

        def _backward():
            self.grad += out.grad * div_da(self.data, other.data)
            other.grad += out.grad * div_db(self.data, other.data)

        out._backward = _backward
        return out

    def __rtruediv__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        return other / self

    def __pow__(self, other):
        op = "**" if isinstance(other, RefValue) else f"**{other}"
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        out = RefValue(safe_pow(self.data, other.data), (self, other), op)

        def _backward():
            self.grad += out.grad * pow_da(self.data, other.data)
            other.grad += out.grad * pow_db(self.data, other.data, out.data)

        out._backward = _backward
        return out

    def __rpow__(self, other):
        other = self._wrap(other)
        if other is None:
            return NotImplemented
        return other**self

    # -- unary ops ------------------------------------------------------------

    def _unary(self, y, op, local):
        out = RefValue(y, (self,), op)

        def _backward():
            self.grad += out.grad * local(self.data, out.data)

        out._backward = _backward
        return out

    def __neg__(self):
        out = RefValue(-self.data, (self,), "neg")

        def _backward():
            self.grad -= out.grad

        out._backward = _backward
        return out

    def __pos__(self):
        return self

    def relu(self):
        y = 0.0 if self.data < 0.0 else self.data
        return self._unary(y, "ReLU", lambda a, y: relu_d(y))

    def tanh(self):
        return self._unary(math.tanh(self.data), "tanh", lambda a, y: 1.0 - y * y)

    def sigmoid(self):
        return self._unary(_sigmoid(self.data), "sigmoid", lambda a, y: y * (1.0 - y))

    def exp(self):
        return self._unary(safe_exp(self.data), "exp", lambda a, y: y)

    def log(self):
        return self._unary(safe_log(self.data), "log", lambda a, y: safe_div(1.0, a))

    def abs(self):
        return self._unary(math.fabs(self.data), "abs", lambda a, y: abs_d(a))

    __abs__ = abs

    # -- backward -------------------------------------------------------------

    def topo(self):
        """Nodes reachable from self, parents before children: the post-order
        of a depth-first search visiting parents in order (no recursion)."""
        order, seen = [], {id(self)}
        stack = [(self, iter(self._prev))]
        while stack:
            node, parents = stack[-1]
            for p in parents:
                if id(p) not in seen:
                    seen.add(id(p))
                    stack.append((p, iter(p._prev)))
                    break
            else:
                order.append(node)
                stack.pop()
        return order

    def backward(self, gradient=1.0):
        gradient = _to_float(gradient, "backward(gradient)")
        if self.is_leaf:
            self.grad += gradient
            return
        order = self.topo()
        for v in order:
            if not v.is_leaf:
                v.grad = 0.0
        self.grad = gradient
        for v in reversed(order):
            v._backward()


def _noop():
    pass


# ---------------------------------------------------------------------------
# n-ary ops
# ---------------------------------------------------------------------------


def _as_ref(x, where):
    v = RefValue._wrap(x)
    if v is None:
        raise TypeError(f"{where} must be a RefValue or a real number, got {type(x).__name__}")
    return v


def ref_sum(values, start=0):
    """Python's sum(values, start) as one node: start + v0 + v1 + ..."""
    values = list(values)
    if isinstance(start, RefValue):
        values = [start, *values]
        s = 0.0
    else:
        s = _to_float(start, "ref_sum(start)")
    kids = [_as_ref(v, f"ref_sum(): item {i}") for i, v in enumerate(values)]
    for k in kids:
        s += k.data
    out = RefValue(s, kids, "sum")

    def _backward():
        for k in kids:
            k.grad += out.grad

    out._backward = _backward
    return out


def ref_dot(ws, xs):
    """sum(w * x for w, x in zip(ws, xs)) as one node; numbers allowed on
    either side (they become constant leaves)."""
    ws, xs = list(ws), list(xs)
    if len(ws) != len(xs):
        raise ValueError(f"ref_dot(): sequences differ in length ({len(ws)} and {len(xs)})")
    wv = [_as_ref(w, f"ref_dot(): ws[{i}]") for i, w in enumerate(ws)]
    xv = [_as_ref(x, f"ref_dot(): xs[{i}]") for i, x in enumerate(xs)]
    s = 0.0
    for w, x in zip(wv, xv):
        s += w.data * x.data
    out = RefValue(s, wv + xv, "dot")

    def _backward():
        g = out.grad
        for w, x in zip(wv, xv):
            w.grad += g * x.data
            x.grad += g * w.data

    out._backward = _backward
    return out


def micrograd_readme_expression(a, b):
    """micrograd's README expression over any Value-like a and b (fastgrad's
    Value, RefValue, torch tensors) -> g. Written `x = x + ...` where the
    README writes `x += ...`: the same graph for Values, and no in-place ops
    on tensors. tests/test_engine.py keeps the README's literal text."""
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return g
