"""Debian packages the platform needs on the host (Chromium for browser tests, the Docker engine for images),
installed with apt-get when missing.

Only Debian's package registry is used (the project's machines reach package registries only). Needs root or
password-less sudo. Several processes may ask at once: a file lock makes them install once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

_LOCK = Path("/tmp/tickstream-apt-install.lock")


class PackagesUnavailable(RuntimeError):
    """Packages are missing and could not be installed; the message says what to run."""


def ensure_packages(packages: Sequence[str], provides: Sequence[Path], timeout_s: float = 900.0) -> None:
    """Install Debian `packages` with apt-get unless every path in `provides` exists already (idempotent).

    Tries `apt-get install` first and, if that does not provide them, `apt-get update` and the install again.
    Raises PackagesUnavailable with the command to run by hand when it cannot.
    """
    if all(path.exists() for path in provides):
        return
    by_hand = f"sudo apt-get install -y {' '.join(packages)}"
    apt = shutil.which("apt-get")
    if apt is None:
        raise PackagesUnavailable(f"{', '.join(map(str, provides))} missing and this is not a Debian machine")
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise PackagesUnavailable(f"{', '.join(map(str, provides))} missing: run `{by_hand}` once")
        prefix = [sudo, "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", *packages]
    output = ""
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in (install, [apt, "update"], install):
            if all(path.exists() for path in provides):
                return
            result = subprocess.run(
                prefix + command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            output = result.stdout[-2000:] + result.stderr[-2000:]
    if not all(path.exists() for path in provides):
        raise PackagesUnavailable(
            f"`{by_hand}` did not provide {', '.join(map(str, provides))}; apt said:\n{output}"
        )
