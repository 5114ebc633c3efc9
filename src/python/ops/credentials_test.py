"""Tests of the per-install secrets file: generated once, private, kept, read by the settings."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from ops.credentials import GENERATED, ensure_install_secrets, read_secrets
from tickstream.settings import PathsSettings, S3Settings


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PathsSettings:
    monkeypatch.setenv("TICKSTREAM_HOME", str(tmp_path / "home"))
    for name in GENERATED:
        monkeypatch.delenv(name, raising=False)
    return PathsSettings()


def test_first_call_generates_every_secret_privately(paths: PathsSettings) -> None:
    assert ensure_install_secrets(paths) == list(GENERATED)
    stored = read_secrets(paths.secrets_file)
    assert set(stored) == set(GENERATED)
    assert all(len(value) >= 16 for value in stored.values())
    assert stat.S_IMODE(paths.secrets_file.stat().st_mode) == 0o600


def test_later_calls_keep_the_values_and_add_only_missing_ones(paths: PathsSettings) -> None:
    ensure_install_secrets(paths)
    first = read_secrets(paths.secrets_file)
    assert ensure_install_secrets(paths) == []
    # an install from before a secret existed gets only that one added
    kept = {k: v for k, v in first.items() if k != "TICKSTREAM_AIRFLOW_FERNET_KEY"}
    paths.secrets_file.write_text("".join(f"{k}={v}\n" for k, v in kept.items()))
    paths.secrets_file.chmod(0o644)
    assert ensure_install_secrets(paths) == ["TICKSTREAM_AIRFLOW_FERNET_KEY"]
    again = read_secrets(paths.secrets_file)
    assert {k: again[k] for k in kept} == kept
    assert stat.S_IMODE(paths.secrets_file.stat().st_mode) == 0o600


def test_two_installs_get_different_secrets(tmp_path: Path) -> None:
    one, two = PathsSettings(home=tmp_path / "one"), PathsSettings(home=tmp_path / "two")
    ensure_install_secrets(one)
    ensure_install_secrets(two)
    first, second = read_secrets(one.secrets_file), read_secrets(two.secrets_file)
    assert all(first[name] != second[name] for name in GENERATED)


def test_settings_read_the_file_below_the_environment(
    paths: PathsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert S3Settings().access_key_id == ""  # no default secret
    ensure_install_secrets(paths)
    stored = read_secrets(paths.secrets_file)
    s3 = S3Settings()
    assert (s3.access_key_id, s3.secret_access_key.get_secret_value()) == (
        stored["TICKSTREAM_S3_ACCESS_KEY_ID"],
        stored["TICKSTREAM_S3_SECRET_ACCESS_KEY"],
    )
    monkeypatch.setenv("TICKSTREAM_S3_ACCESS_KEY_ID", "from-the-environment")
    assert S3Settings().access_key_id == "from-the-environment"


def test_bash_sources_the_file(paths: PathsSettings) -> None:
    ensure_install_secrets(paths)
    shown = subprocess.run(
        ["bash", "-c", f'set -eu; set -a; . "{paths.secrets_file}"; echo "$TICKSTREAM_S3_SECRET_ACCESS_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == read_secrets(paths.secrets_file)["TICKSTREAM_S3_SECRET_ACCESS_KEY"]
