"""What a flagd document holds that Flagstream cannot express (or the reverse): refused, with a JSON path."""

from __future__ import annotations

from typing import ClassVar

from core.errors import FlagstreamError

__all__ = ["FlagdUnsupported"]


class FlagdUnsupported(FlagstreamError):
    """A construct that cannot be translated exactly. ``path`` is a JSON path such as
    ``$.flags.checkout.targeting.if[0].sem_ver[1]``; nothing is ever approximated silently."""

    code: ClassVar[str] = "flagd_unsupported"
    http_status: ClassVar[int] = 422

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}", details=[{"path": path, "message": message}])
        self.path = path
