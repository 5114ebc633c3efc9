from pathlib import Path

from ops.base_image import APT_SOURCES, DEFAULT_MIRROR, SUITE, host_mirror


def test_the_base_image_uses_the_hosts_debian_mirror(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert host_mirror(sources) == "http://mirror.example/debian"
    assert host_mirror(tmp_path / "missing.sources") == DEFAULT_MIRROR


def test_the_images_apt_sources_name_the_pinned_suite() -> None:
    lines = APT_SOURCES.format(mirror="http://m/debian").splitlines()
    assert lines[0] == f"deb http://m/debian {SUITE} main"
    assert all(f" {SUITE}" in line for line in lines)
