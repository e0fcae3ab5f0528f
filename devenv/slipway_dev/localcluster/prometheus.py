"""A real Prometheus for the local cluster: its configuration and command line.

With the real serving stack it discovers its targets as in a cluster: KServe's predictor pods
and Knative's queue-proxies through the apiserver (`kubernetes_sd_configs`), and Traefik, a
process here rather than a pod, at its metrics address. Without it there is nothing to scrape.
Everything lives in the state dir (config, TSDB), so `down --purge` leaves nothing behind.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .layout import StateDir

_DURATION = re.compile(r"^\d+(ms|s|m|h)$")


def default_binary(bin_dir: Path | None = None) -> Path:
    """$SLIPWAY_PROMETHEUS, else the one hack/build-serving.sh builds into `bin_dir` (with
    Kubernetes discovery) when asked for, else Debian's."""
    if os.environ.get("SLIPWAY_PROMETHEUS"):
        return Path(os.environ["SLIPWAY_PROMETHEUS"])
    return bin_dir / "prometheus" if bin_dir is not None else Path("/usr/bin/prometheus")


KSERVE_JOB = "kserve-predictors"
GATEWAY_JOB = "gateway"


@dataclass(frozen=True)
class Discovery:
    """How Prometheus finds targets on a cluster with the real serving stack: KServe's predictor
    pods through the apiserver (kubernetes_sd_configs, as in a cluster), and the data plane
    (Traefik, a process here rather than a pod) at its metrics address."""

    api_server: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    gateway_target: str


def predictor_relabelling() -> list[dict[str, object]]:
    """The relabelling docs/install.md gives users: every ready KServe predictor pod's model
    container, scraped on the port KServe's `prometheus.kserve.io/port` annotation names
    (8080, the model server's HTTP port, when absent), labelled like the predictor's metrics
    are queried: namespace, pod, inferenceservice."""
    meta = "__meta_kubernetes_pod_"
    return [
        {"source_labels": [meta + "label_component"], "regex": "predictor", "action": "keep"},
        {"source_labels": [meta + "container_name"], "regex": "kserve-container", "action": "keep"},
        {"source_labels": [meta + "ready"], "regex": "true", "action": "keep"},
        {"source_labels": [meta + "container_init"], "regex": "false", "action": "keep"},
        {
            "source_labels": [meta + "ip", meta + "annotation_prometheus_kserve_io_port"],
            "regex": "(.+);(\\d+)",
            "target_label": "__address__",
            "replacement": "$1:$2",
        },
        {
            "source_labels": [meta + "ip", meta + "annotation_prometheus_kserve_io_port"],
            "regex": "(.+);",
            "target_label": "__address__",
            "replacement": "$1:8080",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": [meta + "name"], "target_label": "pod"},
        {"source_labels": [meta + "label_serving_kserve_io_inferenceservice"], "target_label": "inferenceservice"},
    ]


QUEUE_PROXY_JOB = "knative-queue-proxies"
# The queue-proxy serves its request metrics as Prometheus text on this port (Knative's
# config-observability `request-metrics-protocol: prometheus`; S/pkg/queue/sharedmain/otel.go:51-54),
# named in the revision's pod spec (S/pkg/reconciler/revision/resources/queue.go).
QUEUE_PROXY_METRICS_PORT = 9091


def queue_proxy_relabelling() -> list[dict[str, object]]:
    """Serverless mode's runtime-independent signals: every ready Knative revision pod's
    queue-proxy, labelled with the revision it serves. The OTel exporter puts Knative's
    names (revision, configuration, service) only on `target_info`, not on each series
    (hack/knative/NOTES.md (b)), so they come from the pod's labels, as users relabel them."""
    meta = "__meta_kubernetes_pod_"
    return [
        {"source_labels": [meta + "container_name"], "regex": "queue-proxy", "action": "keep"},
        {"source_labels": [meta + "container_port_number"], "regex": str(QUEUE_PROXY_METRICS_PORT), "action": "keep"},
        {"source_labels": [meta + "ready"], "regex": "true", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": [meta + "name"], "target_label": "pod"},
        {"source_labels": [meta + "label_serving_knative_dev_revision"], "target_label": "revision"},
        {"source_labels": [meta + "label_serving_knative_dev_configuration"], "target_label": "configuration"},
        {"source_labels": [meta + "label_serving_kserve_io_inferenceservice"], "target_label": "inferenceservice"},
    ]


def _discovery_jobs(d: Discovery, scrape_interval: str) -> list[dict[str, object]]:
    tls = {"ca_file": str(d.ca_file), "cert_file": str(d.cert_file), "key_file": str(d.key_file)}
    return [
        {
            "job_name": KSERVE_JOB,
            "metrics_path": "/metrics",
            "scrape_timeout": scrape_interval,
            "kubernetes_sd_configs": [{"role": "pod", "api_server": d.api_server, "tls_config": tls}],
            "relabel_configs": predictor_relabelling(),
        },
        {
            "job_name": QUEUE_PROXY_JOB,
            "metrics_path": "/metrics",
            "scrape_timeout": scrape_interval,
            "kubernetes_sd_configs": [{"role": "pod", "api_server": d.api_server, "tls_config": tls}],
            "relabel_configs": queue_proxy_relabelling(),
        },
        {
            "job_name": GATEWAY_JOB,
            "metrics_path": "/metrics",
            "scrape_timeout": scrape_interval,
            "static_configs": [{"targets": [d.gateway_target]}],
        },
    ]


def config(scrape_interval: str, discovery: Discovery | None = None) -> str:
    if not _DURATION.match(scrape_interval):
        raise ValueError(f"scrape interval {scrape_interval!r} is not a Prometheus duration such as 1s or 500ms")
    doc: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": _discovery_jobs(discovery, scrape_interval) if discovery else [],
    }
    return "# Written by slipway_dev/localcluster at every `up`; edits are overwritten.\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


def write_config(state: StateDir, scrape_interval: str, discovery: Discovery | None = None) -> tuple[Path, bool]:
    """Write the config; (its path, whether it changed)."""
    path = state.prometheus / "prometheus.yml"
    text = config(scrape_interval, discovery)
    state.prometheus.mkdir(parents=True, exist_ok=True)
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
