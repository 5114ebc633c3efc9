"""Every Dockerfile has its docker_image target and COPYs exactly the PEXes that target depends on."""

from __future__ import annotations

import pytest

from deploy.static_checks import (
    SPARK_POM,
    Image,
    Target,
    build_targets,
    context_file_problems,
    dockerfile_instructions,
    env_instructions,
    images,
    parse_build_file,
    pex_copy_problems,
    pom_property,
    repo_root,
    resolve_address,
    spark_jars_problems,
)
from ops.base_image import BASE_IMAGE
from ops.services import seaweedfs

# repository -> the PEXes (paths in the build context) its Dockerfile copies.
EXPECTED_PEXES = {
    "tickstream/airflow": {
        "src.dags/airflow.pex",
        "src.python.compaction/bin.pex",
        "src.python.analytics/bin.pex",
    },
    "tickstream/cli": {"src.python.ops/cli.pex"},
    "tickstream/compaction": {"src.python.compaction/bin.pex"},
    "tickstream/dashboard": {"src.python.dashboard/bin.pex"},
    "tickstream/producer": {"src.python.producer/bin.pex"},
    "tickstream/streaming": {"src.python.streaming/bin.pex"},
    # the shared layers and the services' images (deploy/images/): no PEX
    "tickstream/python": set(),
    "tickstream/spark": set(),
    "tickstream/kafka": set(),
    "tickstream/seaweedfs": set(),
    "tickstream/postgres": set(),
}


@pytest.fixture(scope="module")
def targets() -> list[Target]:
    return build_targets(repo_root())


@pytest.fixture(scope="module")
def all_images(targets: list[Target]) -> list[Image]:
    found, problems = images(repo_root(), targets)
    assert problems == []
    return found


def copied_pexes(image: Image) -> set[str]:
    return {
        s for i in image.instructions if i.keyword == "COPY" for s in i.arguments[:-1] if s.endswith(".pex")
    }


def test_every_dockerfile_has_a_docker_image(all_images: list[Image]) -> None:
    repositories = {image.target.fields.get("repository"): image for image in all_images}
    assert set(repositories) == set(EXPECTED_PEXES)
    assert repositories["tickstream/airflow"].dockerfile == "src/dags/Dockerfile"


def test_images_are_opt_in(all_images: list[Image]) -> None:
    # pants.toml excludes the "docker" tag by default: machines without a Docker engine never build images.
    assert [i.dockerfile for i in all_images if "docker" not in (i.target.fields.get("tags") or ())] == []


def test_pex_output_paths(targets: list[Target]) -> None:
    pexes = {t.address: t.pex_output_path() for t in targets if t.kind == "pex_binary"}
    assert pexes["src/dags:airflow"] == "src.dags/airflow.pex"
    assert pexes["src/python/producer:bin"] == "src.python.producer/bin.pex"
    assert pexes["src/python/ops:cli"] == "src.python.ops/cli.pex"


def test_dockerfiles_copy_the_pexes_of_their_image(all_images: list[Image], targets: list[Target]) -> None:
    assert [p for image in all_images for p in pex_copy_problems(image, targets)] == []
    assert {i.target.fields["repository"]: copied_pexes(i) for i in all_images} == EXPECTED_PEXES


def test_copied_files_are_in_the_build_context(all_images: list[Image], targets: list[Target]) -> None:
    assert [p for image in all_images for p in context_file_problems(image, targets)] == []


@pytest.fixture(scope="module")
def spark_version() -> str:
    version = pom_property((repo_root() / SPARK_POM).read_text(), "spark.version")
    assert version is not None
    return version


def test_the_poms_spark_version_is_the_pyspark_pin(spark_version: str) -> None:
    # The installer caches the jars under the pom's version; the jobs look for them under pyspark's.
    requirements = (repo_root() / "3rdparty/python/requirements-spark.txt").read_text().splitlines()
    assert f"pyspark=={spark_version}" in requirements


def test_spark_images_carry_the_poms_jars(all_images: list[Image], spark_version: str) -> None:
    # The Spark image carries Iceberg's runtime and the JDBC drivers where the jobs look for them, for the
    # pom's Spark version; the streaming, compaction and Airflow (runs compaction) images start from it.
    assert [p for image in all_images for p in spark_jars_problems(image, spark_version)] == []
    with_jars = {
        image.target.fields["repository"]
        for image in all_images
        if any(i.keyword == "COPY" and "/spark-jars-" in i.arguments[-1] for i in image.instructions)
    }
    assert with_jars == {"tickstream/spark"}


def test_no_s3a_or_hadoop_aws_in_images(all_images: list[Image]) -> None:
    # Spark reaches S3 through Iceberg's S3FileIO (deploy/spark/pom.xml has no hadoop-aws).
    for image in all_images:
        text = (repo_root() / image.dockerfile).read_text().lower()
        assert "s3a" not in text and "hadoop-aws" not in text, image.dockerfile


def test_spark_jars_check_catches_mistakes() -> None:
    image, _ = fake_image(
        "FROM maven AS jars\nRUN true\nFROM python:3.11-slim\n"
        "COPY --from=jars /jars /opt/cache/spark-jars-4.2.0\n"
        "COPY src.python.compaction/bin.pex /app/compaction.pex\n"
        "ENV TICKSTREAM_CACHE_DIR=/somewhere/else \\\n    OTHER=1\n",
        'docker_image(name="image")\n',
    )
    assert spark_jars_problems(image, "4.1.3") == [
        "src/python/demo/Dockerfile: jars copied to /opt/cache/spark-jars-4.2.0, but the pom's spark.version"
        " is 4.1.3",
        "src/python/demo/Dockerfile: jars in /opt/cache, but TICKSTREAM_CACHE_DIR is '/somewhere/else'",
    ]
    bare, _ = fake_image(
        "FROM python:3.11-slim\nCOPY src.python.streaming/bin.pex /app/streaming.pex\n",
        'docker_image(name="image")\n',
    )
    assert spark_jars_problems(bare, "4.1.3") == [
        "src/python/demo/Dockerfile: runs src.python.streaming/bin.pex (Spark) but neither copies a "
        "spark-jars-<version> directory nor starts from deploy/images/spark:spark"
    ]
    on_spark, _ = fake_image(
        "ARG SPARK_IMAGE=deploy/images/spark:spark\nFROM ${SPARK_IMAGE}\n"
        "COPY src.python.streaming/bin.pex /app/streaming.pex\n",
        'docker_image(name="image")\n',
    )
    assert spark_jars_problems(on_spark, "4.1.3") == []
    assert env_instructions(dockerfile_instructions("ENV A=1 B=x\nENV C 2 3\nENV A=4\n")) == {
        "A": "4",
        "B": "x",
        "C": "2 3",
    }
    assert (
        pom_property(
            '<project xmlns="http://maven.apache.org/POM/4.0.0">'
            "<properties><v> 1.2 </v></properties></project>",
            "v",
        )
        == "1.2"
    )


def fake_image(dockerfile: str, build: str) -> tuple[Image, list[Target]]:
    """An image from Dockerfile and BUILD text in src/python/demo, beside pex_binary src/python/other:bin."""
    targets = parse_build_file(build, "src/python/demo") + parse_build_file(
        'pex_binary(name="bin")\nresources(name="res", sources=["x.txt"])', "src/python/other"
    )
    image_target = next(t for t in targets if t.kind == "docker_image")
    return (
        Image("src/python/demo/Dockerfile", image_target, tuple(dockerfile_instructions(dockerfile))),
        targets,
    )


def test_checks_catch_wrong_copies() -> None:
    image, targets = fake_image(
        "FROM python:3.11-slim\n"
        "COPY src.python.demo/app.pex /app/demo.pex\n"
        "COPY src/python/other/x.txt \\\n    src/python/demo/conf.ini /etc/\n"
        'ENTRYPOINT ["/app/other.pex"]\n',
        'pex_binary(name="bin")\n'
        'files(name="conf", sources=["*.ini"])\n'
        'docker_image(name="image", dependencies=[":bin", ":conf", "src/python/other:res"])\n',
    )
    assert pex_copy_problems(image, targets) == [
        "src/python/demo/Dockerfile: COPY src.python.demo/app.pex: no pex_binary produces it",
        "src/python/demo/Dockerfile: depends on src/python/demo:bin"
        " but does not COPY src.python.demo/bin.pex",
        "src/python/demo/Dockerfile: ENTRYPOINT /app/other.pex is not a copied PEX",
    ]
    # A resources target is not in a Docker build context; the files target is.
    assert context_file_problems(image, targets) == [
        "src/python/demo/Dockerfile: COPY src/python/other/x.txt: no files target of the image provides it"
    ]


def test_checks_accept_right_copies() -> None:
    image, targets = fake_image(
        "FROM maven AS jars\nRUN true\nFROM python:3.11-slim\nCOPY --from=jars /jars /opt/jars\n"
        "COPY src.python.other/bin.pex /app/other.pex\nCOPY src/python/demo /etc/demo\n"
        'ENTRYPOINT ["/app/other.pex"]\n',
        'files(name="conf", sources=["conf/*.ini"])\ndocker_image(name="image", dependencies=[":conf"])\n',
    )
    assert pex_copy_problems(image, targets) == []
    assert context_file_problems(image, targets) == []


def test_addresses() -> None:
    assert resolve_address(":bin", "src/dags") == "src/dags:bin"
    assert resolve_address("//:image_definitions", "deploy") == ":image_definitions"
    assert resolve_address("deploy:spark_pom", "src/python/streaming") == "deploy:spark_pom"
    assert resolve_address("src/sql/dbt", "src/dags") == "src/sql/dbt:dbt"


def test_build_parsing_reads_literal_fields() -> None:
    parsed = parse_build_file(
        'python_sources(resolve=parametrize("a", "b"))\n'
        'docker_image(name="image", repository="r/x", image_tags=["1"], tags=["docker"])\n',
        "src/x",
    )
    (image,) = (t for t in parsed if t.kind == "docker_image")
    assert image.address == "src/x:image"
    assert image.fields == {"name": "image", "repository": "r/x", "image_tags": ["1"], "tags": ["docker"]}
    assert parse_build_file('python_sources(resolve=parametrize("a", "b"))', "src/x")[0].name == "x"


def test_maven_in_images_verifies_checksums_strictly(all_images: list[Image]) -> None:
    runs = [
        " ".join(instruction.arguments)
        for image in all_images
        for instruction in image.instructions
        if instruction.keyword == "RUN" and "mvn " in " ".join(instruction.arguments)
    ]
    assert len(runs) >= 2  # the Spark image fetches the connector jars, the Kafka image the broker's
    assert all("--strict-checksums" in run for run in runs), runs


def test_every_image_starts_from_a_build_argument_base(all_images: list[Image]) -> None:
    # No image registry: each FROM is a build argument whose default is the local base image (ops.base_image)
    # or another image of this repository (a docker_image address, which Pants builds first).
    for image in all_images:
        defaults = {
            name: value
            for i in image.instructions
            if i.keyword == "ARG" and "=" in i.arguments[0]
            for name, value in [i.arguments[0].split("=", 1)]
        }
        for instruction in image.instructions:
            if instruction.keyword != "FROM":
                continue
            base = instruction.arguments[0]
            assert base.startswith("${") and base.endswith("}"), f"{image.dockerfile}: FROM {base}"
            default = defaults[base[2:-1]]
            assert default == BASE_IMAGE or default.startswith("deploy/images/"), (image.dockerfile, default)


def test_the_s3_image_builds_the_seaweedfs_the_local_services_run() -> None:
    text = (repo_root() / "deploy/images/seaweedfs/Dockerfile").read_text()
    assert f"ARG SEAWEEDFS_MODULE={seaweedfs.MODULE}\n" in text
    assert f"ARG SEAWEEDFS_VERSION={seaweedfs.VERSION}\n" in text
