"""`bench/drift.py --quick` runs and prints the figures the README quotes (the keys, not the timings)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

KEYS = {
    "ks_detection_ms", "ks_target_ms", "mmd_detection_s", "mmd_target_s", "ks_overhead_percent",
    "mmd_overhead_percent", "overhead_target_percent", "ingest_events_per_second_1_row",
    "ingest_events_per_second_10_rows", "ks", "mmd", "ingest", "machine",
}  # fmt: skip


def test_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "drift.py"), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out) >= KEYS
    assert out["ingest"]["single_row"]["events"] > 0 and out["ingest"]["single_row"]["errors"] == 0
    assert out["ingest"]["ten_rows"]["events"] > 0 and out["ingest"]["ten_rows"]["errors"] == 0
    assert {"runtime_ms", "bare_predict_ms", "extraction_ms", "overhead_percent"} <= set(out["ks"])
