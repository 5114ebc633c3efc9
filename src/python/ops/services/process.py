"""Detached service processes: PID files, stale-PID handling, health waits, ports and graceful stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import psutil

from tickstream.logs import get_logger

T = TypeVar("T")

log = get_logger("services")


class ServiceError(RuntimeError):
    """A service problem, phrased as one line naming the cause and the fix."""


class Service(Protocol):
    """What the CLI and the test fixtures need from a local service."""

    name: str

    @property
    def daemon(self) -> Daemon | None:
        """The service's process; None for a service that is only data (the catalog database)."""

    def up(self) -> bool: ...

    def down(self) -> bool: ...

    def healthy(self) -> bool: ...

    def provision(self) -> None: ...

    @property
    def endpoint(self) -> str: ...


def require_executable(name: str, fix: str) -> str:
    """Return the path of `name` on PATH, or raise ServiceError naming `fix`."""
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` not found on PATH; {fix}")
    return path


def tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_owner(port: int) -> str | None:
    """Describe the live process listening on TCP `port`, e.g. 'pid 12 (java)', or None if none is found."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def port_is_free(host: str, port: int) -> bool:
    """True if a listening socket could be bound to host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


PORT_GRACE_S = 10.0


def ensure_ports_free(
    service: str, host: str, ports: Mapping[str, int], fix: str, grace: float | None = None
) -> None:
    """Raise ServiceError if a named port is taken, naming the port, its owner and `fix`.

    A port held by a live process fails at once; one held by no visible process (the sockets of a
    process that was just killed) gets `grace` seconds to close.
    """
    deadline = time.monotonic() + (PORT_GRACE_S if grace is None else grace)
    for label, port in ports.items():
        while not port_is_free(host, port):
            owner = port_owner(port)
            if owner is not None or time.monotonic() > deadline:
                raise ServiceError(
                    f"{service}: port {port} ({label}) on {host} is already in use by "
                    f"{owner or 'another process'}; stop that process or {fix}"
                )
            time.sleep(0.2)


def port_accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cmdline(proc: psutil.Process, wait: float = 2.0) -> str:
    """The process' command line; waits while it reads empty, as it does for a moment during exec()."""
    deadline = time.monotonic() + wait
    while True:
        command = " ".join(proc.cmdline())
        if command or time.monotonic() > deadline:
            return command
        time.sleep(0.02)


def _owned_by_us(proc: psutil.Process) -> bool:
    """True if the process runs as this user (a PID reused by another user's process is not ours)."""
    try:
        return bool(proc.uids().real == os.getuid())
    except psutil.Error:
        return False


def _alive(proc: psutil.Process) -> bool:
    """True unless the process has fully exited (reaping it if it is our child).

    After SIGKILL a multi-threaded process (a JVM) can show as a zombie while its other threads,
    and its sockets, are still being torn down; it only counts as dead once that has finished.
    """
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return False
    try:
        reaped, _ = os.waitpid(proc.pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:  # not our child: dead once only the leader thread is left
        with contextlib.suppress(OSError):
            return len(os.listdir(f"/proc/{proc.pid}/task")) > 1
        return False


def daemon_processes(run_dir: Path) -> dict[str, list[psutil.Process]]:
    """Each daemon with a PID file in `run_dir` (by the file's name) -> its process and all descendants,
    as they are now (stale PID files and vanished processes are skipped)."""
    found: dict[str, list[psutil.Process]] = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            leader = psutil.Process(int(pid_file.read_text().strip()))
            found[pid_file.stem] = [leader, *leader.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            continue
    return found


MARKER_ENV = "TICKSTREAM_DAEMON_MARKER"
"""Set to the daemon's marker in its environment, which survives a re-exec (a PEX re-executes itself in
its venv's interpreter, so its command line no longer names the PEX)."""


@dataclass(frozen=True)
class Daemon:
    """One detached process identified by a PID file and a marker in its command line.

    The marker (e.g. the service's config or data path), found in the command line or in the
    MARKER_ENV environment variable, guards against a recycled PID: a PID file whose process is gone,
    a zombie, or a different program is stale and is removed.
    """

    name: str
    pid_file: Path
    log_file: Path
    cmdline_marker: str

    def pid(self) -> int | None:
        """Return the PID of the running service, or None (removing a stale PID file)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pid = None
        if pid is not None and self._is_ours(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _is_ours(self, pid: int) -> bool:
        """True if `pid` is a live process of this service (its marker in the command line or environment)."""
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return False
        try:
            ours = self.cmdline_marker in _cmdline(proc) or (
                proc.environ().get(MARKER_ENV) == self.cmdline_marker
            )
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:  # exists but unreadable: ours for a moment (mid-exec), or another user's
            return _owned_by_us(proc)
        return ours and _alive(proc)

    def start(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start `argv` in its own session, appending output to the log file; write and return its PID."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), MARKER_ENV: self.cmdline_marker},
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_healthy(self, healthy: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
        """Poll `healthy` until it returns True; raise ServiceError if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pid() is None:
                last = tail(self.log_file, 1).strip()[:300]
                raise ServiceError(
                    f"{self.name} exited during start-up ({last or 'no output'}); see log {self.log_file}"
                )
            if healthy():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} did not become healthy within {timeout:.0f}s (still running as pid "
                    f"{self.pid()}); see log {self.log_file}, then `tickstream services down {self.name}`"
                )
            time.sleep(interval)

    def ensure_running(
        self, launch: Callable[[], object], healthy: Callable[[], bool], timeout: float
    ) -> bool:
        """Run `launch` (which starts the process) unless running, then wait until healthy.

        Returns True if this call started the process.
        """
        started = self.pid() is None
        if started:
            launch()
        began = time.monotonic()
        self.wait_healthy(healthy, timeout)
        if started:
            log.info("healthy", service=self.name, seconds=round(time.monotonic() - began, 1))
        return started

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process, then SIGKILL after `timeout` s; its descendants too. True if one was stopped.

        Descendants matter for supervisors such as `airflow standalone` or a PEX's JVM: whatever the
        leader leaves behind after its own shutdown is terminated the same way.
        """
        pid = self.pid()
        if pid is None:
            return False
        try:
            leader = psutil.Process(pid)
            family = [leader, *leader.children(recursive=True)]
            leader.send_signal(signal.SIGTERM)
            try:
                leader.wait(timeout)
            except psutil.TimeoutExpired:
                leader.kill()
                leader.wait(10)
        except psutil.NoSuchProcess:
            family = []
        survivors = [proc for proc in family[1:] if proc.is_running()]
        for proc in survivors:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, still_alive = psutil.wait_procs(survivors, timeout=min(timeout, 15.0))
        for proc in still_alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.pid_file.unlink(missing_ok=True)
        return True


def run_together(actions: Sequence[Callable[[], T]]) -> list[T]:
    """Run the actions at once, one thread each, and return their results in order (the first error is
    raised after all finished): stopping N processes that each wait for a graceful exit takes the slowest
    one's time, not the sum."""
    if not actions:
        return []
    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        futures = [pool.submit(action) for action in actions]
        wait(futures)
    return [future.result() for future in futures]
