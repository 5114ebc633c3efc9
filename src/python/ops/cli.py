"""The `tickstream` command line.

`tickstream up|down|status` runs the whole local platform (services and application components);
`tickstream services up|down|status|logs [kafka|s3]` only the services; `tickstream containers ...` the
platform as containers (ops.containers). Run through ./tickstream, which
builds the components' PEXes first, or as `python -m ops.cli ...`.
"""

from __future__ import annotations

import functools
import subprocess
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ops.airflow_local import AirflowSettings, airflow_home
from ops.components import Component, ComponentsSettings, components, start
from ops.containers import containers_app
from ops.credentials import ensure_install_secrets
from ops.replay import ReplayError, ReplayRequest, replay
from ops.services.catalog import CatalogService
from ops.services.kafka import KafkaService
from ops.services.process import Service, ServiceError, run_together, tail
from ops.services.seaweedfs import SeaweedFSService, SeaweedFSSettings
from ops.services.spark_jars import install_spark_jars
from tickstream.commands import command_app
from tickstream.lake import LakeLocation
from tickstream.logs import configure_logging
from tickstream.settings import CatalogSettings, KafkaSettings, PathsSettings, S3Settings
from tickstream.topology import TICKS_TOPIC

app = command_app("Tickstream platform commands.", no_args_is_help=True)
services_app = command_app(
    help="Local services: Kafka, S3 (SeaweedFS) and the lake's Iceberg catalog.", no_args_is_help=True
)
app.add_typer(services_app, name="services")
app.add_typer(containers_app, name="containers")


class ServiceName(str, Enum):
    """Services the CLI manages."""

    kafka = "kafka"
    s3 = "s3"
    catalog = "catalog"


ServiceArg = Annotated[ServiceName | None, typer.Argument(help="One service; default: all.")]


def selected(name: ServiceName | None) -> list[Service]:
    """The services named on the command line (all of them, in start order, if none)."""
    paths, s3 = PathsSettings(), S3Settings()
    services: list[Service] = [
        KafkaService(paths, KafkaSettings()),
        SeaweedFSService(paths, s3, SeaweedFSSettings()),
        CatalogService(paths, CatalogSettings(), s3),
    ]
    return [service for service in services if name is None or service.name == name.value]


def fail(exc: ServiceError) -> typer.Exit:
    """Print a service error as one line and return the exit to raise."""
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


ADMIN_PASSWORD = "TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"


def install_secrets(paths: PathsSettings) -> list[str]:
    """Generate the install's missing secrets (the first run: all of them); say where they are, never what."""
    added = ensure_install_secrets(paths)
    if added:
        typer.echo(f"secrets: generated {len(added)} for this install into {paths.secrets_file} (mode 0600)")
    return added


@app.command("secrets")
def secrets_command() -> None:
    """Generate this install's missing secrets without starting anything (what `up` does first); print
    where they are, e.g. for `docker compose --env-file` (docs/security.md)."""
    paths = PathsSettings()
    install_secrets(paths)
    typer.echo(f"secrets: {paths.secrets_file}")


@services_app.command()
def up(service: ServiceArg = None) -> None:
    """Install what is missing, start the services and create topics/buckets (idempotent)."""
    configure_logging()
    began = time.monotonic()
    install_secrets(PathsSettings())
    try:
        for svc in selected(service):
            started = svc.up()
            if svc.daemon is None:  # the catalog: a database, no process
                typer.echo(f"{svc.name}: {'created' if started else 'ready'} at {svc.endpoint}")
                continue
            state = "started" if started else "already running"
            typer.echo(
                f"{svc.name}: {state} (pid {svc.daemon.pid()}) at {svc.endpoint}; log {svc.daemon.log_file}"
            )
        if service is None:
            jars = install_spark_jars(PathsSettings())
            typer.echo(f"spark jars: {len(jars)} in {jars[0].parent}")
    except ServiceError as exc:
        raise fail(exc) from None
    typer.echo(f"up in {time.monotonic() - began:.1f}s")


@services_app.command()
def down(service: ServiceArg = None) -> None:
    """Stop the services, all at once (SIGTERM, then SIGKILL if they do not exit)."""
    configure_logging()
    with_process = [svc for svc in selected(service) if svc.daemon is not None]  # not the catalog
    for svc, stopped in zip(with_process, run_together([svc.down for svc in with_process]), strict=True):
        typer.echo(f"{svc.name}: {'stopped' if stopped else 'not running'}")


@services_app.command()
def status(service: ServiceArg = None) -> None:
    """Show whether each service runs and answers; exit 1 if any does not."""
    all_ok = True
    for svc in selected(service):
        if svc.daemon is None:  # the catalog: a database, no process
            healthy = svc.healthy()
            all_ok = all_ok and healthy
            typer.echo(f"{svc.name}: {'healthy' if healthy else 'not answering'} at {svc.endpoint}")
            continue
        pid = svc.daemon.pid()
        healthy = pid is not None and svc.healthy()
        all_ok = all_ok and healthy
        state = "healthy" if healthy else "running but not answering" if pid else "stopped"
        pid_text = f" (pid {pid})" if pid else ""
        typer.echo(f"{svc.name}: {state}{pid_text} at {svc.endpoint}; log {svc.daemon.log_file}")
    if not all_ok:
        raise typer.Exit(1)


@services_app.command()
def logs(
    service: ServiceArg = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines to show.")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Print the end of each service's log (follow with -f, one service only)."""
    services = [svc for svc in selected(service) if svc.daemon is not None]
    if follow and len(services) != 1:
        raise fail(ServiceError("--follow needs one service; run `tickstream services logs kafka -f`"))
    for svc in services:
        assert svc.daemon is not None
        path = svc.daemon.log_file
        typer.echo(f"==> {path} <==")
        typer.echo(tail(path, lines) if path.exists() else "(no log yet)")
    if follow and services[0].daemon is not None:
        follow_file(services[0].daemon.log_file)


def follow_file(path: Path) -> None:
    """Print lines appended to a log file until interrupted."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(0, 2)
        try:
            while True:
                line = handle.readline()
                if line:
                    typer.echo(line, nl=False)
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass


ComponentArg = Annotated[
    str | None, typer.Argument(help="One component (producer, streaming, airflow, dashboard); default: all.")
]


def selected_components(name: str | None, paths: PathsSettings) -> list[Component]:
    """The named component (all, in start order, if none); exits with a clear error for an unknown name."""
    every = components(ComponentsSettings(), S3Settings(), paths)
    chosen = [c for c in every if name is None or c.name == name]
    if not chosen:
        raise fail(ServiceError(f"no component {name!r}; choose from {', '.join(c.name for c in every)}"))
    return chosen


@app.command("up")
def platform_up(component: ComponentArg = None) -> None:
    """Bring the platform up: services, then each component (or just the one named); print where to look."""
    paths, settings = PathsSettings(), ComponentsSettings()
    up(None)
    chosen = selected_components(component, paths)
    try:
        for each in chosen:
            typer.echo(f"{each.name}: starting (log {each.daemon(paths).log_file}) ...")
            started = start(each, paths, settings)
            typer.echo(f"{each.name}: {'started' if started else 'already running'}")
    except ServiceError as exc:
        raise fail(exc) from None
    for each in chosen:
        if each.url:
            typer.echo(f"{each.name}: {each.url}")
    if any(each.name == "airflow" for each in chosen):
        typer.echo(f"airflow: sign in as admin; the password is {ADMIN_PASSWORD} in {paths.secrets_file}")
        shown = airflow_home(paths) / "admin-password-shown"
        if not shown.exists():  # once per install: the first `up` that started Airflow
            password = AirflowSettings().admin_password.get_secret_value()
            typer.echo(f"airflow: admin password (shown once): {password}")
            shown.touch()
    typer.echo(f"logs: {paths.logs_dir}")


@app.command("down")
def platform_down(component: ComponentArg = None) -> None:
    """Stop every component (or just the one named), then the services (only when stopping all); each
    group at once, so `down` waits for the slowest graceful exit rather than the sum of them."""
    paths = PathsSettings()
    chosen = selected_components(component, paths)
    stops = [functools.partial(each.daemon(paths).stop, each.stop_timeout_s) for each in chosen]
    for each, stopped in zip(chosen, run_together(stops), strict=True):
        typer.echo(f"{each.name}: {'stopped' if stopped else 'not running'}")
    if component is None:
        down(None)


@app.command("status")
def platform_status() -> None:
    """Show each component and service; exit 1 if any is not running."""
    paths = PathsSettings()
    running = True
    for each in components(ComponentsSettings(), S3Settings(), paths):
        daemon = each.daemon(paths)
        pid = daemon.pid()
        running = running and pid is not None
        where = f" at {each.url}" if each.url and pid else ""
        typer.echo(
            f"{each.name}: {f'running (pid {pid})' if pid else 'stopped'}{where}; log {daemon.log_file}"
        )
    try:
        status(None)
    except typer.Exit:
        running = False
    if not running:
        raise typer.Exit(1)


PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
"""Context settings of commands that hand every argument to a PEX."""


PRODUCER_PEX = "src.python.producer/bin.pex"
ANALYTICS_PEX = "src.python.analytics/bin.pex"
COMPACTION_PEX = "src.python.compaction/bin.pex"


def run_pex(pex: str, args: list[str]) -> None:
    """Run one of the platform's PEXes (from TICKSTREAM_PEX_DIR) with `args`; exit with its code."""
    path = ComponentsSettings().pex_dir / pex
    if not path.is_file():
        raise fail(ServiceError(f"{path} not found; build it with `./tickstream up` or `./pants package`"))
    raise typer.Exit(subprocess.call([str(path), *args]))


@app.command("rebuild-lake", context_settings=PASSTHROUGH)
def rebuild_lake(ctx: typer.Context) -> None:
    """Rebuild closed hours of the lake from Kafka: --from YYYY-MM-DDTHH --to YYYY-MM-DDTHH [--topic ...].

    Runs `python -m compaction.rebuild` (its PEX); see docs/compaction.md.
    """
    run_pex("src.python.compaction/rebuild.pex", list(ctx.args))


@app.command("analytics", context_settings=PASSTHROUGH)
def analytics(ctx: typer.Context) -> None:
    """Run the dbt project, e.g. `analytics build --start 2026-11-20 --end 2026-11-21` (re-run a range).

    Runs `python -m analytics.run` (its PEX); see docs/analytics.md.
    """
    run_pex(ANALYTICS_PEX, list(ctx.args))


@app.command("replay")
def replay_command(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet of ticks or 1-minute bars.")
    ],
    speed: Annotated[float, typer.Option(help="Producer speed factor; 0 = as fast as possible.")] = 0.0,
    topic: Annotated[str, typer.Option(help="Kafka topic the streaming job reads.")] = TICKS_TOPIC.name,
    timeout: Annotated[float, typer.Option(help="Longest wait for each step, in seconds.")] = 900.0,
    model: Annotated[bool, typer.Option(help="Rebuild the dbt models of the touched days.")] = True,
) -> None:
    """Replay recorded days into the running platform: lake, bars and the touched days' marts.

    Needs the streaming job running (`tickstream up`); see docs/streaming.md, "Replaying recorded days".
    """
    configure_logging()
    kafka = KafkaSettings()
    pex_dir = ComponentsSettings().pex_dir
    commands = {name: pex_dir / name for name in (PRODUCER_PEX, COMPACTION_PEX, ANALYTICS_PEX)}
    missing = [str(path) for path in commands.values() if not path.is_file()]
    if missing:
        raise fail(ServiceError(f"{', '.join(missing)} not found; build them with `./tickstream up`"))
    request = ReplayRequest(
        path=path,
        publish=[str(commands[PRODUCER_PEX])],
        model=[str(commands[ANALYTICS_PEX])] if model else None,
        compact=[str(commands[COMPACTION_PEX])],
        bootstrap=kafka.bootstrap_servers,
        client_security=kafka.client_security(),
        topic=topic,
        status=LakeLocation.for_bucket(S3Settings()),
        speed=speed,
        timeout_s=timeout,
    )
    try:
        replay(request, say=typer.echo)
    except ReplayError as exc:
        typer.echo(f"replay failed: {exc}", err=True)
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
