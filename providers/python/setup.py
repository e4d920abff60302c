"""Build-time vendoring: the wheel carries the repository's ``core/`` (and the two pure read-model
modules ``projections/keys.py`` and ``projections/documents.py``) under ``flagstream_openfeature._vendor``,
with their absolute imports rewritten, so an application gets no top-level ``core`` or ``projections``.

One source of truth (the repository's own files, copied when the wheel is built), no second copy in git.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REPO = Path(os.environ.get("FLAGSTREAM_REPO", HERE.parent.parent))  # set when building from a copy
PACKAGE = "flagstream_openfeature"
VENDOR = f"{PACKAGE}._vendor"
SOURCES = {
    "core": sorted((REPO / "core").rglob("*.py")),
    "projections": [REPO / "projections" / "keys.py", REPO / "projections" / "documents.py"],
}
_IMPORT = re.compile(r"^(\s*)(from|import) (core|projections)([. ])", re.MULTILINE)


def rewrite_imports(text: str) -> str:
    """``from core.x import y`` -> ``from flagstream_openfeature._vendor.core.x import y``."""
    return _IMPORT.sub(lambda m: f"{m.group(1)}{m.group(2)} {VENDOR}.{m.group(3)}{m.group(4)}", text)


class VendoringBuildPy(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / PACKAGE
        for module in target.rglob("*.py"):
            module.write_text(rewrite_imports(module.read_text()))
        vendor = target / "_vendor"
        vendor.mkdir(exist_ok=True)
        (vendor / "__init__.py").write_text('"""Vendored from the Flagstream repository at build time."""\n')
        for package, files in SOURCES.items():
            root = REPO / package
            (vendor / package).mkdir(exist_ok=True)
            (vendor / package / "__init__.py").touch()
            for source in files:
                destination = vendor / package / source.relative_to(root)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_text(rewrite_imports(source.read_text()))


setup(cmdclass={"build_py": VendoringBuildPy})
