"""The dashboard's command line (`python -m dashboard`): Streamlit options pass through, anything else is a
usage error."""

from __future__ import annotations

from typer.testing import CliRunner

from dashboard.__main__ import app, streamlit_flags
from dashboard.settings import DashboardSettings


def test_streamlit_options_pass_through() -> None:
    flags = streamlit_flags(DashboardSettings(port=8599), ["--server.baseUrlPath=dash"])
    assert (flags["server.baseUrlPath"], flags["server.port"], flags["server.headless"]) == (
        "dash",
        8599,
        True,
    )


def test_anything_else_is_a_one_line_usage_error() -> None:
    result = CliRunner().invoke(app, ["--port-of-call"])
    assert (result.exit_code, result.output) == (
        2,
        "error: unexpected argument '--port-of-call': use --section.option=value\n",
    )
    assert CliRunner().invoke(app, ["--help"]).exit_code == 0
