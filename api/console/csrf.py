"""CSRF protection for console changes: a per-session token, sent back as a form field or a header.

Every state-changing console request (POST) must carry the session's token in the ``csrf_token``
form field or the ``X-CSRF-Token`` header; otherwise it is refused with ``403 csrf_failed``. The
SameSite=Strict cookie is a second line, not the only one.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from api.console.session import Session
from api.errors import ApiError

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "check_csrf"]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


async def check_csrf(request: Request, session: Session) -> None:
    """Raise ``403 csrf_failed`` unless the request carries the session's CSRF token."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise ApiError(
            403,
            "csrf_failed",
            "the request did not carry this session's CSRF token",
            details=[{"path": CSRF_FIELD, "message": "missing or wrong"}],
        )
