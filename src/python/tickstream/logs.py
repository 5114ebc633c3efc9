"""Structured logging for every component: one JSON object per line (or key=value on a TTY)."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(level: str | None = None) -> None:
    """Configure structlog and stdlib logging once per process.

    The level comes from `level` or TICKSTREAM_LOG_LEVEL (default INFO). Output is JSON
    unless stderr is a terminal, where it is rendered for humans.
    """
    level_name = (level or os.environ.get("TICKSTREAM_LOG_LEVEL", "INFO")).upper()
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level_name)),
        # Resolve sys.stderr when a logger is made, not once: test runners swap (and close) it.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level_name, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """Return a structured logger bound to a component name."""
    return structlog.get_logger(component=name)  # type: ignore[no-any-return]
