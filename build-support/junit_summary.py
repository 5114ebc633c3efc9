"""Print one 'N passed, N failed, N skipped' line from the JUnit XML reports Pants writes."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def summarize(report_dir: Path) -> tuple[int, int, int]:
    """Count passed, failed (failures + errors) and skipped test cases in every report."""
    passed = failed = skipped = 0
    for report in sorted(report_dir.rglob("*.xml")):
        for case in ET.parse(report).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


if __name__ == "__main__":
    passed, failed, skipped = summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "dist/test/reports"))
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
