"""fastgrad: micrograd's scalar autograd, compiled.

``Value`` is one number in a computation graph. Build expressions with
``+ - * / **`` and ``relu tanh sigmoid exp log``, then call ``backward()``.
"""

from fastgrad._engine import Value, dot, enable_grad, is_grad_enabled, no_grad, sum

__version__ = "0.1.0"

__all__ = ["Value", "dot", "enable_grad", "is_grad_enabled", "no_grad", "sum"]
