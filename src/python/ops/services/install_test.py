"""Unit tests: cached installs are redone when incomplete or damaged, errors name cause and log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ops.services.install import MARKER, install_problem, maven_install, pom_property
from ops.services.process import ServiceError

FAKE_MVN = """#!/bin/sh
echo "$@" >> "{calls}"
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
done
{body}
"""


@pytest.fixture
def pom(tmp_path: Path) -> Path:
    path = tmp_path / "pom.xml"
    path.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0">'
        "<properties><demo.version>1.2.3</demo.version></properties></project>"
    )
    return path


def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """Put a fake `mvn` first on PATH; return the file counting its runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "mvn"
    script.write_text(FAKE_MVN.format(calls=calls, body=body))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def runs(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


GOOD = 'mkdir -p "$out" && printf 0123456789 > "$out/a.jar" && printf x > "$out/b.jar"'


def test_pom_property(pom: Path) -> None:
    assert pom_property(pom, "demo.version") == "1.2.3"
    with pytest.raises(ServiceError, match="no <other> property"):
        pom_property(pom, "other")


def test_install_once_then_cached(tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mvn(tmp_path, monkeypatch, GOOD)
    target = tmp_path / "cache" / "libs"
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    assert runs(calls) == 1
    assert "--strict-checksums" in calls.read_text().split()  # a checksum mismatch fails the download
    assert (target / MARKER).exists()
    assert sorted(p.name for p in target.glob("*.jar")) == ["a.jar", "b.jar"]


def test_half_download_without_marker_is_redone(
    tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_mvn(tmp_path, monkeypatch, GOOD)
    target = tmp_path / "libs"
    target.mkdir()
    (target / "a.jar").write_text("0123")  # what an interrupted download leaves behind
    assert install_problem(target, "any") == "incomplete (no completion marker)"
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    assert runs(calls) == 1
    assert (target / "a.jar").read_text() == "0123456789"


def test_truncated_jar_after_install_is_redone(
    tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_mvn(tmp_path, monkeypatch, GOOD)
    target = tmp_path / "libs"
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    (target / "a.jar").write_text("01")
    assert install_problem(target, "x") is not None
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    assert runs(calls) == 2
    assert (target / "a.jar").read_text() == "0123456789"


def test_changed_pom_is_reinstalled(tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_mvn(tmp_path, monkeypatch, GOOD)
    target = tmp_path / "libs"
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    pom.write_text(pom.read_text().replace("1.2.3", "1.2.4"))
    maven_install(pom, target, "demo jars", tmp_path / "install.log")
    assert runs(calls) == 2


def test_failed_download_names_log_and_leaves_no_marker(
    tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mvn(tmp_path, monkeypatch, 'mkdir -p "$out"; echo "Could not resolve dependencies"; exit 1')
    target = tmp_path / "libs"
    log_file = tmp_path / "install.log"
    with pytest.raises(ServiceError) as info:
        maven_install(pom, target, "demo jars", log_file)
    assert "Could not resolve dependencies" in str(info.value)
    assert str(log_file) in str(info.value)
    assert not (target / MARKER).exists()


def test_missing_maven_is_one_line_error(tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match=r"`mvn` not found on PATH; install Maven"):
        maven_install(pom, tmp_path / "libs", "demo jars", tmp_path / "install.log")
