"""Only what pyproject.toml cannot say: the compiled modules and their Cython
directives. Set FASTGRAD_DEBUG=1 to build with bounds, wraparound, None and
initialisation checks back on (and line tracing for coverage tools)."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTGRAD_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "nonecheck": DEBUG,
    "initializedcheck": DEBUG,
    # Always on, also in debug builds: IEEE division (x/0 -> inf, no
    # ZeroDivisionError) is part of fastgrad's arithmetic contract.
    "cdivision": True,
    "embedsignature": True,
    "auto_pickle": False,
}

extensions = [
    Extension("fastgrad._engine", ["src/fastgrad/_engine.pyx"]),
    Extension("fastgrad._optim", ["src/fastgrad/_optim.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=DEBUG,
    ),
)
