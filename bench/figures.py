"""What every benchmark shares about its figures: the percentile rule and how a results file is written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of values sorted ascending, by nearest rank, rounded to 0.1; None if empty."""
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None


def write_results(out: Path, results: dict[str, Any]) -> None:
    """Write a benchmark's results as JSON to `out` (bench/results/<name>.json by default) and print them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
