"""Mini-batches and small built-in datasets.

``DataLoader`` cuts a dataset into ``(x_batch, y_batch)`` mini-batches, the
way ``torch.utils.data.DataLoader`` does, for the seed's training loop::

    for x_batch, y_batch in DataLoader(dataset, batch_size=32, shuffle=True):
        for x_vals, y in zip(x_batch, y_batch):
            xv = [Value(v) for v in x_vals]
            ...

``make_moons`` and ``make_spiral`` build the two classic 2-D toy problems
with numpy alone.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from fastgrad import _random

__all__ = ["DataLoader", "make_moons", "make_spiral"]


# ---------------------------------------------------------------------------
# Argument checks shared by the loader and the dataset builders.
# ---------------------------------------------------------------------------

def _is_int(x: object) -> bool:
    """True for Python and numpy integers, never for bools."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _check_int(name: str, value: object, minimum: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__}: {value!r}")
    if value < minimum:  # type: ignore[operator]
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")
    return bool(value)


def _check_seed(value: object) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"seed must be None or a non-negative int, got {type(value).__name__}: {value!r}")
    return int(value)  # type: ignore[call-overload]


def _check_noise(value: object) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"noise must be a real number >= 0, got {type(value).__name__}: {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {value!r}")
    return float(value)


def _rng(seed: object) -> np.random.Generator:
    """A fresh generator for an explicit seed, else fastgrad's global one."""
    seed = _check_seed(seed)
    return _random.default_generator() if seed is None else np.random.default_rng(seed)


# ---------------------------------------------------------------------------
# DataLoader
# ---------------------------------------------------------------------------

def _is_column(obj: object) -> bool:
    """A column of an ``(X, Y)`` dataset: a numpy array with rows, a list or
    a tuple (``X, Y = zip(*pairs)`` gives tuples)."""
    return (isinstance(obj, np.ndarray) and obj.ndim >= 1) or isinstance(obj, (list, tuple))


def _take(column: Any, idx: np.ndarray, start: int, stop: int, shuffled: bool) -> Any:
    """Rows ``idx[start:stop]`` of one column: an array for arrays, a list for lists."""
    if isinstance(column, np.ndarray):
        # Unshuffled batches are views (a basic slice); shuffled ones gather.
        return column[start:stop] if not shuffled else column[idx[start:stop]]
    return [column[i] for i in idx[start:stop].tolist()]


class DataLoader:
    """Iterate over a dataset in mini-batches of ``(x_batch, y_batch)``.

    Parameters
    ----------
    dataset
        One of three kinds, recognised in this order:

        1. **Columns** ``(X, Y)``: a *tuple* of exactly two items, each a
           numpy array (with at least one dimension), a list or a tuple, of
           the same length. Row ``i`` of ``X`` goes with ``Y[i]``. A numpy
           column yields numpy batches (``X[rows]``, ``Y[rows]``); a list or
           tuple column yields lists.
        2. **Samples**: any other object with ``__len__`` and ``__getitem__``
           whose item ``i`` is an ``(x, y)`` pair -- a list (or tuple) of
           pairs, or your own dataset class. Batches are two lists: the
           ``x``s and the ``y``s.

        A tuple holding two lists or tuples is read as columns (as
        ``X, Y = zip(*pairs)`` makes them); so a dataset of exactly two
        samples must be a list ``[(x0, y0), (x1, y1)]``, and a tuple of two
        2-tuples, which could mean either, raises ValueError. The rule looks only at types, never
        at lengths, so a dataset means the same thing at every size.
        Strings, mappings and bare numpy arrays are rejected (a bare array
        has no labels: pass ``(X, Y)``).
    batch_size
        Samples per batch, an int >= 1. The last batch may be smaller unless
        ``drop_last`` is set.
    shuffle
        Visit the samples in a new random order on every epoch (every call
        of ``iter()``).
    drop_last
        Drop a final batch smaller than ``batch_size``.
    seed
        ``None`` (default): shuffle with fastgrad's global generator, drawn
        when each epoch starts, so ``fastgrad.manual_seed(s)`` makes the
        run reproducible. An int >= 0: the loader owns a generator seeded
        once here, so its sequence of epoch orders is the same every run.

    ``len(loader)`` is the number of batches per epoch. An empty dataset has
    zero batches and yields nothing.

    Examples
    --------
    >>> X, y = make_moons(100, seed=0)
    >>> loader = DataLoader((X, y), batch_size=32, shuffle=True, seed=0)
    >>> len(loader)
    4
    >>> x_batch, y_batch = next(iter(loader))
    >>> x_batch.shape, y_batch.shape
    ((32, 2), (32,))
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
    ) -> None:
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.shuffle = _check_bool("shuffle", shuffle)
        self.drop_last = _check_bool("drop_last", drop_last)
        self.seed = _check_seed(seed)
        self._columns = _check_dataset(dataset)
        self.dataset = dataset
        self._rng = None if self.seed is None else np.random.default_rng(self.seed)

    def _num_samples(self) -> int:
        if self._columns:
            x, y = self.dataset
            if len(x) != len(y):  # a list column was resized after construction
                raise ValueError(f"X and Y must have the same length, got len(X)={len(x)} and len(Y)={len(y)}")
            return len(x)
        return len(self.dataset)

    def __len__(self) -> int:
        """Number of batches in one epoch (respects ``drop_last``)."""
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Start an epoch: fix this epoch's order now, then yield its batches."""
        n = self._num_samples()
        if self.shuffle:
            rng = self._rng if self._rng is not None else _random.default_generator()
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        return self._batches(order, stop)

    def _batches(self, order: np.ndarray, stop: int) -> Iterator[tuple[Any, Any]]:
        bs = self.batch_size
        if self._columns:
            x, y = self.dataset
            for start in range(0, stop, bs):
                end = min(start + bs, stop)
                yield (_take(x, order, start, end, self.shuffle),
                       _take(y, order, start, end, self.shuffle))
            return
        for start in range(0, stop, bs):
            xs, ys = [], []
            for i in order[start:min(start + bs, stop)].tolist():
                x, y = _unpack(self.dataset[i], i)
                xs.append(x)
                ys.append(y)
            yield xs, ys

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")


def _unpack(item: object, index: int) -> tuple[Any, Any]:
    """Split a sample into ``(x, y)``, or say which sample was not a pair."""
    try:
        x, y = item  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(
            f"dataset[{index}] must be an (x, y) pair, got {type(item).__name__}: {item!r}"
        ) from None
    return x, y


def _check_dataset(dataset: object) -> bool:
    """Classify ``dataset``: True for ``(X, Y)`` columns, False for samples."""
    if isinstance(dataset, tuple) and len(dataset) == 2 and all(map(_is_column, dataset)):
        x, y = dataset
        if isinstance(x, tuple) and isinstance(y, tuple) and len(x) == len(y) == 2:
            raise ValueError(
                "dataset is ambiguous: a tuple of two 2-tuples could be two (x, y) "
                "samples or (X, Y) columns of two samples; pass the samples as a list "
                "[(x0, y0), (x1, y1)] or the columns as lists or arrays (list(X), list(Y))")
        if len(x) != len(y):
            raise ValueError(f"X and Y must have the same length, got len(X)={len(x)} and len(Y)={len(y)}")
        return True
    accepted = ("a tuple (X, Y) of equal-length numpy arrays, lists or tuples, a sequence of (x, y) "
                "pairs, or an object with __len__ and __getitem__ returning (x, y)")
    if isinstance(dataset, (str, bytes, bytearray, Mapping, np.ndarray)):
        hint = " (a bare array has no labels: pass (X, Y))" if isinstance(dataset, np.ndarray) else ""
        raise TypeError(f"dataset must be {accepted}; got {type(dataset).__name__}{hint}")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be {accepted}; got {type(dataset).__name__}")
    if isinstance(dataset, (list, tuple)):  # cheap to check every sample up front
        for i, item in enumerate(dataset):
            _unpack(item, i)
    return False


# ---------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------

def make_moons(
    n: int = 100, noise: float = 0.1, seed: int | None = None, *, shuffle: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half-circles, the classic 2-D binary problem.

    The same construction as scikit-learn's ``make_moons``: ``n // 2``
    points on the upper unit half-circle (class 0) and the rest on a lower
    half-circle shifted to ``(1, 0.5)`` (class 1), plus Gaussian noise of
    standard deviation ``noise`` on both coordinates.

    Parameters
    ----------
    n
        Total number of points, an int >= 1.
    noise
        Standard deviation of the Gaussian noise, finite and >= 0.
    seed
        ``None`` draws from fastgrad's global generator (see
        ``fastgrad.manual_seed``); an int >= 0 gives the same data every call.
    shuffle
        Shuffle the rows (as scikit-learn does by default), so that any
        slice of the data holds both classes.

    Returns
    -------
    X, y
        ``X`` float64 of shape ``(n, 2)``; ``y`` int64 of shape ``(n,)`` in
        ``{0, 1}``.
    """
    n = _check_int("n", n, 1)
    noise = _check_noise(noise)
    shuffle = _check_bool("shuffle", shuffle)
    rng = _rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.concatenate([
        np.column_stack([np.cos(t_out), np.sin(t_out)]),
        np.column_stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)]),
    ])
    y = np.concatenate([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    return _finish(X, y, noise, rng, shuffle)


def make_spiral(
    n_per_class: int = 100,
    n_classes: int = 3,
    noise: float = 0.2,
    seed: int | None = None,
    *,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A k-armed spiral (the CS231n toy problem): one arm per class.

    Arm ``k`` has ``n_per_class`` points at radii evenly spaced in ``[0, 1]``
    and angles evenly spaced over ``[4k, 4(k+1)]`` radians; ``noise`` is the
    standard deviation of Gaussian noise added to each angle (in radians).
    The classes are not linearly separable.

    Parameters
    ----------
    n_per_class
        Points per arm, an int >= 1.
    n_classes
        Number of arms (classes), an int >= 2.
    noise
        Standard deviation of the angular noise, finite and >= 0.
    seed
        ``None`` draws from fastgrad's global generator (see
        ``fastgrad.manual_seed``); an int >= 0 gives the same data every call.
    shuffle
        Shuffle the rows, so that any slice of the data holds every class.

    Returns
    -------
    X, y
        ``X`` float64 of shape ``(n_per_class * n_classes, 2)``; ``y`` int64
        class indices in ``range(n_classes)``.
    """
    n_per_class = _check_int("n_per_class", n_per_class, 1)
    n_classes = _check_int("n_classes", n_classes, 2)
    noise = _check_noise(noise)
    shuffle = _check_bool("shuffle", shuffle)
    rng = _rng(seed)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), n_classes)
    k = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    t = 4.0 * k + np.tile(np.linspace(0.0, 4.0, n_per_class), n_classes)
    if noise:
        t = t + rng.normal(scale=noise, size=t.shape)
    X = np.column_stack([r * np.sin(t), r * np.cos(t)])
    return _finish(X, k, 0.0, rng, shuffle)


def _finish(X: np.ndarray, y: np.ndarray, noise: float, rng: np.random.Generator,
            shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle rows and add Gaussian noise to X, as the builders share."""
    if shuffle:
        order = rng.permutation(len(y))
        X, y = X[order], y[order]
    if noise:
        X = X + rng.normal(scale=noise, size=X.shape)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y, dtype=np.int64)
