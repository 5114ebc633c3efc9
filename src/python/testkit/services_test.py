"""The shared-service lock of the test fixtures: a second test process joins a running instance at once, and
only the last user stops what tests started."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from testkit.services import running


class FileService:
    """A stand-in service whose state is a file (visible to every process)."""

    name = "fake"

    def __init__(self, directory: Path) -> None:
        self.flag = directory / "up"
        self.log = directory / "log"

    def healthy(self) -> bool:
        return self.flag.exists()

    def provision(self) -> None:
        pass

    def up(self) -> bool:
        self.flag.touch()
        with self.log.open("a") as out:
            out.write("up\n")
        return True

    def down(self) -> None:
        self.flag.unlink(missing_ok=True)
        with self.log.open("a") as out:
            out.write("down\n")


def use_for(directory: Path, seconds: float) -> None:
    with running(FileService(directory), directory):  # type: ignore[arg-type]
        time.sleep(seconds)


def test_a_second_process_joins_while_the_first_uses_it(tmp_path: Path) -> None:
    first = multiprocessing.get_context("fork").Process(target=use_for, args=(tmp_path, 4.0))
    first.start()
    while not (tmp_path / "up").exists():
        time.sleep(0.05)
    started = time.monotonic()
    use_for(tmp_path, 0.1)  # joins the running instance; the first user still holds it: not stopped
    assert time.monotonic() - started < 2.0, "the second user waited for the first to finish"
    assert (tmp_path / "up").exists()
    first.join(30)
    assert first.exitcode == 0
    assert not (tmp_path / "up").exists()  # the last user stopped it
    assert (tmp_path / "log").read_text().splitlines() == ["up", "down"]
