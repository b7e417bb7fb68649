"""The wheel ships what users need and nothing else; cibuildwheel is set up
for the intended builds. Builds from the checkout, without network access
(no build isolation: the environment's setuptools and Cython are used)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setuptools_can_build() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.mark.slow
def test_wheel_has_compiled_modules_stubs_and_py_typed_but_no_sources(tmp_path):
    pytest.importorskip("Cython")
    if not _setuptools_can_build():
        pytest.skip("setuptools >= 77 is needed to build the wheel offline")
    src = tmp_path / "src-copy"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.so", "*.c", "*.html", "__pycache__", ".hypothesis"))
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        check=True, timeout=900)
    (wheel,) = out.glob("fastgrad-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    pkg = [n for n in names if n.startswith("fastgrad/")]
    for module in ("_engine", "_optim"):
        assert any(n.startswith(f"fastgrad/{module}.") and n.endswith((".so", ".pyd"))
                   for n in pkg), names
        assert f"fastgrad/{module}.pyi" in pkg
    assert "fastgrad/py.typed" in pkg
    assert not [n for n in names if n.endswith((".pyx", ".pxd", ".c", ".html"))], names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fastgrad = fastgrad.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_cibuildwheel_configuration_lists_cpython_310_and_newer_64_bit_only():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    cibw = config["tool"]["cibuildwheel"]
    assert cibw["build"].split() == ["cp310-*", "cp311-*", "cp312-*", "cp313-*", "cp314-*"]
    assert "*-win32" in cibw["skip"] and "*_i686" in cibw["skip"].replace("*-manylinux_i686", "*_i686")
    assert cibw["test-extras"] == ["test"] and "pytest" in cibw["test-command"]
    if shutil.which("cibuildwheel") is None:
        return
    ids = subprocess.run(["cibuildwheel", "--print-build-identifiers", "--platform", "linux"],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    idents = ids.stdout.split()
    assert idents, ids.stderr
    assert all(i.startswith(("cp310-", "cp311-", "cp312-", "cp313-", "cp314-")) for i in idents)
    assert not [i for i in idents if "pp" in i.split("-")[0] or "i686" in i]
