"""Infrastructure errors of the write side, in the one error tree of :mod:`core.errors`.

Driver exceptions (asyncpg, aiokafka) are translated into these at the adapter with
``raise ... from e``; the class carries the policy (``code``, ``http_status``, ``retriable``).
``VersionConflict`` is the domain's own (``core.errors``) and is re-exported for convenience.
"""

from __future__ import annotations

from core.errors import FlagstreamError, VersionConflict

__all__ = [
    "DuplicateIdempotencyKey",
    "IdempotencyKeyReused",
    "MigrationFailed",
    "PublishFailed",
    "PublishRejected",
    "PublishTimeout",
    "StoreUnavailable",
    "VersionConflict",
]


class StoreUnavailable(FlagstreamError):
    """Postgres cannot be reached or dropped the connection; the same request may succeed later."""

    code = "store_unavailable"
    http_status = 503
    retriable = True


class MigrationFailed(FlagstreamError):
    """A schema migration could not be applied; the process must not start."""

    code = "migration_failed"
    http_status = 500
    retriable = False


class IdempotencyKeyReused(FlagstreamError):
    """The same ``Idempotency-Key`` was sent earlier with a different request."""

    code = "idempotency_key_reused"
    http_status = 422
    retriable = False

    def __init__(self, key: str) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different request",
            details=[{"path": "Idempotency-Key", "message": f"key {key!r} belongs to another request"}],
        )
        self.key = key


class DuplicateIdempotencyKey(FlagstreamError):
    """A concurrent request with the same idempotency key committed first; nothing was written.

    The caller looks the key up again and answers with the stored response (or
    :class:`IdempotencyKeyReused` when the request differs).
    """

    code = "idempotency_key_in_flight"
    http_status = 409
    retriable = True

    def __init__(self, key: str) -> None:
        super().__init__(f"a concurrent request with Idempotency-Key {key!r} committed first")
        self.key = key


class PublishFailed(FlagstreamError):
    """Kafka could not take a publish for now (connection, leader change...); try again later."""

    code = "publish_failed"
    http_status = 503
    retriable = True


class PublishTimeout(PublishFailed):
    """A publish was not acknowledged within its time bound (the broker may be down)."""

    code = "publish_timeout"


class PublishRejected(FlagstreamError):
    """Kafka refused a record for good (too large, not authorised...): retrying cannot help."""

    code = "publish_rejected"
    http_status = 500
    retriable = False
