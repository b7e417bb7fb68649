"""The compiled kernels never touch Python.

Runs ``cython -a`` on each .pyx of the checkout (with the project's
directives) and collects every line inside a ``noexcept nogil`` function that
the annotation marks as interacting with Python (score > 0). Also a script:

    python tests/test_kernels_nogil.py
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "fastgrad"
DIRECTIVES = ["boundscheck=False", "wraparound=False", "cdivision=True",
              "initializedcheck=False", "nonecheck=False"]
LINE = re.compile(r'<pre class="cython line score-(\d+)"[^>]*>(.*?)</pre>', re.S)


def kernel_lines(pyx: Path, src: Path = SRC) -> list[tuple[int, int, str]]:
    """(line, score, code) of every Python-touching line in a nogil function."""
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "fastgrad"
        pkg.mkdir()
        (pkg / "__init__.py").touch()
        for f in [*src.glob("*.pyx"), *src.glob("*.pxd")]:
            shutil.copy(f, pkg)
        out = pkg / (pyx.stem + ".c")
        cmd = [sys.executable, "-m", "cython", "-3", "-a", "-I", tmp, str(pkg / pyx.name), "-o", str(out)]
        for d in DIRECTIVES:
            cmd += ["-X", d]
        subprocess.run(cmd, check=True)
        report = out.with_suffix(".html").read_text()
    bad, in_kernel = [], False
    for score, body in LINE.findall(report):
        text = html.unescape(re.sub("<[^>]+>", "", body)).rstrip()
        m = re.match(r"\+?(\d+):\s?(.*)", text, re.S)
        if not m:
            continue
        number, code = int(m.group(1)), m.group(2)
        if code and not code[0].isspace() and not code.startswith("#"):
            in_kernel = code.startswith("cdef") and "nogil" in code
            continue                      # the signature line itself
        if in_kernel and int(score) > 0 and code.strip():
            bad.append((number, int(score), code.strip()))
    return bad


def test_annotation_sees_python_in_a_kernel(tmp_path):
    """The checker itself: a kernel with a `with gil:` print is flagged."""
    pytest.importorskip("Cython")
    pyx = tmp_path / "probe.pyx"
    pyx.write_text(
        "cdef void ok(double* a, Py_ssize_t n) noexcept nogil:\n"
        "    cdef Py_ssize_t i\n"
        "    for i in range(n):\n"
        "        a[i] = 0.0\n"
        "\n"
        "cdef void bad(double* a, Py_ssize_t n) noexcept nogil:\n"
        "    with gil:\n"
        "        print(n)\n")
    lines = [code for _, _, code in kernel_lines(pyx, tmp_path)]
    assert lines == ["with gil:", "print(n)"]


@pytest.mark.parametrize("name", ["_engine.pyx", "_optim.pyx"])
def test_kernels_have_no_python_interaction(name):
    pytest.importorskip("Cython")
    assert kernel_lines(SRC / name) == []


def main() -> int:
    failures = 0
    for pyx in sorted(SRC.glob("*.pyx")):
        bad = kernel_lines(pyx)
        print(f"{pyx.name}: {'clean' if not bad else f'{len(bad)} Python-touching kernel line(s)'}")
        for number, score, code in bad:
            print(f"  line {number} (score {score}): {code}")
        failures += len(bad)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
