"""Where the end-to-end tests find what they run: the PEXes Pants built and the source directories shipped."""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]


def package(directory: str, name: str) -> Path:
    """A PEX Pants built for this test (sandbox), or from `./pants package` (dist/) outside it."""
    for base in (Path.cwd(), CHECKOUT / "dist"):
        if (base / directory / name).is_file():
            return base / directory / name
    raise FileNotFoundError(f"{directory}/{name}: run under `./pants test`, or `./pants package` it first")


def source_dir(relative: str) -> Path:
    """A source directory shipped as `files` (sandbox), or the checkout's."""
    for base in (Path.cwd(), CHECKOUT):
        if (base / relative).is_dir():
            return base / relative
    raise FileNotFoundError(relative)
