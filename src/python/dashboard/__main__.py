"""`python -m dashboard` (and the PEX): serve the Streamlit app with the address and port from the settings.

Runs Streamlit's own server in-process (streamlit.web.bootstrap), equivalent to
`streamlit run dashboard/app.py --server.address ... --server.port ... --server.headless true`.
Extra `--streamlit.option=value` style arguments are passed through, e.g. `--server.baseUrlPath=dash`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dashboard.settings import DashboardSettings
from tickstream.commands import command_app, load_settings, usage_error
from tickstream.logs import configure_logging, get_logger

APP = Path(__file__).with_name("app.py")


def streamlit_flags(settings: DashboardSettings, extra: list[str]) -> dict[str, Any]:
    """Streamlit config options: served headless on the configured address/port, no telemetry, no reloader;
    `extra` (`--section.option=value`) on top. A usage error (exit 2) for any other argument."""
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
        if not argument.startswith("--") or "." not in name or not value:
            raise usage_error(f"unexpected argument {argument!r}: use --section.option=value")
        flags[name] = value
    return flags


app = command_app(
    "Serve the dashboard (Streamlit) on TICKSTREAM_DASHBOARD_ADDRESS/_PORT; Streamlit options as "
    "--section.option=value, e.g. --server.baseUrlPath=dash."
)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(ctx: typer.Context) -> None:
    """Start the server and block until it stops (SIGINT/SIGTERM)."""
    from streamlit.web import bootstrap

    settings = load_settings(DashboardSettings)
    flags = streamlit_flags(settings, list(ctx.args))
    configure_logging()
    get_logger("dashboard").info("serving", url=f"http://{settings.address}:{settings.port}/", app=str(APP))
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(APP), False, [], flags)


def main() -> None:
    """Entry point (the PEX's and `python -m dashboard`)."""
    app()


if __name__ == "__main__":
    main()
