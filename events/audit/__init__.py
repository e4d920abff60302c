"""Audit and replay over the Kafka log: history, as-of, verify, export (see docs/audit.md)."""

from events.audit.access import log_audit_access
from events.audit.asof import EnvironmentSnapshot, environment_as_of, evaluate_as_of, flag_as_of
from events.audit.divergence import Discrepancy
from events.audit.export import ExportFormat, ExportReport, export_log, verify_export
from events.audit.history import (
    AuditFilters,
    AuditLog,
    HistoryEntry,
    HistoryPage,
    KafkaAuditLog,
    PostgresAuditLog,
)
from events.audit.stream import AuditLogUnavailable, LogRecord, StreamSettings, read_batches
from events.audit.verify import VerifyReport, verify_log

__all__ = [
    "AuditFilters",
    "AuditLog",
    "AuditLogUnavailable",
    "Discrepancy",
    "EnvironmentSnapshot",
    "ExportFormat",
    "ExportReport",
    "HistoryEntry",
    "HistoryPage",
    "KafkaAuditLog",
    "LogRecord",
    "PostgresAuditLog",
    "StreamSettings",
    "VerifyReport",
    "environment_as_of",
    "evaluate_as_of",
    "export_log",
    "flag_as_of",
    "log_audit_access",
    "read_batches",
    "verify_export",
    "verify_log",
]
