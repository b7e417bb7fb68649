"""The hand-written .pyi stubs describe the compiled modules as they are."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import fastgrad

STUB_DIR = Path(fastgrad.__file__).parent


def _stub_api(name: str) -> dict[str, set[str]]:
    """Top-level names of a stub, and the members of each class."""
    tree = ast.parse((STUB_DIR / f"{name}.pyi").read_text())
    api: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            members = set()
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
            api[node.name] = members
    return api


@pytest.mark.parametrize("name", ["_engine", "_optim"])
def test_stub_ships_beside_the_compiled_module(name):
    module = importlib.import_module(f"fastgrad.{name}")
    assert Path(module.__file__).parent == STUB_DIR
    assert (STUB_DIR / f"{name}.pyi").is_file()
    assert (STUB_DIR / "py.typed").is_file()


@pytest.mark.parametrize("name", ["_engine", "_optim"])
def test_every_public_name_is_in_the_stub_and_every_stub_name_exists(name):
    module = importlib.import_module(f"fastgrad.{name}")
    stub = _stub_api(name)
    public = {n for n, v in vars(module).items()
              if not n.startswith("_") and (callable(v) or isinstance(v, type))}
    public -= {"numbers", "sys"}                       # imported modules, not API
    assert public - set(stub) == set(), "missing from the stub"
    for cls, members in stub.items():
        obj = getattr(module, cls)                     # AttributeError if the stub lies
        for member in members:
            assert hasattr(obj, member), f"{cls}.{member} is in the stub but not the module"
        if isinstance(obj, type):
            real = {m for m in vars(obj) if not m.startswith("_") or m in ("_op", "_prev")}
            assert real - members == set(), f"{cls}: members missing from the stub"
