"""Airflow test set-up: AIRFLOW_HOME in a temporary directory, no examples, this directory as the DAG folder.

Set before Airflow is imported (pytest imports conftest files first).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parent

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
