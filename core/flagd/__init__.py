"""flagd compatibility: import flagd flag definitions, export an environment as flagd JSON (pure)."""

from core.flagd.errors import FlagdUnsupported
from core.flagd.exporter import FLAGD_SCHEMA, export_flagd
from core.flagd.importer import import_flagd, parse_flagd

__all__ = ["FLAGD_SCHEMA", "FlagdUnsupported", "export_flagd", "import_flagd", "parse_flagd"]
