"""Every dependency the build installs is pinned by hash: the Pants lockfiles, Pants' own requirements."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deploy.static_checks import repo_root

SHA256 = re.compile(r"[0-9a-f]{64}")


def locked_artifacts(lockfile: Path) -> list[tuple[str, dict[str, str]]]:
    """(project, artifact) of every artifact a Pants (Pex) lockfile pins; its `//` header is skipped."""
    body = "\n".join(line for line in lockfile.read_text().splitlines() if not line.startswith("//"))
    lock = json.loads(body)
    return [
        (requirement["project_name"], artifact)
        for resolve in lock["locked_resolves"]
        for requirement in resolve["locked_requirements"]
        for artifact in requirement["artifacts"]
    ]


LOCKFILES = sorted((repo_root() / "3rdparty" / "python").glob("*.lock"))


def test_every_resolve_has_a_lockfile() -> None:
    names = {path.stem for path in LOCKFILES}
    assert {"default", "spark", "airflow", "pytest", "mypy", "ruff", "black"} <= names


@pytest.mark.parametrize("lockfile", LOCKFILES, ids=lambda path: path.name)
def test_every_locked_artifact_has_a_sha256(lockfile: Path) -> None:
    artifacts = locked_artifacts(lockfile)
    assert artifacts
    unpinned = [
        project
        for project, artifact in artifacts
        if artifact.get("algorithm") != "sha256" or not SHA256.fullmatch(artifact.get("hash", ""))
    ]
    assert unpinned == []


def test_pants_itself_is_installed_by_hash() -> None:
    lines = (repo_root() / "build-support" / "pants-requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements
    assert all(re.search(r"==\S+ --hash=sha256:[0-9a-f]{64}$", line) for line in requirements)
    assert "--require-hashes" in (repo_root() / "pants").read_text()
