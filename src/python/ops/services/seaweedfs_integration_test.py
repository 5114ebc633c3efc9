"""S3 server against the real server: topology, round trips, refused anonymous and unsigned access, kill -9
recovery."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import SecretStr

from ops.services.seaweedfs import SeaweedFSService, s3_client
from tickstream.settings import S3Settings
from tickstream.topology import BUCKETS

pytestmark = pytest.mark.integration


def anonymous_client(settings: S3Settings) -> object:
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=Config(signature_version=UNSIGNED),
    )


def test_topology_buckets_exist(s3_settings: S3Settings) -> None:
    names = {bucket["Name"] for bucket in s3_client(s3_settings).list_buckets()["Buckets"]}
    assert set(BUCKETS) <= names


def test_put_and_get_with_credentials(s3_settings: S3Settings) -> None:
    client = s3_client(s3_settings)
    key = f"tests/{uuid.uuid4()}.bin"
    body = os.urandom(300_000)
    client.put_object(Bucket=s3_settings.bucket, Key=key, Body=body)
    assert client.get_object(Bucket=s3_settings.bucket, Key=key)["Body"].read() == body
    client.delete_object(Bucket=s3_settings.bucket, Key=key)


def test_anonymous_and_wrong_secret_are_refused(s3_settings: S3Settings) -> None:
    client = s3_client(s3_settings)
    key = f"tests/{uuid.uuid4()}.txt"
    client.put_object(Bucket=s3_settings.bucket, Key=key, Body=b"secret")
    anonymous = anonymous_client(s3_settings)
    for call in (
        lambda: anonymous.get_object(Bucket=s3_settings.bucket, Key=key),  # type: ignore[attr-defined]
        lambda: anonymous.put_object(Bucket=s3_settings.bucket, Key="anon.txt", Body=b"x"),  # type: ignore[attr-defined]
        lambda: anonymous.list_objects_v2(Bucket=s3_settings.bucket),  # type: ignore[attr-defined]
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            call()
    wrong = s3_client(s3_settings.model_copy(update={"secret_access_key": SecretStr("not-the-secret")}))
    with pytest.raises(ClientError, match="SignatureDoesNotMatch|AccessDenied"):
        wrong.get_object(Bucket=s3_settings.bucket, Key=key)
    client.delete_object(Bucket=s3_settings.bucket, Key=key)


def test_kill_9_then_up_recovers_without_data_loss(private_s3: SeaweedFSService) -> None:
    pid = private_s3.daemon.pid()
    assert pid is not None
    client = s3_client(private_s3.s3)
    bucket = private_s3.s3.bucket
    objects = {f"tests/kill9/{uuid.uuid4()}.bin": os.urandom(size) for size in (10, 100_000, 5_000_000)}
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while private_s3.daemon.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not private_s3.healthy()
    assert private_s3.up() is True
    client = s3_client(private_s3.s3)
    for key, body in objects.items():
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        client.delete_object(Bucket=bucket, Key=key)


def http_status(method: str, url: str, body: bytes | None = None) -> int:
    """The HTTP status of one unauthenticated request."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_volume_and_filer_ports_refuse_unsigned_access(private_s3: SeaweedFSService) -> None:
    settings, s3 = private_s3.settings, private_s3.s3
    key = f"tests/{uuid.uuid4()}.txt"
    s3_client(s3).put_object(Bucket=s3.bucket, Key=key, Body=b"lake data")  # through S3: signed, works
    filer = f"http://127.0.0.1:{settings.filer_port}"
    # the filer's HTTP port: no unsigned read, listing, write or delete of the lake's objects
    assert http_status("GET", f"{filer}/buckets/{s3.bucket}/{key}") == 401
    assert http_status("GET", f"{filer}/buckets/{s3.bucket}/tests/") == 401
    assert http_status("PUT", f"{filer}/buckets/{s3.bucket}/tests/forged.txt", b"forged") == 401
    assert http_status("DELETE", f"{filer}/buckets/{s3.bucket}/{key}") == 401
    # the volume server: an unsigned write of a file id the master assigned is refused
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.master_port}/dir/assign", timeout=5) as answer:
        assignment = json.load(answer)
    volume = f"http://{assignment['url']}/{assignment['fid']}"
    assert http_status("PUT", volume, b"forged") == 401
    # and the object is untouched
    assert s3_client(s3).get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"lake data"
