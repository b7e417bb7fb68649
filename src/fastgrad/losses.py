"""Losses and the softmax family, built from the engine's fused nodes.

The seed's classification stack is ``softmax`` then ``cross_entropy(probs,
target) = -log(p_target)``. The fused ``cross_entropy_with_logits`` computes
the same number as ONE node through a stable log-sum-exp, and is the faster
and safer choice for training; ``bce_with_logits`` is its binary twin.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import fastgrad._engine as _engine
from fastgrad._engine import Value, logsumexp

__all__ = [
    "mse", "bce", "softmax", "log_softmax", "cross_entropy",
    "cross_entropy_with_logits", "bce_with_logits", "hinge", "logsumexp",
]

_REDUCTIONS = ("mean", "sum")


def _pairs(pred: Any, target: Any, fn: str) -> tuple[list[Any], list[Any]]:
    """Line up predictions and targets: a Value with one target, or two
    equal-length sequences."""
    if isinstance(pred, Value) or isinstance(pred, numbers.Real):
        if isinstance(target, (list, tuple)):
            if len(target) != 1:
                raise ValueError(f"{fn}(): one prediction but {len(target)} targets")
            target = target[0]
        return [pred], [target]
    if not isinstance(pred, Sequence) or isinstance(pred, str):
        raise TypeError(f"{fn}(): predictions must be a Value or a list of Values, "
                        f"got {type(pred).__name__}")
    if isinstance(target, Value) or isinstance(target, numbers.Real) or \
            not hasattr(target, "__len__"):
        raise TypeError(f"{fn}(): {len(pred)} predictions need a sequence of targets, "
                        f"got {type(target).__name__}: {target!r}")
    if len(pred) != len(target):
        raise ValueError(f"{fn}(): {len(pred)} predictions but {len(target)} targets")
    if len(pred) == 0:
        raise ValueError(f"{fn}(): got no predictions")
    return list(pred), list(target)


def _reduce(terms: list[Value], reduction: str, fn: str) -> Value:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}(): reduction must be 'mean' or 'sum', got {reduction!r}")
    total = terms[0] if len(terms) == 1 else _engine.sum(terms)
    return total / len(terms) if reduction == "mean" and len(terms) > 1 else total


def mse(pred: Any, target: Any, reduction: str = "mean") -> Value:
    """Mean squared error: mean((p - t)**2). ``pred`` a Value or a list,
    ``target`` numbers or Values of the same shape."""
    ps, ts = _pairs(pred, target, "mse")
    return _reduce([(p - t) ** 2 for p, t in zip(ps, ts)], reduction, "mse")


def _probability_target(t: Any, fn: str) -> float:
    if isinstance(t, Value):
        t = t.data
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (0.0 <= t <= 1.0):
        raise ValueError(f"{fn}(): targets must be numbers in [0, 1], got {t!r}")
    return float(t)


def bce(p: Any, y: Any, reduction: str = "mean") -> Value:
    """Binary cross-entropy of probabilities ``p`` in [0, 1] against targets
    ``y`` in [0, 1]: -(y log p + (1-y) log(1-p)), one node per term,
    computed as PyTorch's BCELoss: each log is bounded below by -100, so a
    probability of exactly 0 or 1 gives a finite loss, and the gradient
    (p - y) / max(p (1-p), 1e-12) stays finite and keeps pushing a
    saturated, wrong prediction back."""
    ps, ys = _pairs(p, y, "bce")
    terms = [_engine.bce(pi, _probability_target(yi, "bce")) for pi, yi in zip(ps, ys)]
    return _reduce(terms, reduction, "bce")


def bce_with_logits(logit: Any, y: Any, reduction: str = "mean") -> Value:
    """Binary cross-entropy from logits, one stable node per term:
    bce(sigmoid(x), y) without ever forming sigmoid(x)."""
    xs, ys = _pairs(logit, y, "bce_with_logits")
    terms = [_engine.bce_with_logits(x, _probability_target(t, "bce_with_logits"))
             for x, t in zip(xs, ys)]
    return _reduce(terms, reduction, "bce_with_logits")


def _logits(logits: Any, fn: str) -> list[Any]:
    if isinstance(logits, Value):
        return [logits]
    if not isinstance(logits, Sequence) or isinstance(logits, str) or len(logits) == 0:
        raise TypeError(f"{fn}() expects a non-empty list of Values, got {logits!r}")
    return list(logits)


def log_softmax(logits: Any) -> list[Value]:
    """log(softmax(logits)): logit_i - logsumexp(logits), stable for any range."""
    ls = _logits(logits, "log_softmax")
    lse = logsumexp(ls)
    return [li - lse for li in ls]


def softmax(logits: Any) -> list[Value]:
    """Probabilities exp(l_i) / sum_j exp(l_j), computed as exp(log_softmax)
    so the max is subtracted: stable at logits of +-1000."""
    return [v.exp() for v in log_softmax(logits)]


def _class_index(target: Any, n: int, fn: str) -> int:
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"{fn}(): target must be an int class index, got "
                        f"{type(target).__name__}: {target!r}")
    if not 0 <= target < n:
        raise IndexError(f"{fn}(): target {target!r} is out of range for {n} classes "
                         f"(accepted: 0 to {n - 1})")
    return int(target)


def cross_entropy(probs: Any, target: Any) -> Value:
    """The seed's cross-entropy: -log(probs[target]) for a list of
    probabilities (e.g. softmax's output) and a class index."""
    ps = _logits(probs, "cross_entropy")
    p = ps[_class_index(target, len(ps), "cross_entropy")]
    if not isinstance(p, Value):
        p = Value(p)
    return -p.log()


def cross_entropy_with_logits(logits: Any, target: Any) -> Value:
    """-log(softmax(logits)[target]) as ONE node (stable log-sum-exp);
    its gradient w.r.t. logit i is softmax_i - [i == target]."""
    ls = _logits(logits, "cross_entropy_with_logits")
    return _engine.cross_entropy_with_logits(ls, target)


def hinge(scores: Any, labels: Any, reduction: str = "mean") -> Value:
    """micrograd's max-margin loss: mean(relu(1 - y * s)) with labels +-1."""
    ss, ys = _pairs(scores, labels, "hinge")
    for y in ys:
        if (y.data if isinstance(y, Value) else y) not in (-1, 1):
            raise ValueError(f"hinge(): labels must be -1 or +1, got {y!r}")
    return _reduce([(1 - y * s).relu() for s, y in zip(ss, ys)], reduction, "hinge")
