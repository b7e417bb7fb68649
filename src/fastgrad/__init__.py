"""fastgrad: micrograd's scalar autograd, compiled.

``Value`` is one number in a computation graph. Build expressions with
``+ - * / **`` and ``relu tanh sigmoid exp log``, then call ``backward()``.
On top: modules (``fastgrad.nn``), losses, optimizers (``fastgrad.optim``).
"""

from fastgrad import data, losses, nn, optim
from fastgrad._engine import (
    Value,
    dot,
    empty_cache,
    is_grad_enabled,
    logsumexp,
    sum,
)
from fastgrad._random import default_generator, manual_seed
from fastgrad.checkpoint import load_checkpoint, save_checkpoint
from fastgrad.data import DataLoader, make_moons, make_spiral
from fastgrad.grad_mode import enable_grad, no_grad
from fastgrad.gradcheck import GradcheckError, GradcheckResult, gradcheck, numerical_grad
from fastgrad.losses import (
    bce,
    bce_with_logits,
    cross_entropy,
    cross_entropy_with_logits,
    hinge,
    log_softmax,
    mse,
    softmax,
)
from fastgrad.nn import MLP, Dropout, Layer, Module, Neuron, Sequential
from fastgrad.optim import SGD, Adam, AdamW, Momentum, Optimizer

__version__ = "0.1.0"

# `sum` and `dot` stay out of __all__ so `from fastgrad import *` never
# shadows the builtin sum; call them as fastgrad.sum / fastgrad.dot.
__all__ = [
    "Value", "no_grad", "enable_grad", "is_grad_enabled", "logsumexp", "manual_seed",
    "empty_cache", "default_generator",
    "Module", "Neuron", "Layer", "MLP", "Dropout", "Sequential",
    "mse", "bce", "bce_with_logits", "softmax", "log_softmax", "cross_entropy",
    "cross_entropy_with_logits", "hinge",
    "Optimizer", "SGD", "Momentum", "Adam", "AdamW",
    "DataLoader", "make_moons", "make_spiral", "save_checkpoint", "load_checkpoint",
    "numerical_grad", "gradcheck", "GradcheckError", "GradcheckResult",
]
