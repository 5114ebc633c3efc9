"""The two ways a read comes back empty-handed, with messages written for the person looking at the page."""

from __future__ import annotations


class NoData(Exception):
    """The source is reachable but has nothing for this request (yet)."""


class SourceUnavailable(Exception):
    """The source cannot be reached or read (S3 or the catalog down, wrong credentials, corrupt file)."""


def short(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), or its type's name."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
