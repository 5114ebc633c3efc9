"""Unit tests: PID files, stale PIDs, health waits, stopping, port checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ops.services.process import (
    Daemon,
    ServiceError,
    _cmdline,
    ensure_ports_free,
    port_is_free,
    run_together,
)


def make_daemon(tmp_path: Path, marker: str = "tickstream-test-marker") -> Daemon:
    return Daemon("demo", tmp_path / "run" / "demo.pid", tmp_path / "logs" / "demo.log", marker)


def sleeper(marker: str, ignore_term: bool = False) -> list[str]:
    """A Python process that sleeps; `marker` appears in its command line."""
    handler = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    return [sys.executable, "-c", f"{handler}import time; time.sleep(120)", marker]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_no_pid_file_means_not_running(tmp_path: Path) -> None:
    assert make_daemon(tmp_path).pid() is None


@pytest.mark.parametrize("content", ["", "not-a-pid\n", f"{dead_pid()}\n"])
def test_stale_or_garbage_pid_file_is_removed(tmp_path: Path, content: str) -> None:
    daemon = make_daemon(tmp_path)
    daemon.pid_file.parent.mkdir(parents=True)
    daemon.pid_file.write_text(content)
    assert daemon.pid() is None
    assert not daemon.pid_file.exists()


def test_recycled_pid_of_another_program_is_stale(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    daemon.pid_file.parent.mkdir(parents=True)
    daemon.pid_file.write_text(f"{os.getpid()}\n")  # alive, but pytest, not our service
    assert daemon.pid() is None
    assert not daemon.pid_file.exists()


def test_start_then_stop(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    pid = daemon.start(sleeper(daemon.cmdline_marker))
    try:
        assert daemon.pid() == pid
        assert daemon.log_file.read_text().startswith("\n--- ")
    finally:
        assert daemon.stop(timeout=10)
    assert daemon.pid() is None
    assert not daemon.pid_file.exists()
    assert not daemon.stop()


def test_process_that_reexecs_without_the_marker_is_still_found(tmp_path: Path) -> None:
    # A PEX re-executes itself in its venv's interpreter: the marker leaves the command line.
    daemon = make_daemon(tmp_path, marker="/dist/src.python.demo/bin.pex")
    pid = daemon.start(["sh", "-c", "exec sleep 120"])
    try:
        deadline = time.monotonic() + 5
        while "sleep" not in _cmdline(psutil.Process(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.cmdline_marker not in _cmdline(psutil.Process(pid))
        assert daemon.pid() == pid
    finally:
        assert daemon.stop(timeout=10)


def test_killed_process_is_detected_as_stale(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    pid = daemon.start(sleeper(daemon.cmdline_marker))
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while daemon.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.pid() is None


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    daemon.start(sleeper(daemon.cmdline_marker, ignore_term=True))
    time.sleep(0.5)  # let it install the SIGTERM handler
    began = time.monotonic()
    assert daemon.stop(timeout=1)
    assert time.monotonic() - began < 10
    assert daemon.pid() is None


def test_wait_healthy_reports_early_exit_with_log_path(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    daemon.start(
        [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)", daemon.cmdline_marker]
    )
    with pytest.raises(ServiceError, match=r"exited during start-up \(boom: bad config\).*demo\.log"):
        daemon.wait_healthy(lambda: False, timeout=20, interval=0.1)


def test_wait_healthy_times_out(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    daemon.start(sleeper(daemon.cmdline_marker))
    try:
        with pytest.raises(ServiceError, match="did not become healthy within"):
            daemon.wait_healthy(lambda: False, timeout=0.5, interval=0.1)
    finally:
        daemon.stop(timeout=5)


def test_wait_healthy_returns_when_healthy(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    daemon.start(sleeper(daemon.cmdline_marker))
    try:
        calls = iter([False, False, True])
        daemon.wait_healthy(lambda: next(calls), timeout=10, interval=0.01)
    finally:
        daemon.stop(timeout=5)


def test_port_in_use_names_port_owner_and_fix() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        with pytest.raises(ServiceError) as info:
            ensure_ports_free("demo", "127.0.0.1", {"client port": port}, "set DEMO_PORT", grace=0.5)
    message = str(info.value)
    assert f"port {port} (client port)" in message
    assert f"pid {os.getpid()}" in message
    assert message.endswith("set DEMO_PORT")
    assert "\n" not in message
    assert port_is_free("127.0.0.1", port)
    ensure_ports_free("demo", "127.0.0.1", {"client port": port}, "unused")


def test_empty_command_line_during_exec_is_waited_for() -> None:
    class Exec:
        """A process whose command line reads empty twice, as /proc does in the middle of exec()."""

        def __init__(self) -> None:
            self.reads = iter([[], [], ["java", "kafka.Kafka", "marker"]])

        def cmdline(self) -> list[str]:
            return next(self.reads)

    assert _cmdline(Exec(), wait=5) == "java kafka.Kafka marker"  # type: ignore[arg-type]


def test_pid_right_after_start_is_found(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    for _ in range(20):
        pid = daemon.start(sleeper(daemon.cmdline_marker))
        try:
            assert daemon.pid() == pid
        finally:
            daemon.stop(timeout=5)


def test_run_together_runs_every_action_at_once_and_keeps_their_order() -> None:
    barrier = threading.Barrier(3, timeout=10)  # passes only if all three wait at the same time

    def action(result: str) -> Callable[[], str]:
        return lambda: (barrier.wait(), result)[1]

    assert run_together([action("a"), action("b"), action("c")]) == ["a", "b", "c"]
    assert run_together([]) == []


def test_run_together_raises_an_error_after_every_action_finished() -> None:
    finished: list[str] = []

    def fails() -> str:
        raise ServiceError("kafka did not stop")

    def slow() -> str:
        time.sleep(0.2)
        finished.append("slow")
        return "slow"

    with pytest.raises(ServiceError, match="kafka did not stop"):
        run_together([fails, slow])
    assert finished == ["slow"]
