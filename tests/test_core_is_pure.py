"""Guard: ``asynctransfer/_core`` imports only the standard library, and no I/O or clock from it.

An AST scan rather than an import: importing ``asynctransfer._core.x`` runs
``asynctransfer/__init__.py``, which pulls in the engine and its drivers, so ``sys.modules``
cannot tell what the core itself needs. The scan reads the source and needs no imports at all.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "asynctransfer" / "_core"
CORE_MODULES = sorted(CORE.rglob("*.py"))

# Standard library, but I/O, event loops or the wall clock: the core takes those as parameters.
FORBIDDEN = frozenset(
    {
        "asyncio",
        "concurrent",
        "importlib",  # dynamic imports would get past this scan
        "multiprocessing",
        "os",
        "selectors",
        "shutil",
        "socket",
        "subprocess",
        "tempfile",
        "threading",
        "time",
    }
)
# Builtins that do I/O or import behind the scan's back.
FORBIDDEN_CALLS = frozenset({"open", "input", "__import__", "exec", "eval"})


def violations(source: str, depth: int = 0) -> list[str]:
    """What in ``source`` breaks the rule; ``depth`` is how many packages below ``_core`` it is.

    Relative imports may climb ``depth + 1`` levels (to ``_core`` itself) and no further. Absolute
    imports must name a standard-library module outside FORBIDDEN; that excludes
    ``asynctransfer`` itself, whose ``__init__`` imports the drivers.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "", node.level)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"line {node.lineno}: calls {node.func.id}()")
            continue
        else:
            continue
        for module, level in names:
            if level:
                if level > depth + 1:
                    found.append(f"line {node.lineno}: relative import leaves _core ({module!r})")
                continue
            top = module.partition(".")[0]
            if top not in sys.stdlib_module_names:
                found.append(f"line {node.lineno}: imports {module!r}, not in the standard library")
            elif top in FORBIDDEN:
                found.append(f"line {node.lineno}: imports {module!r} (I/O, event loop or clock)")
    return found


def test_core_modules_are_found() -> None:
    names = {path.relative_to(CORE).as_posix() for path in CORE_MODULES}
    expected = {
        "__init__.py",
        "clock.py",
        "plan.py",
        "ranges.py",
        "ratelimit.py",
        "units.py",
        "urls.py",
    }
    assert expected <= names


@pytest.mark.parametrize(
    "path", CORE_MODULES, ids=[p.relative_to(CORE).as_posix() for p in CORE_MODULES]
)
def test_core_module_is_pure(path: Path) -> None:
    depth = len(path.relative_to(CORE).parts) - 1
    assert violations(path.read_text(encoding="utf-8"), depth) == []


# The scanner itself: each of these must be caught, or the guard above proves nothing.
@pytest.mark.parametrize(
    "source",
    [
        "import anyio",
        "import aiohttp",
        "import aiobotocore.session",
        "from botocore.exceptions import ClientError",
        "import asyncio",
        "import time",
        "from time import monotonic",
        "import os",
        "import os.path",
        "from os import path",
        "import socket",
        "import importlib",
        "import re, time",
        "def f():\n    import asyncio",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import anyio",
        "import asynctransfer",
        "from asynctransfer._core import plan",
        "from asynctransfer import _errors",
        "from .. import _errors",
        "from .._io import s3",
        "import numpy",
        "with open('x') as f:\n    pass",
        "__import__('anyio')",
    ],
)
def test_scanner_catches(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import re",
        "import dataclasses",
        "from dataclasses import dataclass",
        "from collections.abc import Iterator",
        "import math, enum",
        "from . import plan",
        "from .units import MiB",
        "from .clock import Clock",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .clock import Clock",
        "path.open()",  # a method named open is not the builtin
    ],
)
def test_scanner_allows(source: str) -> None:
    assert violations(source) == []


def test_scanner_allows_climbing_to_core_from_a_subpackage() -> None:
    assert violations("from ..units import MiB", depth=1) == []
    assert violations("from ...units import MiB", depth=1) != []
