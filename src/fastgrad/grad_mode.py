"""Grad mode: ``no_grad`` and ``enable_grad``, per thread as in PyTorch.

Both work as context managers and as decorators, with or without
parentheses (``@no_grad`` and ``@no_grad()``), and on generator functions
(the mode then holds while the generator runs, not between its yields).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from fastgrad._engine import _set_grad_enabled

__all__ = ["no_grad", "enable_grad"]

_F = TypeVar("_F", bound=Callable[..., Any])


class _GradMode:
    """Shared body of no_grad and enable_grad."""

    _enabled: bool

    def __new__(cls, orig_func: Callable[..., Any] | None = None) -> Any:
        if orig_func is None:
            return super().__new__(cls)
        if not callable(orig_func):
            raise TypeError(f"{cls.__name__}() takes no arguments, or a function to "
                            f"decorate; got {type(orig_func).__name__}: {orig_func!r}")
        return cls()(orig_func)               # used as a bare decorator

    def __init__(self, orig_func: Callable[..., Any] | None = None) -> None:
        # modes to restore, one per __enter__, kept per thread: the mode is a
        # thread's own, and one instance may be shared between threads
        self._local = threading.local()

    def _saved(self) -> list[bool]:
        saved = getattr(self._local, "saved", None)
        if saved is None:
            saved = self._local.saved = []
        return saved

    def __enter__(self) -> _GradMode:
        self._saved().append(_set_grad_enabled(self._enabled))
        return self

    def __exit__(self, *exc_info: object) -> bool:
        _set_grad_enabled(self._saved().pop())
        return False

    def __call__(self, func: _F) -> _F:
        mode = type(self)
        if inspect.isgeneratorfunction(func):
            return _wrap_generator(func, mode)  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mode():
                return func(*args, **kwargs)
        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _wrap_generator(func: Callable[..., Any], mode: type[_GradMode]) -> Callable[..., Any]:
    """Run each step of the generator under `mode`, and the caller's code
    between steps under the caller's own mode."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = func(*args, **kwargs)
        try:
            with mode():
                response = gen.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with mode():
                        gen.close()
                    raise
                except BaseException as exc:
                    with mode():
                        response = gen.throw(exc)
                else:
                    with mode():
                        response = gen.send(request)
        except StopIteration as stop:
            return stop.value

    return wrapper


class no_grad(_GradMode):
    """Operations in this block (or decorated function) record no parents:
    results are leaves, nothing can be back-propagated, and inference is
    cheaper. Affects only the current thread.

    >>> with no_grad():
    ...     y = model(x)
    """

    _enabled = False


class enable_grad(_GradMode):
    """Turn graph recording back on, e.g. inside a ``no_grad()`` block."""

    _enabled = True
