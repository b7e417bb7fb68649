"""Gradient checking: compare backward() with centered finite differences.

``numerical_grad(f, params)`` estimates df/dp for every parameter by nudging
its ``.data`` both ways; ``gradcheck(f, params)`` runs ``f().backward()``
and compares the two, as ``torch.autograd.gradcheck`` does::

    model = MLP(2, [4, 1])
    x = [Value(0.5), Value(-1.0)]
    gradcheck(lambda: model(x) ** 2, model)            # raises GradcheckError on a mismatch

Both leave every parameter exactly as they found it: ``.data`` bit for bit,
and ``.grad`` (a training loop's accumulated gradients survive a check).
``f`` must be deterministic -- put a model with Dropout in ``eval()`` mode.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastgrad._engine import Value
from fastgrad.grad_mode import enable_grad, no_grad

__all__ = ["GradcheckError", "GradcheckResult", "ParamMismatch", "gradcheck", "numerical_grad"]

# How many parameters a failure message lists (the result keeps them all).
_SHOWN = 5


class GradcheckError(RuntimeError):
    """Analytical and numerical gradients disagree (as torch's GradcheckError).

    ``.result`` holds the full :class:`GradcheckResult`.
    """

    def __init__(self, message: str, result: GradcheckResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ParamMismatch:
    """One parameter's comparison: where it is, both gradients, their gap."""

    index: int
    name: str | None
    analytical: float
    numerical: float
    abs_diff: float

    @property
    def label(self) -> str:
        """``name (index i)`` when the parameter is named, else ``params[i]``."""
        return f"{self.name} (index {self.index})" if self.name is not None else f"params[{self.index}]"


@dataclass(frozen=True)
class GradcheckResult:
    """The outcome of :func:`gradcheck`; truthy exactly when the check passed.

    Attributes
    ----------
    ok
        Every ``|analytical - numerical| <= atol + rtol * |numerical|``
        (a NaN anywhere fails).
    max_abs_diff
        The largest ``|analytical - numerical|`` (NaN if any gap is NaN).
    analytical, numerical
        The two gradients, one entry per parameter, in ``params`` order.
    worst
        The failing parameters, worst first (by gap over tolerance); when
        the check passed, the single parameter closest to failing.
    """

    ok: bool
    max_abs_diff: float
    analytical: list[float]
    numerical: list[float]
    worst: list[ParamMismatch]

    def __bool__(self) -> bool:
        return self.ok


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------

def _check_f(f: object) -> None:
    if not callable(f):
        raise TypeError(f"f must be a callable taking no arguments and returning a Value, "
                        f"got {type(f).__name__}: {f!r}")


def _check_number(name: str, value: object, *, positive: bool) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if positive and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not positive and not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _collect(params: object) -> tuple[list[Value], list[str | None]]:
    """Parameters and their names from a Module, named pairs, or plain Values.

    A Module-like object is asked for ``named_parameters()`` (for the names)
    or else ``parameters()``. An iterable may mix bare Values and
    ``(name, Value)`` pairs.
    """
    if callable(getattr(params, "named_parameters", None)):
        params = params.named_parameters()  # type: ignore[union-attr]
    elif callable(getattr(params, "parameters", None)):
        params = params.parameters()  # type: ignore[union-attr]
    if isinstance(params, Mapping):
        params = params.items()
    if isinstance(params, Value) or not isinstance(params, Iterable):
        raise TypeError(f"params must be an iterable of Values (or (name, Value) pairs, or a "
                        f"Module), got {type(params).__name__}")
    values: list[Value] = []
    names: list[str | None] = []
    for i, item in enumerate(params):
        if isinstance(item, Value):
            values.append(item)
            names.append(None)
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], Value)):
            names.append(item[0])
            values.append(item[1])
        else:
            raise TypeError(f"params[{i}] must be a Value or a (name, Value) pair, "
                            f"got {type(item).__name__}: {item!r}")
    if not values:
        raise ValueError("params is empty: pass the Values that f is computed from")
    return values, names


def _call(f: Callable[[], Any]) -> float:
    """Evaluate ``f()`` and return its number, insisting it is a Value."""
    return _checked(f()).data


def _checked(out: object) -> Value:
    """``out`` itself if it is a Value, else a TypeError naming its type."""
    if not isinstance(out, Value):
        raise TypeError(f"f() must return a single Value, got {type(out).__name__}: {out!r}"
                        + (" (reduce it to one Value, e.g. with fastgrad.sum)"
                           if isinstance(out, (list, tuple)) else ""))
    return out


# ---------------------------------------------------------------------------
# The two checks
# ---------------------------------------------------------------------------

def _numerical(f: Callable[[], Any], values: list[Value], eps: float) -> list[float]:
    saved = [(p.data, p.grad) for p in values]
    grads = []
    try:
        with no_grad():
            for i, (p, (x, _)) in enumerate(zip(values, saved)):
                hi, lo = x + eps, x - eps
                if hi == lo:
                    raise ValueError(
                        f"eps={eps!r} is below the floating-point resolution of params[{i}] "
                        f"(data={x!r}): x + eps == x - eps, so no difference can be taken; "
                        f"use a larger eps")
                p.data = hi
                f_hi = _call(f)
                p.data = lo
                f_lo = _call(f)
                p.data = x
                # Divide by the step actually taken: (x+eps)-(x-eps) is not
                # exactly 2*eps in floating point, and this is more accurate.
                grads.append((f_hi - f_lo) / (hi - lo))
    finally:
        for p, (x, g) in zip(values, saved):
            p.data = x
            p.grad = g
    return grads


def numerical_grad(f: Callable[[], Value], params: Any, eps: float = 1e-6) -> list[float]:
    """Centered finite-difference gradient of ``f()`` with respect to each parameter.

    For each parameter ``p``: ``(f(p + eps) - f(p - eps)) / (2 eps)``, the
    other parameters held fixed, evaluated under ``no_grad()`` (no graph is
    built). Every parameter's ``.data`` is restored bit for bit afterwards,
    and its ``.grad`` left as it was, even if ``f`` raises.

    Parameters
    ----------
    f
        Called with no arguments; returns a scalar ``Value`` computed from
        ``params``. It must be deterministic.
    params
        An iterable of Values, of ``(name, Value)`` pairs (as
        ``named_parameters()`` gives), or a Module (anything with a callable
        ``parameters`` or ``named_parameters``).
    eps
        The step, finite and > 0.

    Returns
    -------
    list[float]
        One derivative per parameter, in ``params`` order.
    """
    _check_f(f)
    eps = _check_number("eps", eps, positive=True)
    values, _ = _collect(params)
    return _numerical(f, values, eps)


def gradcheck(
    f: Callable[[], Value],
    params: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> GradcheckResult:
    """Check ``f().backward()``'s gradients against finite differences.

    The analytical gradients come from one ``f()`` and one ``backward()``
    with the parameters' grads zeroed first; afterwards each ``.grad`` is put
    back to what it was, so a check in the middle of training changes
    nothing. The numerical ones come from :func:`numerical_grad`. A
    parameter fails when ``|analytical - numerical| > atol + rtol *
    |numerical|``, or when either is NaN.

    Parameters
    ----------
    f
        Called with no arguments; returns a scalar ``Value`` computed from
        ``params``. It must be deterministic (Dropout in ``eval()`` mode).
    params
        An iterable of Values, of ``(name, Value)`` pairs, or a Module;
        names, when known, appear in the report.
    eps
        Finite-difference step, finite and > 0.
    atol, rtol
        Absolute and relative tolerances, >= 0.
    raise_exception
        Raise :class:`GradcheckError` on failure (default); if False,
        return a falsy result instead.

    Returns
    -------
    GradcheckResult
        Truthy when the check passed.

    Raises
    ------
    GradcheckError
        On a mismatch (unless ``raise_exception=False``) naming the worst
        parameters with both gradients.
    """
    _check_f(f)
    eps = _check_number("eps", eps, positive=True)
    atol = _check_number("atol", atol, positive=False)
    rtol = _check_number("rtol", rtol, positive=False)
    if not isinstance(raise_exception, bool):
        raise TypeError(f"raise_exception must be True or False, got "
                        f"{type(raise_exception).__name__}: {raise_exception!r}")
    values, names = _collect(params)

    saved_grads = [p.grad for p in values]
    try:
        for p in values:
            p.grad = 0.0
        with enable_grad():
            _checked(f()).backward()
        analytical = [p.grad for p in values]
    finally:
        for p, g in zip(values, saved_grads):
            p.grad = g
    numerical = _numerical(f, values, eps)

    scored = []  # (gap / tolerance, entry); NaN counts as infinitely bad
    for i, (a, n) in enumerate(zip(analytical, numerical)):
        diff = abs(a - n)
        tol = atol + rtol * abs(n)
        if math.isnan(diff):
            ratio = math.inf
        elif diff == 0.0:
            ratio = 0.0
        else:
            ratio = diff / tol if tol > 0 else math.inf
        scored.append((ratio, diff <= tol, ParamMismatch(i, names[i], a, n, diff)))
    scored.sort(key=lambda s: s[0], reverse=True)
    failing = [entry for _, passed, entry in scored if not passed]
    diffs = [entry.abs_diff for _, _, entry in scored]
    max_abs_diff = math.nan if any(map(math.isnan, diffs)) else max(diffs)
    result = GradcheckResult(
        ok=not failing,
        max_abs_diff=max_abs_diff,
        analytical=analytical,
        numerical=numerical,
        worst=failing if failing else [scored[0][2]],
    )
    if failing and raise_exception:
        raise GradcheckError(_report(result, len(values), eps, atol, rtol), result)
    return result


def _report(result: GradcheckResult, count: int, eps: float, atol: float, rtol: float) -> str:
    lines = [
        f"gradcheck failed: {len(result.worst)} of {count} gradients differ from finite "
        f"differences (eps={eps:g}, atol={atol:g}, rtol={rtol:g}); "
        f"max |analytical - numerical| = {result.max_abs_diff:.6g}"
    ]
    for m in result.worst[:_SHOWN]:
        lines.append(f"  {m.label}: analytical={m.analytical!r} numerical={m.numerical!r} "
                     f"|diff|={m.abs_diff:.6g} > tolerance {atol + rtol * abs(m.numerical):.6g}")
    if len(result.worst) > _SHOWN:
        lines.append(f"  ... and {len(result.worst) - _SHOWN} more (see GradcheckError.result.worst)")
    return "\n".join(lines)
