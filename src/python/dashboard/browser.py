"""Debian's Chromium for the dashboard's browser tests: /usr/bin/chromium, installed with apt if missing.

Playwright drives this browser (`executable_path`); its own browser download is never used (the project's
machines reach only package registries).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

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
_LOCK = Path("/tmp/tickstream-chromium-install.lock")


class ChromiumUnavailable(RuntimeError):
    """Chromium is missing and could not be installed."""


def ensure_chromium(timeout_s: float = 900.0) -> Path:
    """/usr/bin/chromium, installing Debian's `chromium` package first if it is missing (idempotent).

    Needs root (or password-less sudo) and apt. Several test processes may call this at once: a file lock
    makes them install once. Raises ChromiumUnavailable with what to do when it cannot install.
    """
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise ChromiumUnavailable(
            f"{CHROMIUM} is missing and this is not a Debian/Ubuntu machine: install Chromium"
        )
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise ChromiumUnavailable(f"{CHROMIUM} is missing: run `sudo apt-get install -y chromium` once")
        prefix = [sudo, "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return CHROMIUM
        output = ""
        for command in (
            [apt, "install", "-y", "chromium"],
            [apt, "update"],
            [apt, "install", "-y", "chromium"],
        ):
            result = subprocess.run(
                prefix + command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            output = result.stdout[-2000:] + result.stderr[-2000:]
            if CHROMIUM.exists():
                return CHROMIUM
    raise ChromiumUnavailable(
        f"{CHROMIUM} is missing and `apt-get install -y chromium` did not provide it; apt said:\n{output}"
    )
