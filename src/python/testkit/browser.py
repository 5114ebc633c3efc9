"""Debian's Chromium for the dashboard's browser tests: /usr/bin/chromium, installed with apt if missing.

Playwright drives this browser (`executable_path`); its own browser download is never used (the project's
machines reach only package registries).
"""

from __future__ import annotations

from pathlib import Path

from ops.debian import ensure_packages

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags for headless Chromium in a container without a GPU, quiet on the network."""


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installing Debian's `chromium` package first if it is missing (idempotent).

    Raises PackagesUnavailable with what to do when it cannot install.
    """
    ensure_packages(["chromium"], [CHROMIUM])
    return CHROMIUM
