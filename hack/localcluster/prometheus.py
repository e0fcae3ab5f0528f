"""A real Prometheus for the local cluster: its configuration and command line.

One scrape job, `slipway-predictors`, discovers its targets from every `*.json` file in
`<state>/prometheus/file_sd/`: the local KServe gateway keeps `predictors.json` there (one
target per ready predictor pod), and anything else that wants scraping (an operator run by
hand, a test's server) can drop a file of its own next to it, in Prometheus' file_sd format.
Everything lives in the state dir (config, TSDB), so `down --purge` leaves nothing behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .layout import StateDir

JOB = "slipway-predictors"
PREDICTORS_FILE = "predictors.json"
_DURATION = re.compile(r"^\d+(ms|s|m|h)$")


def default_binary() -> Path:
    return Path(os.environ.get("SLIPWAY_PROMETHEUS") or "/usr/bin/prometheus")


def file_sd_dir(state: StateDir) -> Path:
    return state.prometheus / "file_sd"


def config(state: StateDir, scrape_interval: str) -> str:
    if not _DURATION.match(scrape_interval):
        raise ValueError(f"scrape interval {scrape_interval!r} is not a Prometheus duration such as 1s or 500ms")
    doc = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                # A scrape may not outlast the interval; a loopback target answers well within it.
                "scrape_timeout": scrape_interval,
                # Changes are seen at once through inotify; the refresh is only the fallback.
                "file_sd_configs": [{"files": [str(file_sd_dir(state) / "*.json")], "refresh_interval": "5s"}],
            }
        ],
    }
    return "# Written by hack/localcluster at every `up`; edits are overwritten.\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


def write_config(state: StateDir, scrape_interval: str) -> tuple[Path, bool]:
    """Write the config; (its path, whether it changed)."""
    path = state.prometheus / "prometheus.yml"
    text = config(state, scrape_interval)
    file_sd_dir(state).mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return path, False
    path.write_text(text)
    return path, True


def argv(binary: Path, state: StateDir, port: int, config_file: Path) -> list[str]:
    return [
        str(binary),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={state.prometheus / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # POST /-/reload picks up a new config without a restart (see Cluster._start_prometheus).
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=2d",
        "--log.level=info",
    ]
