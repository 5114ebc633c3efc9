"""Airflow test set-up: AIRFLOW_HOME in a temporary directory, no examples, this directory as the DAG folder.

Set before Airflow is imported (pytest imports conftest files first).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parent

AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)  # the test process's own, gone with it
os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
