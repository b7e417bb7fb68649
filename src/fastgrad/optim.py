"""Optimizers: SGD (with momentum and Nesterov), Momentum, Adam, AdamW.

Each optimizer keeps PyTorch's shape -- ``param_groups`` (a list of dicts of
hyperparameters), ``zero_grad()``, ``step()``, ``state_dict()`` and
``load_state_dict()`` -- and hands the arithmetic of a step to one compiled
loop over all the parameters of a group (``fastgrad._optim``).

Weight decay is the L2 form ``grad <- grad + weight_decay * w`` (AdamW:
decoupled, ``w <- w - lr * weight_decay * w``). Which parameters it touches
depends on what you pass:

* ``model.named_parameters()`` (names known): only those whose name
  ``decay_filter(name)`` accepts. The default filter, :func:`is_weight`,
  accepts every parameter except biases (a name whose last part is ``b`` or
  ``bias``), so biases are not regularised.
* ``model.parameters()`` (bare Values): all of them, as in PyTorch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from fastgrad._engine import Value
from fastgrad._optim import ParamTable

__all__ = ["SGD", "Momentum", "Adam", "AdamW", "Optimizer", "is_weight"]


def is_weight(name: str) -> bool:
    """The default decay filter: False for a bias, True for everything else.

    A bias is a parameter whose dotted name ends in ``b`` or ``bias``
    (``layers.0.neurons.3.b``), optionally followed by an index.
    """
    parts = [p for p in name.split(".") if not p.isdigit()]
    return not parts or parts[-1] not in ("b", "bias")


def _number(name: str, value: Any, low: float = 0.0, below: float | None = None) -> float:
    """Validate a hyperparameter: a finite real number in [low, below)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < low or (below is not None and v >= below):
        accepted = f"in [{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"Invalid {name}: {value!r} (accepted: a finite number {accepted})")
    return v


_MAX_STEP = 2**62   # step counts beyond this would overflow the kernel's C long


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


class Optimizer:
    """Base class: parameter groups, decay masks, zero_grad and state dicts.

    Subclasses define ``defaults`` validation (``_check_hyper``), the names
    of their per-parameter buffers (``_buffers``) and ``_update``.
    """

    _buffers: tuple[str, ...] = ()

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        decay_filter: Callable[[str], bool] | None = None,
    ) -> None:
        if decay_filter is not None and not callable(decay_filter):
            raise TypeError(f"decay_filter must be callable, got {type(decay_filter).__name__}")
        self.defaults = self._check_hyper(dict(defaults))
        self.decay_filter = decay_filter or is_weight
        self.param_groups: list[dict[str, Any]] = []
        self._tables: list[ParamTable] = []
        self._names: list[list[str] | None] = []
        self.state: list[dict[str, Any]] = []
        seen: set[int] = set()
        for group in self._split_groups(params):
            self._add_group(group, seen)

    # -- construction ------------------------------------------------------

    @staticmethod
    def _split_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
        if isinstance(params, Value):
            raise TypeError(
                "params must be an iterable of Values, (name, Value) pairs or "
                "dicts, got a single Value; wrap it in a list")
        if isinstance(params, dict):
            raise TypeError("params must be an iterable; pass a list of param-group dicts")
        items = list(params)
        if not items:
            raise ValueError("optimizer got an empty parameter list")
        if all(isinstance(g, dict) for g in items):
            return [dict(g) for g in items]
        if any(isinstance(g, dict) for g in items):
            raise TypeError("params mixes param-group dicts with other items")
        return [{"params": items}]

    def _add_group(self, group: dict[str, Any], seen: set[int]) -> None:
        if "params" not in group:
            raise ValueError(f"a param group needs a 'params' entry, got keys {sorted(group)}")
        raw = group.pop("params")
        if isinstance(raw, Value):
            raw = [raw]
        raw = list(raw)
        if not raw:
            raise ValueError(f"param group {len(self.param_groups)} has no parameters")
        named = all(isinstance(p, tuple) and len(p) == 2 for p in raw)
        values = [p[1] for p in raw] if named else raw
        names = [str(p[0]) for p in raw] if named else None
        for i, v in enumerate(values):
            if not isinstance(v, Value):
                raise TypeError(
                    f"parameter {i} of group {len(self.param_groups)} must be a Value "
                    f"(or a (name, Value) pair), got {type(v).__name__}: {v!r}")
            if id(v) in seen:
                label = names[i] if names else f"parameter {i}"
                raise ValueError(f"{label} appears more than once in the optimizer")
            seen.add(id(v))
        unknown = set(group) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {sorted(unknown)} in param group "
                f"(accepted: {sorted(self.defaults)})")
        hyper = self._check_hyper({**self.defaults, **group})
        n = len(values)
        table = ParamTable(values)
        hyper["params"] = table.values        # a tuple: the table's own
        self.param_groups.append(hyper)
        self._tables.append(table)
        self._names.append(names)
        self.state.append({"step": 0, **{b: np.zeros(n) for b in self._buffers}})

    def _check_hyper(self, hyper: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _decay(self, index: int, wd: float) -> np.ndarray:
        """Per-parameter weight decay `wd` of group `index` (0 where the
        decay filter refuses the parameter's name)."""
        names = self._names[index]
        if names is None or wd == 0.0:
            return np.full(len(self.param_groups[index]["params"]), wd)
        return np.array([wd if self.decay_filter(n) else 0.0 for n in names])

    # -- training ----------------------------------------------------------

    def _table(self, i: int) -> ParamTable:
        """Group i's compiled table, rebuilt if ``group["params"]`` was
        replaced (state buffers are positional, so the size must not change)."""
        table, params = self._tables[i], self.param_groups[i]["params"]
        if params is table.values:
            return table
        params = tuple(params)
        if len(params) != len(table):
            raise RuntimeError(
                f"param group {i} now has {len(params)} parameters instead of "
                f"{len(table)}; create a new optimizer (or use add_param_group)")
        table = ParamTable(params)             # TypeError names a non-Value
        self._tables[i] = table
        self.param_groups[i]["params"] = table.values
        return table

    def zero_grad(self) -> None:
        """Set the grad of every parameter to 0."""
        for i in range(len(self._tables)):
            self._table(i).zero_grad()

    def step(self) -> None:
        """Update every parameter from its current grad.

        Hyperparameters changed in ``param_groups`` since construction are
        used as they are; a bad one raises the same error as the constructor
        would, and then nothing has changed (not even the step count)."""
        # every group is checked before any is updated: all or nothing
        checked = [(self._table(i),
                    self._check_hyper({k: v for k, v in group.items() if k != "params"}))
                   for i, group in enumerate(self.param_groups)]
        for i, (table, hyper) in enumerate(checked):
            state = self.state[i]
            if "_decay" not in state or state["_decay_wd"] != hyper["weight_decay"]:
                state["_decay"] = self._decay(i, hyper["weight_decay"])
                state["_decay_wd"] = hyper["weight_decay"]
            self._update(table, hyper, state, state["step"] + 1)
            state["step"] += 1

    def _update(self, table: ParamTable, group: dict[str, Any], state: dict[str, Any],
                step: int) -> None:
        raise NotImplementedError

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (PyTorch's API)."""
        if not isinstance(group, dict):
            raise TypeError(f"add_param_group() expects a dict, got {type(group).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        self._add_group(dict(group), seen)

    # -- state -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step counts and buffers, as plain JSON-able data."""
        groups = []
        for i, group in enumerate(self.param_groups):
            entry = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in group.items() if k != "params"}
            entry["num_params"] = len(group["params"])
            entry["names"] = None if self._names[i] is None else list(self._names[i])
            groups.append(entry)
        state = [{"step": s["step"], **{b: s[b].tolist() for b in self._buffers}}
                 for s in self.state]
        return {"type": type(self).__name__, "param_groups": groups, "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state_dict() of the same optimizer type over the same
        parameters. Everything is validated first; on any problem a
        ValueError names it and the optimizer is left unchanged."""
        staged = self._check_state_dict(state_dict)
        for i, (hyper, step, buffers) in enumerate(staged):
            self.param_groups[i].update(hyper)
            self.state[i] = {"step": step, **buffers}

    def _check_state_dict(self, sd: Any) -> list[tuple[dict[str, Any], int, dict[str, np.ndarray]]]:
        name = type(self).__name__
        if not isinstance(sd, dict):
            raise TypeError(f"{name}.load_state_dict() expects a dict, got {type(sd).__name__}")
        problems = []
        if sd.get("type") != name:
            raise ValueError(f"optimizer state is for {sd.get('type')!r}, not {name!r}")
        groups, states = sd.get("param_groups"), sd.get("state")
        if not isinstance(groups, list) or not isinstance(states, list):
            raise ValueError("optimizer state needs 'param_groups' and 'state' lists")
        if len(groups) != len(self.param_groups) or len(states) != len(self.param_groups):
            raise ValueError(
                f"optimizer state has {len(groups)} param groups, this {name} has "
                f"{len(self.param_groups)}")
        staged = []
        for i, (g, s) in enumerate(zip(groups, states)):
            n = len(self.param_groups[i]["params"])
            if not isinstance(g, dict) or not isinstance(s, dict):
                raise ValueError(f"param group {i}: entries must be dicts")
            if g.get("num_params") != n:
                problems.append(f"group {i} has {g.get('num_params')!r} parameters, expected {n}")
            saved_names, names = g.get("names"), self._names[i]
            if saved_names is not None and (not isinstance(saved_names, list) or
                                            len(saved_names) != n):
                problems.append(f"group {i}: 'names' must be a list of {n} names or null, "
                                f"got {_short(saved_names)}")
            elif saved_names is not None and names is not None and saved_names != names:
                k = next(k for k in range(n) if saved_names[k] != names[k])
                problems.append(f"group {i}: parameter {k} is {saved_names[k]!r} in the saved "
                                f"state but {names[k]!r} here")
            hyper = {k: v for k, v in g.items() if k not in ("num_params", "names")}
            missing = set(self.defaults) - set(hyper)
            extra = set(hyper) - set(self.defaults)
            if missing or extra:
                problems.append(f"group {i}: missing hyperparameters {sorted(missing)}, "
                                f"unexpected {sorted(extra)}")
                continue
            try:
                hyper = self._check_hyper(hyper)
            except (TypeError, ValueError) as e:
                problems.append(f"group {i}: {e}")
                continue
            step = s.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < _MAX_STEP:
                problems.append(f"group {i}: step must be an int in [0, 2**62), got {_short(step)}")
            buffers = {}
            for b in self._buffers:
                arr = s.get(b)
                if not isinstance(arr, (list, tuple, np.ndarray)) or len(arr) != n or \
                        not all(_is_real(x) for x in arr):
                    problems.append(f"group {i}: buffer {b!r} must be a list of {n} numbers, "
                                    f"got {_short(arr)}")
                else:
                    buffers[b] = np.array(arr, dtype=np.float64)
            staged.append((hyper, step, buffers))
        if problems:
            raise ValueError(f"cannot load {name} state: " + "; ".join(problems))
        return staged

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        sizes = [len(g["params"]) for g in self.param_groups]
        return f"{type(self).__name__}({hyper}, params={sizes})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``SGD(params, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
    dampening=0.0, decay_filter=None)`` with PyTorch's update rule.
    """

    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0, decay_filter=None) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov),
                         decay_filter)

    def _check_hyper(self, h):
        h["lr"] = _number("learning rate", h["lr"])
        h["momentum"] = _number("momentum value", h["momentum"])
        h["dampening"] = _number("dampening", h["dampening"])
        h["weight_decay"] = _number("weight_decay value", h["weight_decay"])
        if not isinstance(h["nesterov"], bool):
            raise TypeError(f"nesterov must be a bool, got {h['nesterov']!r}")
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError(
                f"Nesterov momentum requires momentum > 0 and zero dampening, got "
                f"momentum={h['momentum']!r}, dampening={h['dampening']!r}")
        return h

    def _update(self, table, group, state, step):
        table.sgd(state["_decay"], state["momentum_buffer"], group["lr"],
                  group["momentum"], group["dampening"], group["nesterov"],
                  step == 1)


class Momentum(SGD):
    """SGD with momentum (0.9 by default): the seed's ``Momentum`` optimizer,
    the same kernel as :class:`SGD`."""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9,
                 weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0, decay_filter=None) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         nesterov=nesterov, dampening=dampening, decay_filter=decay_filter)


class Adam(Optimizer):
    """Adam with PyTorch's update rule; ``weight_decay`` is the L2 form
    (added to the gradient)."""

    _buffers = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decay_filter=None) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
                         decay_filter)

    def _check_hyper(self, h):
        h["lr"] = _number("learning rate", h["lr"])
        h["eps"] = _number("epsilon value", h["eps"])
        h["weight_decay"] = _number("weight_decay value", h["weight_decay"])
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        h["betas"] = (_number("beta parameter at index 0", betas[0], 0.0, 1.0),
                      _number("beta parameter at index 1", betas[1], 0.0, 1.0))
        return h

    def _update(self, table, group, state, step):
        beta1, beta2 = group["betas"]
        table.adam(state["_decay"], state["exp_avg"], state["exp_avg_sq"], group["lr"],
                   beta1, beta2, group["eps"], step, self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (``w <- w - lr * weight_decay * w``),
    weight_decay 1e-2 by default, as torch.optim.AdamW."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, decay_filter=None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decay_filter=decay_filter)
