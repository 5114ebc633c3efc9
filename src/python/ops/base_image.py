"""The base image every Tickstream image starts from, built from Debian's packages with no image registry.

`debootstrap --variant=minbase` of a pinned Debian suite from the host's Debian mirror, plus the host's extra
CA certificates (a TLS-intercepting proxy's, if any: builds then reach PyPI, Maven Central and the Go module
proxy through it), imported with `docker import` as BASE_IMAGE. After the import the image's only layer is
checked against the sha256 of the tarball that was imported. Every Dockerfile takes its base as the build
argument BASE_IMAGE (docs/deployment.md says how to use official images where a registry is reachable).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from ops.services.docker_engine import docker_cli
from ops.services.install import file_sha256
from ops.services.process import ServiceError
from tickstream.logs import get_logger

BASE_IMAGE = "tickstream/base:bookworm"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
APT_SOURCES = f"""\
deb {{mirror}} {SUITE} main
deb {{mirror}} {SUITE}-updates main
deb http://deb.debian.org/debian-security {SUITE}-security main
"""
APT_CONFIG = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
"""
"""Images install only what they name."""

log = get_logger("images")


def host_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The Debian mirror apt on this host uses (deb822 `URIs:` of the main archive), else deb.debian.org."""
    try:
        text = sources.read_text()
    except OSError:
        return DEFAULT_MIRROR
    for line in text.splitlines():
        if line.startswith("URIs:") and "security" not in line:
            return line.split(":", 1)[1].split()[0]
    return DEFAULT_MIRROR


def image_layers(image: str) -> list[str] | None:
    """The layer digests of a local image, or None if there is no such image."""
    result = subprocess.run(
        [docker_cli(), "image", "inspect", "--format", "{{json .RootFS.Layers}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def ensure_base_image(image: str = BASE_IMAGE, mirror: str | None = None) -> str:
    """Build `image` unless the engine has it; return its layer digest (sha256:...)."""
    layers = image_layers(image)
    if layers:
        return layers[0]
    mirror = mirror or host_mirror()
    with tempfile.TemporaryDirectory(prefix="tickstream-base-") as work:
        rootfs, tarball = Path(work) / "rootfs", Path(work) / "rootfs.tar"
        log.info("debootstrap", suite=SUITE, mirror=mirror, seconds_expected=90)
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=ca-certificates",
                SUITE,
                str(rootfs),
                mirror,
            ],
            "debootstrap",
        )
        (rootfs / "etc/apt/sources.list").write_text(APT_SOURCES.format(mirror=mirror))
        (rootfs / "etc/apt/apt.conf.d/90tickstream").write_text(APT_CONFIG)
        for certificate in sorted(EXTRA_CA_DIR.glob("*.crt")):
            shutil.copy2(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
        _run(["chroot", str(rootfs), "update-ca-certificates"], "update-ca-certificates")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], "tar")
        digest = "sha256:" + file_sha256(tarball)
        _run(
            [
                docker_cli(),
                "import",
                "--change",
                'CMD ["/bin/bash"]',
                "--change",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8",
                "--change",
                f"LABEL org.opencontainers.image.base.name=debian:{SUITE} tickstream.debian.mirror={mirror}",
                str(tarball),
                image,
            ],
            "docker import",
        )
    layers = image_layers(image)
    if layers != [digest]:
        raise ServiceError(f"{image}: layers {layers} are not the imported tarball {digest}")
    log.info("base_image", image=image, layer=digest)
    return digest


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout)[-600:]}")
