"""`python -m dashboard` (and the PEX): serve the Streamlit app with the address and port from the settings.

Runs Streamlit's own server in-process (streamlit.web.bootstrap), equivalent to
`streamlit run dashboard/app.py --server.address ... --server.port ... --server.headless true`.
Extra `--streamlit.option=value` style arguments are passed through, e.g. `--server.baseUrlPath=dash`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dashboard.settings import DashboardSettings
from tickstream.logs import configure_logging, get_logger

APP = Path(__file__).with_name("app.py")


def streamlit_flags(settings: DashboardSettings, extra: list[str]) -> dict[str, Any]:
    """Streamlit config options: served headless on the configured address/port, no telemetry, no reloader."""
    flags: dict[str, Any] = {
        "server.address": settings.address,
        "server.port": settings.port,
        "server.headless": True,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "global.developmentMode": False,
        "client.toolbarMode": "viewer",
    }
    for argument in extra:
        name, _, value = argument.removeprefix("--").partition("=")
        if not name or not value:
            raise SystemExit(f"unexpected argument {argument!r}: use --section.option=value")
        flags[name] = value
    return flags


def main(argv: list[str] | None = None) -> None:
    """Start the server and block until it stops (SIGINT/SIGTERM)."""
    from streamlit.web import bootstrap

    configure_logging()
    settings = DashboardSettings()
    flags = streamlit_flags(settings, list(sys.argv[1:] if argv is None else argv))
    get_logger("dashboard").info("serving", url=f"http://{settings.address}:{settings.port}/", app=str(APP))
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(APP), False, [], flags)


if __name__ == "__main__":
    main()
