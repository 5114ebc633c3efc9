"""Tests of the CLI's wiring (settings → simulator config) and of graceful signal handling."""

from __future__ import annotations

import os
import signal

import pytest
from typer.testing import CliRunner

from producer.cli import app, simulation_config
from producer.publish import StopFlag
from producer.settings import ProducerSettings
from tickstream.commands import load_settings


def test_cli_values_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTREAM_PRODUCER_SEED", "5")
    monkeypatch.setenv("TICKSTREAM_PRODUCER_RATE", "1000")
    settings = load_settings(ProducerSettings, seed=None, rate=2_000.0, symbols="AAPL,ZZZ", late_fraction=0.1)
    assert (settings.seed, settings.rate, settings.late_fraction) == (5, 2_000.0, 0.1)
    config = simulation_config(settings, start_ts_us=1_767_225_600_000_000)
    assert [i.symbol for i in config.universe] == ["AAPL", "ZZZ"]
    assert config.event_rate_hz == 2_000.0 and config.seed == 5
    assert config.faults.late_fraction == 0.1 and config.faults.max_lateness_us == 2_000_000
    assert config.start_ts_us == 1_767_225_600_000_000


def test_invalid_values_are_a_usage_error_of_one_line() -> None:
    result = CliRunner().invoke(app, ["simulate", "--late", "1.5", "--count", "1"])
    assert result.exit_code == 2
    assert result.output == "error: invalid setting: late_fraction: Input should be less than or equal to 1\n"


def test_every_command_has_help() -> None:
    for command in ([], ["simulate"], ["replay"]):
        result = CliRunner().invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_sigterm_and_first_sigint_request_a_graceful_stop() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    with stop.on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal while stopping interrupts for real
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
