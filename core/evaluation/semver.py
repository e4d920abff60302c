"""Semantic versions as sortable keys (SemVer 2.0.0 precedence, lenient input).

Accepted: an optional ``v``/``V`` prefix, one to three numeric parts (missing parts are zero, so
``"2"`` is ``2.0.0`` and ``"2.1"`` is ``2.1.0``); after all three parts only, an optional
``-pre.release`` (numeric identifiers without leading zeros) and an optional ``+build`` (ignored
for precedence), as flagd's ``sem_ver`` (golang.org/x/mod/semver) accepts them.
A pre-release sorts before its release; pre-release
identifiers compare numerically when both are numeric, numeric ones sort before alphanumeric
ones, and a longer list wins when one is a prefix of the other.
"""

from __future__ import annotations

from functools import lru_cache

import re2

__all__ = ["SemverKey", "parse_semver"]

# (major, minor, patch, is_release, pre-release identifiers)
SemverKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# A pre-release or build only after all three numbers, and no leading zero in a numeric pre-release
# identifier: what flagd accepts (golang.org/x/mod/semver), so ``1-alpha`` or ``1.0.0-01`` never match.
_IDENTIFIER = r"(?:0|[1-9]\d*|[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re2.compile(
    r"^[vV]?(0|[1-9]\d{0,17})(?:\.(0|[1-9]\d{0,17})(?:\.(0|[1-9]\d{0,17})"
    rf"(?:-({_IDENTIFIER}(?:\.{_IDENTIFIER})*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?$",
    _OPTIONS,
)


@lru_cache(maxsize=4096)
def parse_semver(text: str) -> SemverKey | None:
    """The precedence key of ``text``, or ``None`` when it is not a version."""
    if len(text) > 256:
        return None
    match = _SEMVER.match(text.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    identifiers: tuple[tuple[int, int | str], ...] = ()
    if pre:
        identifiers = tuple(_key_identifier(part) for part in pre.split("."))
    return (int(major), int(minor or 0), int(patch or 0), 0 if pre else 1, identifiers)


def _key_identifier(part: str) -> tuple[int, int | str]:
    if part.isdigit():
        return (0, int(part))
    return (1, part)
