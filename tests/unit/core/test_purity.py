"""core/ stays pure: no I/O libraries, no clock, no random ids (STYLE.md §1).

Two independent checks: an AST scan of every ``core/**/*.py``, and importing every core module
in a fresh interpreter and looking at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "core"
FORBIDDEN_MODULES = {
    "aiokafka",
    "redis",
    "asyncpg",
    "fastapi",
    "structlog",
    "kafka",
    "psycopg",
    "httpx",
    "requests",
    "prometheus_client",
}
ALLOWED_THIRD_PARTY = {"pydantic", "pydantic_core", "re2", "mmh3", "packaging", "core"}
# Calls that read the clock or make up randomness: callers pass `now` and ids in.
FORBIDDEN_CALLS = {
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "datetime.now",
    "datetime.utcnow",
    "datetime.today",
    "date.today",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "uuid.uuid1",
    "uuid.uuid4",
    "uuid4",
    "uuid1",
    "random.random",
    "os.urandom",
}
FORBIDDEN_NAMES = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("uuid", "uuid4"),
    ("uuid", "uuid1"),
    ("os", "urandom"),
}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def find_impurities(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import or call in ``source``, as ``file:line: what``."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    continue
                if top in FORBIDDEN_MODULES or (
                    top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY
                ):
                    problems.append(f"{filename}:{node.lineno}: imports {name}")
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (node.module, alias.name) in FORBIDDEN_NAMES:
                        problems.append(f"{filename}:{node.lineno}: imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Call):
            called = _dotted(node.func)
            if called in FORBIDDEN_CALLS:
                problems.append(f"{filename}:{node.lineno}: calls {called}()")
    return problems


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_sources__scanned__have_no_io_imports_clock_reads_or_random_ids() -> None:
    assert len(core_files()) >= 10
    problems = [
        p for path in core_files() for p in find_impurities(path.read_text(), str(path.relative_to(CORE)))
    ]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "import redis.asyncio",
        "from aiokafka import AIOKafkaProducer",
        "import structlog",
        "import numpy",
        "from fastapi import FastAPI",
        "import asyncpg",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.utcnow()",
        "import time\nx = time.time()",
        "from time import time",
        "from uuid import uuid4",
        "import uuid\nx = uuid.uuid4()",
    ],
)
def test_find_impurities__forbidden_source__is_reported(source: str) -> None:
    assert find_impurities(source)


def test_find_impurities__allowed_source__is_clean() -> None:
    source = "\n".join(
        [
            "import json",
            "import re2",
            "from pydantic import BaseModel",
            "from . import model",
            "import core.model",
        ]
    )
    assert find_impurities(source) == []


def test_core_import__fresh_interpreter__loads_no_io_library() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import core\n"
        "for module in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=CORE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    loaded = {name.split(".")[0] for name in json.loads(completed.stdout)}
    assert "core" in loaded
    assert loaded & FORBIDDEN_MODULES == set()
