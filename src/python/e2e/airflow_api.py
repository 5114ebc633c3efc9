"""Airflow's REST API (v2) as the end-to-end tests use it: sign in as the generated admin, trigger the hourly
DAG for one hour, wait for the run to end. Standard library only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

DAG_ID = "tickstream_compaction"


def http(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, str]:
    """Status and body of one request to Airflow's API."""
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def sign_in(url: str, password: str, username: str = "admin") -> str:
    """An access token for `username`."""
    status, body = http("POST", f"{url}/auth/token", {"username": username, "password": password})
    assert status == 201, body
    return str(json.loads(body)["access_token"])


def trigger_hour(url: str, token: str, hour: datetime, run_id: str) -> None:
    """Start a manual run of the hourly DAG whose data interval is [hour, hour + 1 h)."""
    end = hour + timedelta(hours=1)
    body = {
        "dag_run_id": run_id,
        "logical_date": hour.isoformat(),
        "data_interval_start": hour.isoformat(),
        "data_interval_end": end.isoformat(),
    }
    status, text = http("POST", f"{url}/api/v2/dags/{DAG_ID}/dagRuns", body, token)
    assert status == 200, text


def wait_for_run(url: str, token: str, run_id: str, timeout_s: float) -> dict[str, str]:
    """Wait until the run has ended; the state of each of its tasks (task id -> state)."""
    deadline = time.monotonic() + timeout_s
    run_url = f"{url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"
    while True:
        status, text = http("GET", run_url, token=token)
        assert status == 200, text
        state = json.loads(text)["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"DAG run {run_id} still {state} after {timeout_s:.0f}s"
        time.sleep(10)
    status, text = http("GET", f"{run_url}/taskInstances", token=token)
    assert status == 200, text
    return {ti["task_id"]: ti["state"] for ti in json.loads(text)["task_instances"]}
