"""core.evaluation stays pure: no I/O libraries, no clock reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import core.evaluation

FORBIDDEN = ("aiokafka", "redis", "asyncpg", "fastapi", "structlog")


def test_import__core_evaluation__loads_no_io_library() -> None:
    code = (
        "import sys, core.evaluation; "
        f"print(','.join(m for m in {FORBIDDEN!r} "
        "if any(k == m or k.startswith(m + '.') for k in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_source__core_evaluation__never_reads_the_clock() -> None:
    package = Path(core.evaluation.__file__).parent
    for path in package.glob("*.py"):
        text = path.read_text()
        for call in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today(", "monotonic("):
            assert call not in text, f"{path.name} calls {call}"
