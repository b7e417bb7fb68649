import gc
import math

import fastgrad
from fastgrad import Value


def test_values_are_not_tracked_by_gc():
    a = Value(1.0)
    b = a * 2 + a
    assert gc.is_tracked(a) is False
    assert gc.is_tracked(b) is False


def test_installed_package_is_compiled():
    assert fastgrad._engine.__file__.endswith((".so", ".pyd"))
    assert math.isinf(Value(0.0).log().data)
