"""Downloads into the cache, marked complete only after success so half-finished installs are redone.

A directory is installed when its marker file lists every file with its size and the fingerprint of
what produced it (e.g. the pom's hash); anything else (no marker, a truncated or missing jar, a changed
pom) makes the next run delete the directory and install again.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ops.services.process import ServiceError, require_executable, tail
from tickstream.logs import get_logger

MARKER = ".tickstream-installed.json"
INSTALL_TIMEOUT_S = 1800

log = get_logger("services.install")


def deploy_dir() -> Path:
    """The deploy/ directory holding the pom files: TICKSTREAM_DEPLOY_DIR, the source tree's, or the PEX's.

    Pants ships deploy/'s poms as resources of the namespace package `deploy` (see deploy/BUILD).
    """
    override = os.environ.get("TICKSTREAM_DEPLOY_DIR")
    if override:
        return Path(override)
    in_source_tree = Path(__file__).resolve().parents[4] / "deploy"
    if (in_source_tree / "kafka" / "pom.xml").is_file():
        return in_source_tree
    return Path(str(importlib.resources.files("deploy").joinpath("kafka"))).parent


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_sizes(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): path.stat().st_size
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MARKER
    }


def install_problem(directory: Path, fingerprint: str) -> str | None:
    """Why `directory` is not a complete install for `fingerprint`, or None if it is."""
    marker = directory / MARKER
    if not marker.exists():
        return "missing" if not directory.exists() else "incomplete (no completion marker)"
    try:
        recorded = json.loads(marker.read_text())
        files: dict[str, int] = recorded["files"]
        if recorded["fingerprint"] != fingerprint:
            return "out of date (its recipe changed)"
    except (OSError, ValueError, KeyError, TypeError):
        return "damaged (unreadable completion marker)"
    for name, size in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return f"damaged ({name} is missing or has the wrong size)"
    return None


def mark_installed(directory: Path, fingerprint: str) -> None:
    """Record that `directory` now holds a complete install for `fingerprint`."""
    payload = {"fingerprint": fingerprint, "files": _file_sizes(directory)}
    (directory / MARKER).write_text(json.dumps(payload, indent=1))


def run_logged(argv: Sequence[str], log_file: Path, what: str, fix: str, cwd: Path | None = None) -> None:
    """Run an install command, output appended to `log_file`; ServiceError naming the log if it fails."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, timeout=INSTALL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{what} took over {INSTALL_TIMEOUT_S}s; {fix}; see log {log_file}") from exc
    if result.returncode != 0:
        last = tail(log_file, 1).strip()[:300]
        raise ServiceError(f"{what} failed ({last}); {fix}; see log {log_file}")


def pom_property(pom: Path, name: str) -> str:
    """Read <properties><name> from a Maven pom (the one place a pinned version lives)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    element = ET.parse(pom).getroot().find(f"m:properties/m:{name}", ns)
    if element is None or not element.text:
        raise ServiceError(f"{pom} has no <{name}> property; restore the file from git")
    return element.text.strip()


def maven_install(pom: Path, target: Path, what: str, log_file: Path) -> Path:
    """Copy a pom's runtime dependencies into `target` unless already complete; return `target`.

    Maven runs with --strict-checksums: a download whose checksum does not match fails the install.
    """
    fingerprint = hashlib.sha256(pom.read_bytes()).hexdigest()
    problem = install_problem(target, fingerprint)
    if problem is None:
        return target
    mvn = require_executable("mvn", "install Maven 3 (apt-get install maven) and run again")
    log.info("installing", what=what, into=str(target), state=problem, log=str(log_file))
    started = time.monotonic()
    shutil.rmtree(target, ignore_errors=True)
    run_logged(
        [
            mvn,
            "--batch-mode",
            "--quiet",
            "--strict-checksums",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
        ],
        log_file,
        what=f"downloading {what} with Maven",
        fix="check that Maven Central is reachable, then run again",
    )
    mark_installed(target, fingerprint)
    log.info("installed", what=what, into=str(target), seconds=round(time.monotonic() - started, 1))
    return target
