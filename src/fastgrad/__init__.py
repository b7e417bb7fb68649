"""fastgrad: micrograd's scalar autograd, compiled.

``Value`` is one number in a computation graph. Build expressions with
``+ - * / **`` and ``relu tanh sigmoid exp log``, then call ``backward()``.
"""

from fastgrad._engine import Value, dot, enable_grad, is_grad_enabled, no_grad, sum
from fastgrad._random import default_generator, manual_seed

__version__ = "0.1.0"

# `sum` and `dot` stay out of __all__ so `from fastgrad import *` never
# shadows the builtin sum; call them as fastgrad.sum / fastgrad.dot.
__all__ = ["Value", "enable_grad", "is_grad_enabled", "manual_seed", "no_grad"]
