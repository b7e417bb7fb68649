"""Modules: Module, Neuron, Layer, MLP, Dropout, Sequential.

micrograd's classes with micrograd's signatures and behaviour (the last layer
of an MLP is linear; a one-output model returns a Value, else a list), plus
PyTorch's habits: ``named_parameters()``, ``train()``/``eval()``,
``state_dict()``/``load_state_dict()``. A neuron is ONE graph node (a fused
dot product with bias and activation), and a layer is built by one call into
the compiled engine.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any, NamedTuple

from fastgrad import _engine
from fastgrad._engine import Value
from fastgrad._optim import ParamTable
from fastgrad._random import default_generator

__all__ = ["Module", "Neuron", "Layer", "MLP", "Dropout", "Sequential"]

# Activation names accepted by Neuron/Layer/MLP, and the engine's codes.
_ACTS = {"linear": 0, "none": 0, "identity": 0, None: 0, "relu": 1, "tanh": 2, "sigmoid": 3}
_ACT_TITLES = {0: "Linear", 1: "ReLU", 2: "Tanh", 3: "Sigmoid"}


def _act_code(act: Any) -> int:
    key = act.lower() if isinstance(act, str) else act
    if key not in _ACTS:
        raise ValueError(
            f"unknown activation {act!r} (accepted: 'relu', 'tanh', 'sigmoid', 'linear' or None)")
    return _ACTS[key]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped (as PyTorch returns)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of fastgrad's modules.

    Parameters are found by one generic walk over instance attributes (names
    starting with ``_`` are private and skipped): a ``Value`` is a scalar
    parameter, a list or tuple of Values a vector parameter, a ``Module`` or
    a list of Modules a child. Names are dotted paths, e.g.
    ``layers.1.neurons.3.w.0`` (a weight) and ``layers.1.neurons.3.b`` (a bias).
    """

    training: bool = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no forward() or __call__()")

    # -- the generic walker ------------------------------------------------

    def _members(self) -> list[tuple[str, Any]]:
        """(dotted name, member) for this module and everything below it,
        depth first in attribute order: Modules, Values and Value lists."""
        out: list[tuple[str, Any]] = []
        self._walk("", out)
        return out

    def _walk(self, prefix: str, out: list[tuple[str, Any]]) -> None:
        out.append((prefix, self))
        for attr, value in vars(self).items():
            if attr[0] == "_":
                continue
            if isinstance(value, Module):
                value._walk(f"{prefix}{attr}.", out)
            elif type(value) is Value:
                out.append((prefix + attr, value))
            elif isinstance(value, (list, tuple)) and value:
                if _engine.all_values(value):
                    out.append((prefix + attr, value))
                    continue
                for i, child in enumerate(value):
                    if isinstance(child, Module):
                        child._walk(f"{prefix}{attr}.{i}.", out)

    def named_modules(self) -> Iterator[tuple[str, Module]]:
        """Yield (name, module) for this module ('') and every submodule."""
        for name, m in self._members():
            if isinstance(m, Module):
                yield name[:-1], m

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def _tensors(self) -> Iterator[tuple[str, Value | list[Value] | tuple[Value, ...]]]:
        for name, m in self._members():
            if not isinstance(m, Module):
                yield name, m

    def named_parameters(self) -> Iterator[tuple[str, Value]]:
        """Yield (dotted name, Value) for every scalar parameter."""
        for name, t in self._tensors():
            if isinstance(t, Value):
                yield name, t
            else:
                for i, v in enumerate(t):
                    yield f"{name}.{i}", v

    def parameters(self) -> list[Value]:
        """All scalar parameters, in the order of named_parameters()."""
        params: list[Value] = []
        for _, t in self._tensors():
            if isinstance(t, Value):
                params.append(t)
            else:
                params.extend(t)
        return params

    def zero_grad(self) -> None:
        """Set the grad of every parameter to 0 (one compiled loop)."""
        ParamTable(self.parameters()).zero_grad()

    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout active) here and in every submodule."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {mode!r}")
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Set evaluation mode (Dropout is the identity); same as train(False)."""
        return self.train(False)

    # -- state -------------------------------------------------------------

    def _named_tensors(self, what: str) -> dict[str, Any]:
        """The walker's tensors, after checking that an overridden
        parameters() (micrograd style) returns nothing the walker misses:
        state dicts name parameters by attribute, and a Value kept elsewhere
        (say, in a dict) would silently not be saved or loaded."""
        tensors = dict(self._tensors())
        if type(self).parameters is not Module.parameters:
            seen = {id(v) for t in tensors.values()
                    for v in ((t,) if isinstance(t, Value) else t)}
            params = self.parameters()
            hidden = sum(1 for p in params if id(p) not in seen)
            if hidden:
                raise TypeError(
                    f"{type(self).__name__}.{what}: {hidden} of the {len(params)} Values "
                    "returned by parameters() are not reachable as attributes (a Value, "
                    "a list or tuple of Values, or a Module, possibly in a list), so they "
                    "cannot be named, saved or loaded; keep parameters in such attributes")
        return tensors

    def state_dict(self) -> dict[str, float | list[float]]:
        """{name: float} for scalar parameters, {name: [floats]} for vectors."""
        return {name: (t.data if isinstance(t, Value) else [v.data for v in t])
                for name, t in self._named_tensors("state_dict()").items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy parameter values from ``state`` (as made by state_dict()).

        Every problem -- missing, unexpected, mis-sized or non-numeric entries
        -- is collected first and reported in ONE ValueError, and then
        nothing has changed. With ``strict=False`` missing and unexpected keys
        are allowed (and returned); mis-sized entries are still errors.
        """
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict() expects a dict, got {type(state).__name__}")
        tensors = self._named_tensors("load_state_dict()")
        missing = [k for k in tensors if k not in state]
        unexpected = [k for k in state if k not in tensors]
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        staged: list[tuple[Value, float]] = []
        for name, t in tensors.items():
            if name not in state:
                continue
            value = state[name]
            if isinstance(t, Value):
                if not _is_real(value):
                    problems.append(f"{name}: expected a number, got {_describe(value)}")
                else:
                    staged.append((t, float(value)))
            elif not isinstance(value, (list, tuple)) or len(value) != len(t):
                problems.append(f"{name}: expected a list of {len(t)} numbers, got {_describe(value)}")
            elif not all(_is_real(v) for v in value):
                bad = next(v for v in value if not _is_real(v))
                problems.append(f"{name}: expected numbers, found {_describe(bad)}")
            else:
                staged.extend(zip(t, map(float, value)))
        if problems:
            raise ValueError(
                f"Error(s) in loading state_dict for {type(self).__name__}: " + "; ".join(problems))
        for v, x in staged:
            v.data = x
        return IncompatibleKeys(missing, unexpected)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _describe(x: Any) -> str:
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}"
    text = repr(x)
    return f"{type(x).__name__} {text[:40]}"


class Neuron(Module):
    """``act(w . x + b)`` with ``nin`` weights drawn uniformly from [-1, 1]
    (micrograd's init) and bias 0. ``nonlin=False`` makes it linear;
    ``act`` picks the nonlinearity: 'relu' (default), 'tanh', 'sigmoid'."""

    def __init__(self, nin: int, nonlin: bool = True, act: str | None = "relu") -> None:
        nin = _positive_int("nin", nin)
        code = _act_code(act)          # validated even when nonlin=False
        if not nonlin:
            code = 0
        self.w = [Value(x) for x in default_generator().uniform(-1.0, 1.0, nin).tolist()]
        self.b = Value(0.0)
        self.nonlin = bool(nonlin) and code != 0
        self._act = code

    def __call__(self, x: Any) -> Value:
        if isinstance(x, Value):
            x = [x]
        return _engine.affine(self.w, x, self.b, self._act)

    def __repr__(self) -> str:
        return f"{_ACT_TITLES[self._act]}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons over the same ``nin`` inputs; keyword arguments go to
    each Neuron. Returns a list of Values, or a Value when ``nout == 1``."""

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        nout = _positive_int("nout", nout)
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self._act = self.neurons[0]._act

    def __call__(self, x: Any) -> Value | list[Value]:
        if isinstance(x, Value):
            x = [x]
        out = _engine.layer(self.neurons, x, self._act)
        return out[0] if len(out) == 1 else out

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class Dropout(Module):
    """In training mode, zero each input with probability ``p`` and scale the
    kept ones by ``1/(1-p)``; in eval mode, the identity. Takes a Value or a
    list of Values (or numbers) and returns the same shape."""

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0.0 <= p < 1.0) \
                or math.isnan(p):
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def __call__(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            return x
        single = not isinstance(x, (list, tuple))
        xs = [x] if single else x
        keep = (default_generator().random(len(xs)) >= self.p).tolist()
        scale = 1.0 / (1.0 - self.p)
        out = [xi * scale if k else Value(0.0) for xi, k in zip(xs, keep)]
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class MLP(Module):
    """micrograd's multi-layer perceptron: ``MLP(nin, [h1, ..., nout])``.

    Hidden layers use ``act`` ('relu' by default, 'tanh', 'sigmoid'); the last
    layer is linear. ``dropout`` > 0 puts a Dropout after every hidden layer
    (active only in training mode). One output returns a Value, several a list.
    """

    def __init__(self, nin: int, nouts: list[int], act: str | None = "relu",
                 dropout: float = 0.0) -> None:
        if not isinstance(nouts, (list, tuple)) or not nouts:
            raise ValueError(f"nouts must be a non-empty list of layer sizes, got {nouts!r}")
        sz = [_positive_int("nin", nin)] + [_positive_int("layer size", n) for n in nouts]
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1, act=act)
                       for i in range(len(nouts))]
        self.dropout = Dropout(dropout)

    def __call__(self, x: Any) -> Value | list[Value]:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i != last:
                x = self.dropout(x)
        return x

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


class Sequential(Module):
    """Apply modules (or any callables) in order: ``Sequential(m1, m2, ...)``."""

    def __init__(self, *modules: Any) -> None:
        for i, m in enumerate(modules):
            if not callable(m):
                raise TypeError(f"Sequential: item {i} is not callable: {m!r}")
        self.layers = list(modules)

    def __call__(self, x: Any) -> Any:
        for m in self.layers:
            x = m(x)
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Any:
        return self.layers[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(repr(m) for m in self.layers) + ")"
