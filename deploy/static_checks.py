"""Static checks of the container deployment: compose file, Dockerfiles, docker_image and pex_binary targets.

No Docker engine and no Pants run: BUILD files are parsed with `ast` (literal keyword arguments only),
Dockerfiles line by line, the compose file with PyYAML. Each `*_problems` function returns readable problems
(empty = fine), so tests can assert on both the real files and deliberately broken examples.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

COMPOSE_FILE = "deploy/docker-compose.yml"
ENV_EXAMPLE = ".env.example"
SPARK_POM = "deploy/spark/pom.xml"
SPARK_JOB_PEXES = frozenset({"src.python.streaming/bin.pex", "src.python.compaction/bin.pex"})
"""PEXes that start a Spark driver: an image with one needs the jars of SPARK_POM (Iceberg, JDBC drivers)."""
SKIPPED_DIRS = frozenset({".git", "dist", ".pants.d", "node_modules", "__pycache__"})
DEPENDS_ON_CONDITIONS = frozenset({"service_started", "service_healthy", "service_completed_successfully"})


def repo_root() -> Path:
    """The directory holding the compose file: the working directory (Pants' sandbox) or above this file."""
    for candidate in (Path.cwd(), *Path(__file__).resolve().parents):
        if (candidate / COMPOSE_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"no {COMPOSE_FILE} in {Path.cwd()} or above {__file__}")


def repo_files(root: Path, name: str) -> list[Path]:
    """Every file called `name` under `root`, outside build output and VCS directories, sorted."""
    return sorted(
        path
        for path in root.rglob(name)
        if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(root).parts)
    )


# --- BUILD files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One target of a BUILD file: its type, directory (repo-relative, "" = root), name and literal fields."""

    kind: str
    directory: str
    name: str
    fields: Mapping[str, Any]

    @property
    def address(self) -> str:
        """Pants' address of the target."""
        return f"{self.directory}:{self.name}"

    def pex_output_path(self) -> str:
        """Where Pants puts this pex_binary in dist/ and in a Docker build context."""
        explicit = self.fields.get("output_path")
        if isinstance(explicit, str) and explicit:
            return explicit
        prefix = self.directory.replace("/", ".")
        return f"{prefix}/{self.name}.pex" if prefix else f"{self.name}.pex"

    def source_globs(self) -> list[str]:
        """The repo-relative globs of a files/resources target's `sources` (or `source`)."""
        sources = self.fields.get("sources") or ([self.fields["source"]] if self.fields.get("source") else [])
        return [str(PurePosixPath(self.directory, glob)) for glob in sources if not glob.startswith("!")]


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # parametrize(...) and other calls: not needed by these checks


def parse_build_file(text: str, directory: str) -> list[Target]:
    """The top-level target calls of one BUILD file."""
    targets = []
    for statement in ast.parse(text).body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        fields = {kw.arg: _literal(kw.value) for kw in call.keywords if kw.arg}
        name = fields.get("name") or PurePosixPath(directory).name
        targets.append(Target(call.func.id, directory, str(name), fields))
    return targets


def build_targets(root: Path) -> list[Target]:
    """Every target of every BUILD file under `root`."""
    targets: list[Target] = []
    for build in repo_files(root, "BUILD"):
        directory = build.parent.relative_to(root).as_posix()
        targets += parse_build_file(build.read_text(), "" if directory == "." else directory)
    return targets


def resolve_address(spec: str, relative_to: str) -> str:
    """The `directory:name` address a dependency string (`:x`, `path:x`, `path`, `//:x`) names."""
    if spec.startswith("//"):
        relative_to, spec = "", spec[2:]
    if spec.startswith(":"):
        return f"{relative_to}{spec}"
    path, _, name = spec.partition(":")
    return f"{path}:{name or PurePosixPath(path).name}"


# --- Dockerfiles -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), `--flags` and arguments."""

    keyword: str
    flags: tuple[str, ...]
    arguments: tuple[str, ...]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile (continuation lines joined, comments dropped; no heredocs)."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    instructions = []
    for entry in logical:
        keyword, _, rest = entry.partition(" ")
        rest = rest.strip()
        words = [str(word) for word in json.loads(rest)] if rest.startswith("[") else rest.split()
        leading = next((i for i, word in enumerate(words) if not word.startswith("--")), len(words))
        flags, arguments = tuple(words[:leading]), tuple(words[leading:])  # flags precede the command
        instructions.append(Instruction(keyword.upper(), flags, arguments))
    return instructions


@dataclass(frozen=True)
class Copy:
    """A COPY from the build context (not from another stage): its sources and destination."""

    sources: tuple[str, ...]
    destination: str


def context_copies(instructions: Iterable[Instruction]) -> list[Copy]:
    """The COPY/ADD instructions that read the build context (`--from=` ones read a stage)."""
    return [
        Copy(tuple(i.arguments[:-1]), i.arguments[-1])
        for i in instructions
        if i.keyword in ("COPY", "ADD") and not any(flag.startswith("--from") for flag in i.flags)
    ]


def entrypoint(instructions: Iterable[Instruction]) -> tuple[str, ...]:
    """The last ENTRYPOINT's words (empty without one)."""
    found: tuple[str, ...] = ()
    for instruction in instructions:
        if instruction.keyword == "ENTRYPOINT":
            found = instruction.arguments
    return found


def env_instructions(instructions: Iterable[Instruction]) -> dict[str, str]:
    """The variables ENV instructions set (`ENV A=1 B=2` and the legacy `ENV A 1`; later ones win)."""
    found: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword != "ENV" or not instruction.arguments:
            continue
        words = instruction.arguments
        if "=" not in words[0]:
            found[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            found[key] = value.strip("\"'")
    return found


def pom_property(text: str, name: str) -> str | None:
    """`<properties><name>` of a Maven pom's text (None if absent)."""
    element = ET.fromstring(text).find(f"m:properties/m:{name}", {"m": "http://maven.apache.org/POM/4.0.0"})
    return element.text.strip() if element is not None and element.text else None


@dataclass(frozen=True)
class Image:
    """A Dockerfile with the docker_image target building it."""

    dockerfile: str
    target: Target
    instructions: tuple[Instruction, ...]

    def explicit_dependencies(self) -> list[str]:
        """Addresses listed in the target's `dependencies`."""
        return [
            resolve_address(d, self.target.directory) for d in self.target.fields.get("dependencies") or ()
        ]

    def references(self) -> list[str]:
        """`repository:tag` for each image tag."""
        repository = self.target.fields.get("repository") or self.target.name
        return [f"{repository}:{tag}" for tag in self.target.fields.get("image_tags") or ["latest"]]


def images(root: Path, targets: list[Target]) -> tuple[list[Image], list[str]]:
    """Every Dockerfile paired with its docker_image target, and problems for unpaired ones."""
    by_dockerfile: dict[str, list[Target]] = {}
    for target in targets:
        if target.kind == "docker_image":
            source = target.fields.get("source") or "Dockerfile"
            by_dockerfile.setdefault(str(PurePosixPath(target.directory, source)), []).append(target)
    found: list[Image] = []
    problems: list[str] = []
    for path in repo_files(root, "Dockerfile"):
        relative = path.relative_to(root).as_posix()
        owners = by_dockerfile.pop(relative, [])
        if len(owners) != 1:
            problems.append(f"{relative}: built by {len(owners)} docker_image targets, expected 1")
            continue
        found.append(Image(relative, owners[0], tuple(dockerfile_instructions(path.read_text()))))
    problems += [f"{path}: docker_image target without its Dockerfile" for path in by_dockerfile]
    return found, problems


def pex_copy_problems(image: Image, targets: list[Target]) -> list[str]:
    """The image COPYs exactly the PEX paths of the pex_binary targets it depends on, and runs a copied one.

    Pants infers a dependency on the pex_binary whose output path a COPY names and puts that PEX at the
    path in the build context; an explicit pex_binary dependency must be copied too.
    """
    pexes = {t.address: t.pex_output_path() for t in targets if t.kind == "pex_binary"}
    copies = context_copies(image.instructions)
    copied = [source for copy in copies for source in copy.sources if source.endswith(".pex")]
    produced = set(pexes.values())
    problems = [
        f"{image.dockerfile}: COPY {path}: no pex_binary produces it"
        for path in copied
        if path not in produced
    ]
    problems += [
        f"{image.dockerfile}: depends on {address} but does not COPY {pexes[address]}"
        for address in image.explicit_dependencies()
        if address in pexes and pexes[address] not in copied
    ]
    if not copied and image.dockerfile.startswith("src/"):
        problems.append(f"{image.dockerfile}: copies no PEX")
    run = entrypoint(image.instructions)
    destinations = {copy.destination for copy in copies if any(s.endswith(".pex") for s in copy.sources)}
    if run and run[0].endswith(".pex") and run[0] not in destinations:
        problems.append(f"{image.dockerfile}: ENTRYPOINT {run[0]} is not a copied PEX")
    return problems


def context_file_problems(image: Image, targets: list[Target]) -> list[str]:
    """Every non-PEX file the image COPYs from the context comes from a `files` target it depends on.

    A Docker build context made by Pants holds only packages and files targets: a resources target, a
    python_sources target or an undeclared file is missing there and the build fails.
    """
    by_address = {t.address: t for t in targets}
    globs = [
        glob
        for address in image.explicit_dependencies()
        if (dependency := by_address.get(address)) is not None and dependency.kind in ("files", "file")
        for glob in dependency.source_globs()
    ]
    problems = []
    for copy in context_copies(image.instructions):
        for source in copy.sources:
            if source.endswith(".pex"):
                continue
            directory = source.rstrip("/") + "/"
            if not any(
                fnmatch.fnmatch(source, glob) or fnmatch.fnmatch(glob, source) or glob.startswith(directory)
                for glob in globs
            ):
                problems.append(
                    f"{image.dockerfile}: COPY {source}: no files target of the image provides it"
                )
    return problems


SPARK_IMAGE = "deploy/images/spark:spark"
"""The docker_image of the Spark runtime (Java 17, the pom's jars) that Spark drivers' images start from."""
_SPARK_JARS_DIR = re.compile(r"^(?P<cache>.+)/spark-jars-(?P<version>[^/]+)/?$")


def spark_jars_problems(image: Image, spark_version: str) -> list[str]:
    """An image that runs a Spark job carries the pom's jars where the job looks for them.

    The jobs never download: they take every jar in `$TICKSTREAM_CACHE_DIR/spark-jars-<spark.version of
    deploy/spark/pom.xml>/` (ops.services.spark_jars), and fail without Iceberg's runtime there.
    """
    jar_dirs = [
        match
        for instruction in image.instructions
        if instruction.keyword == "COPY" and instruction.arguments
        if (match := _SPARK_JARS_DIR.match(instruction.arguments[-1])) is not None
    ]
    problems = [
        f"{image.dockerfile}: jars copied to {match.string}, but the pom's spark.version is {spark_version}"
        for match in jar_dirs
        if match.group("version") != spark_version
    ]
    copied = {s for copy in context_copies(image.instructions) for s in copy.sources}
    runs_spark = sorted(copied & SPARK_JOB_PEXES)
    from_spark_image = any(
        i.keyword == "ARG" and i.arguments and i.arguments[0].endswith(f"={SPARK_IMAGE}")
        for i in image.instructions
    )
    if runs_spark and not jar_dirs and not from_spark_image:
        problems.append(
            f"{image.dockerfile}: runs {runs_spark[0]} (Spark) but neither copies a spark-jars-<version> "
            f"directory nor starts from {SPARK_IMAGE}"
        )
    cache_dir = env_instructions(image.instructions).get("TICKSTREAM_CACHE_DIR")
    for match in jar_dirs:
        if cache_dir != match.group("cache"):
            cache = match.group("cache")
            problems.append(f"{image.dockerfile}: jars in {cache}, but TICKSTREAM_CACHE_DIR is {cache_dir!r}")
    return problems


# --- compose ---------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


@dataclass(frozen=True)
class Interpolation:
    """One `${NAME...}` / `$NAME` in a compose value; `default` is set for `:-` and `-` forms only,
    `required` for `:?` and `?` (compose refuses to start while the variable is unset)."""

    name: str
    default: str | None
    required: bool = False


def interpolations(value: str) -> list[Interpolation]:
    """The variables a compose string interpolates (`$$` is a literal dollar)."""
    found = []
    for match in _INTERPOLATION.finditer(value):
        if match.group(0) == "$$":
            continue
        if match.group("name"):
            found.append(Interpolation(match.group("name"), None))
            continue
        braced = _BRACED.match(match.group("braced") or "")
        if braced is None:
            raise ValueError(f"unsupported interpolation {match.group(0)!r} in {value!r}")
        default = braced.group("arg") if braced.group("op") in (":-", "-") else None
        required = braced.group("op") in (":?", "?")
        found.append(Interpolation(braced.group("name"), default, required))
    return found


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """`value` as compose resolves it with `env` (variables not in `env` take their defaults)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        (item,) = interpolations(match.group(0))
        return env.get(item.name, item.default or "")

    return _INTERPOLATION.sub(substitute, value)


def strings(node: Any) -> Iterator[str]:
    """Every string value (not key) in a loaded YAML tree: what compose interpolates."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (` #` starts an inline comment; one pair of quotes is removed)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.split(" #", 1)[0].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def interpolation_problems(
    compose: Mapping[str, Any], documented: Mapping[str, str], secrets: Collection[str] = ()
) -> list[str]:
    """Each interpolated variable has a `:-` default equal to its value in .env.example, which lists it;
    except the generated `secrets`, which have no default anywhere and are required (`${NAME:?...}`)."""
    problems = []
    for value in strings(compose):
        for item in interpolations(value):
            if item.name in secrets:
                if not item.required or item.name in documented:
                    problems.append(f"${{{item.name}}} is a generated secret: required, no default")
                continue
            if item.default is None:
                problems.append(f"${{{item.name}}} has no default")
            if item.name not in documented:
                problems.append(f"${{{item.name}}} is not listed in {ENV_EXAMPLE}")
            elif item.default is not None and item.default != documented[item.name]:
                expected = documented[item.name]
                problems.append(
                    f"${{{item.name}}} defaults to {item.default!r}, {ENV_EXAMPLE} says {expected!r}"
                )
    return sorted(set(problems))


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's dependencies with their conditions (the short list form means service_started)."""
    declared = service.get("depends_on") or {}
    if isinstance(declared, list):
        return {name: "service_started" for name in declared}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in declared.items()}


def dependency_problems(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """depends_on names existing services with known conditions that can be met, without cycles."""
    problems = []
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            if dependency not in services:
                problems.append(f"{name} depends on unknown service {dependency}")
                continue
            if condition not in DEPENDS_ON_CONDITIONS:
                problems.append(f"{name} -> {dependency}: unknown condition {condition}")
            if condition == "service_healthy" and "healthcheck" not in services[dependency]:
                problems.append(f"{name} waits for {dependency} to be healthy, which has no healthcheck")
            if condition == "service_completed_successfully" and services[dependency].get("restart") != "no":
                problems.append(
                    f"{name} waits for {dependency} to complete, which is not a one-shot (restart: no)"
                )
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in services:
            return
        if name in visiting:
            problems.append("dependency cycle: " + " -> ".join([*visiting[visiting.index(name) :], name]))
            return
        visiting.append(name)
        for dependency in depends_on(services[name]):
            visit(dependency)
        visiting.pop()
        done.add(name)

    for name in services:
        visit(name)
    return problems


@dataclass(frozen=True)
class PortMapping:
    """A published port: host address, host port and container port (defaults resolved)."""

    service: str
    host_ip: str
    host_port: str
    container_port: str


def port_mappings(services: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]) -> list[PortMapping]:
    """Every published port of every service (short `[ip:]host:container` or long syntax)."""
    mappings = []
    for name, service in services.items():
        for port in service.get("ports") or ():
            if isinstance(port, Mapping):
                ip, host, container = (
                    port.get("host_ip", ""),
                    port.get("published", ""),
                    port.get("target", ""),
                )
            else:
                parts = interpolate(str(port), env).split(":")
                container = parts[-1]
                host = parts[-2] if len(parts) > 1 else ""
                ip = ":".join(parts[:-2])
            mappings.append(PortMapping(name, str(ip), str(host), str(container)))
    return mappings


def port_problems(mappings: list[PortMapping]) -> list[str]:
    """Host ports are fixed, bound to 127.0.0.1 and unique."""
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for mapping in mappings:
        key = (mapping.host_ip, mapping.host_port)
        if not mapping.host_port:
            problems.append(
                f"{mapping.service}: container port {mapping.container_port} on a random host port"
            )
        if mapping.host_ip != "127.0.0.1":
            problems.append(f"{mapping.service}: port {mapping.host_port} is not bound to 127.0.0.1")
        if key in seen:
            problems.append(
                f"{mapping.service} and {seen[key]} both publish {mapping.host_ip}:{mapping.host_port}"
            )
        seen[key] = mapping.service
    return problems


def environment(service: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A service's environment (mapping or `KEY=VALUE` list), interpolated with `env` (else the defaults)."""
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(str(item).partition("=")[::2] for item in declared)
    return {str(key): interpolate(str(value), env or {}) for key, value in declared.items()}


CATALOG_ENV = ("TICKSTREAM_CATALOG_URI", "TICKSTREAM_CATALOG_WAREHOUSE")
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")


def catalog_client_problems(
    services: Mapping[str, Mapping[str, Any]],
    lake_services: Iterable[str],
    bucket: str,
    catalog_db: str = "catalog-db",
    catalog_init: str = "catalog-init",
    variables: Mapping[str, str] | None = None,
) -> list[str]:
    """Every lake service (and any other with catalog settings) reaches the catalog database and waits for it.

    The URI is `postgresql+psycopg2://<user>:<password>@<catalog_db>:5432/<db>` with catalog_db's own
    POSTGRES_* values; the warehouse is `s3://<bucket>/warehouse`; each such service also has the S3 settings
    (table files are on S3), depends on catalog_db being healthy and, except catalog_init itself, on
    catalog_init having created the tables. `variables` are what compose interpolates (the generated secrets).
    """
    database = services.get(catalog_db)
    if database is None:
        return [f"no {catalog_db} service"]
    problems = []
    if "healthcheck" not in database:
        problems.append(f"{catalog_db} has no healthcheck")
    db_env = environment(database, variables)
    user, password, name = (db_env.get(k, "") for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"))
    if not _URL_SAFE.match(password):
        problems.append(
            f"{catalog_db}: the password is not URL-safe, but it is part of TICKSTREAM_CATALOG_URI"
        )
    # The driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which the images lack.
    expected_uri = f"postgresql+psycopg2://{user}:{password}@{catalog_db}:5432/{name}"
    hidden = f"postgresql+psycopg2://{user}:***@{catalog_db}:5432/{name}"
    expected_warehouse = f"s3://{bucket}/warehouse"
    clients = set(lake_services) | {
        n for n, s in services.items() if CATALOG_ENV[0] in environment(s, variables)
    }
    for client in sorted(clients):
        if client not in services:
            problems.append(f"{client}: no such service")
            continue
        env = environment(services[client], variables)
        problems += [f"{client}: no {key}" for key in CATALOG_ENV if key not in env]
        uri = env.get(CATALOG_ENV[0])
        if uri is not None and uri != expected_uri:
            parts = urlsplit(uri)
            shown = uri.replace(f":{parts.password}@", ":***@") if parts.password else uri
            problems.append(f"{client}: TICKSTREAM_CATALOG_URI {shown} is not {hidden}")
        warehouse = env.get(CATALOG_ENV[1])
        if warehouse is not None and warehouse != expected_warehouse:
            problems.append(f"{client}: TICKSTREAM_CATALOG_WAREHOUSE {warehouse} is not {expected_warehouse}")
        if "TICKSTREAM_S3_ENDPOINT_URL" not in env:
            problems.append(f"{client}: reads table files on S3 but has no TICKSTREAM_S3_* settings")
        conditions = depends_on(services[client])
        if conditions.get(catalog_db) != "service_healthy":
            problems.append(f"{client} does not wait for {catalog_db} to be healthy")
        if client != catalog_init and conditions.get(catalog_init) != "service_completed_successfully":
            problems.append(f"{client} does not wait for {catalog_init} to create the tables")
    return problems
