import gc
import math

import pytest

import fastgrad
from fastgrad import Value


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
    g.backward()
    assert g.data == pytest.approx(24.7041, abs=1e-4)
    assert a.grad == pytest.approx(138.8338, abs=1e-4)
    assert b.grad == pytest.approx(645.5773, abs=1e-4)


def test_values_are_not_tracked_by_gc():
    a = Value(1.0)
    b = a * 2 + a
    assert gc.is_tracked(a) is False
    assert gc.is_tracked(b) is False


def test_installed_package_is_compiled():
    assert fastgrad._engine.__file__.endswith((".so", ".pyd"))
    assert math.isinf(Value(0.0).log().data)
