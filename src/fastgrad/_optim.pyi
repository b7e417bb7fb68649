# Hand-written stub of the compiled module fastgrad._optim.
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from fastgrad._engine import Value

_F64 = npt.NDArray[np.float64]

class ParamTable:
    """The Values one optimizer group updates, as a C array of their Nodes."""

    @property
    def values(self) -> tuple[Value, ...]: ...
    def __init__(self, values: Iterable[Value]) -> None: ...
    def __len__(self) -> int: ...
    def zero_grad(self) -> None: ...
    def sgd(
        self,
        decay: _F64,
        buf: _F64,
        lr: float,
        momentum: float,
        dampening: float,
        nesterov: bool,
        first: bool,
    ) -> None: ...
    def adam(
        self,
        decay: _F64,
        m: _F64,
        v: _F64,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        step: int,
        decoupled: bool,
    ) -> None: ...
