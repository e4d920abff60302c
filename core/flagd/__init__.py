"""flagd compatibility: import flagd flag definitions, export an environment as flagd JSON (pure)."""

from core.flagd.errors import FlagdUnsupported
from core.flagd.exporter import FLAGD_SCHEMA, export_flagd
from core.flagd.importer import import_flagd, parse_flagd
from core.flagd.plan import ImportAction, ImportStep, plan_import

__all__ = [
    "FLAGD_SCHEMA",
    "FlagdUnsupported",
    "ImportAction",
    "ImportStep",
    "export_flagd",
    "import_flagd",
    "parse_flagd",
    "plan_import",
]
