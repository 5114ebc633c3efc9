"""How every Tickstream command line behaves: typer apps with plain help and error output, `--help` on each
command, and a bad argument or setting answered with exit code 2 and one line naming it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from tickstream.settings import invalid_settings

EXIT_USAGE = 2
T = TypeVar("T")


def command_app(help: str, **options: Any) -> typer.Typer:
    """A typer app for one of the platform's commands (no shell-completion commands, no rich boxes)."""
    return typer.Typer(
        help=help, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False, **options
    )


def usage_error(message: str) -> typer.Exit:
    """Print `error: <message>` on stderr; the exit (code 2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def load_settings(settings_class: Callable[..., T], **overrides: Any) -> T:
    """Settings from the environment with the command line's non-None values on top; invalid values are a
    usage error."""
    try:
        return settings_class(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise usage_error(invalid_settings(exc)) from None
