"""fastgrad's one source of randomness: weight init, dropout masks and
unseeded shuffling all draw from this generator, so ``manual_seed(s)``
makes a whole run reproducible."""

from __future__ import annotations

import numbers

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed fastgrad's global generator (as ``torch.manual_seed``) and return it.

    Every random choice that has no explicit seed -- initialisation, dropout,
    DataLoader shuffling -- then repeats exactly from run to run.
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"manual_seed() expects a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    """The generator behind every unseeded random choice in fastgrad."""
    return _generator
