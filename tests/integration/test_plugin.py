"""kubectl-slipway against the local control plane: a live rollout watched, promoted at a manual gate, and its
history, through kubectl's own plugin discovery (`kubectl slipway ...` finds kubectl-slipway on PATH)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from slipway_dev.kubectl import Kubectl
from slipway_dev.loadgen import Load

from tests.conftest import REPO, wait_for
from tests.integration.test_rollout import EXAMPLES, SERVE_TIMEOUT, copy_artifact, copy_version, rollout_status, train

pytestmark = pytest.mark.integration

STEPS = [{"weight": 20, "holdSeconds": 3}, {"weight": 50, "manualGate": True}]


@pytest.fixture
def serving(serving_kubectl: Kubectl, s3: Any, serving_operator_factory: Any) -> Kubectl:
    """A Standard-mode Rollout on the real serving stack (KServe's controller, Traefik)."""
    serving_operator_factory()
    serving_kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    serving_kubectl.apply(REPO / "runtimes" / "predictor" / "servingruntime.yaml")
    return serving_kubectl


def plugin_env(cluster: Any) -> dict[str, str]:
    """The cluster's kubeconfig and kubectl, with this environment's console scripts on PATH for kubectl to find."""
    env = cluster.env()
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env["PATH"]))
    env.pop("NO_COLOR", None)
    return env


def slipway(cluster: Any, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["kubectl", "slipway", *args, "-n", ns], capture_output=True, text=True,
                          env=plugin_env(cluster), timeout=60)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def rollout_doc(target: str, prometheus: str) -> str:
    doc = yaml.safe_load((EXAMPLES / "rollout.yaml").read_text())
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    doc["spec"]["canary"]["steps"] = STEPS
    doc["spec"]["canary"]["analysis"] |= {"prometheus": {"address": prometheus}, "intervalSeconds": 2,
                                          "minRequests": 20, "latency": {"enabled": False},
                                          # These tests walk the steps, not the statistics: a 20-point margin
                                          # proves a healthy canary within a few dozen requests.
                                          "errorRate": {"margin": 0.2}}  # fmt: skip
    return yaml.safe_dump(doc)


def frames(output: str) -> list[str]:
    """`get --watch` without a terminal appends one frame per change, separated by a blank line."""
    return [f for f in output.split("\n\n") if f.strip()]


def test_get_watch_promote_and_history_on_a_live_rollout(serving: Kubectl, s3: Any, tmp_path: Path) -> None:
    ns, cluster = serving.namespace, serving.cluster
    v1 = train(serving, "train-1", seed=1)
    job = slipway(cluster, ns, "get", "trainingjob", "train-1").stdout
    assert "Succeeded" in job and f"Version   {v1}" in job and "exit 0" in job

    serving.apply(rollout_doc(v1, cluster.prometheus_url))
    wait_for("serving v1", lambda: serving.condition("rollout", "cancer-rf", "Ready").get("status") == "True",
             timeout=SERVE_TIMEOUT)  # fmt: skip
    shown = slipway(cluster, ns, "get", "rollout", "cancer-rf").stdout
    assert f"Stable      {v1}" in shown and "100%" in shown and "Promoted" in shown.splitlines()[0]
    assert "\x1b[" not in shown and all(len(line) <= 80 for line in shown.splitlines())

    good = serving.get("modelversion", v1) or {}
    v2 = copy_version(serving, good, "cancer-rf-v2", 2, copy_artifact(s3, good, "cancer-rf-v2"))
    argv = ["kubectl", "slipway", "get", "rollout", "cancer-rf", "-n", ns, "--watch"]
    log = tmp_path / "watch.out"
    with log.open("w") as sink:
        watcher = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, text=True, env=plugin_env(cluster))
    try:
        url = urllib.parse.urlsplit(((serving.get("inferenceservice", "cancer-rf") or {})["status"])["url"])
        rows = load_breast_cancer().data.tolist()
        with Load(cluster.ingress_url, "cancer-rf", ns, rows, rps=25, host=url.netloc):
            serving.apply(rollout_doc(v2, cluster.prometheus_url))
            wait_for("the manual gate", lambda: rollout_status(serving).get("phase") == "Paused", timeout=SERVE_TIMEOUT)
            # Polling every second can miss a state that lasts less; the gate lasts until promoted.
            wait_for("the watch to show the gate", lambda: "manual gate" in log.read_text(), timeout=20)
            promoted = slipway(cluster, ns, "promote", "cancer-rf", "--wait", "20").stdout
            assert "slipway.dev/promote=" in promoted and "the operator acted on it" in promoted
            wait_for("promotion", lambda: rollout_status(serving).get("stableVersion") == v2, timeout=SERVE_TIMEOUT)
            time.sleep(2)  # let the watch poll once more
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    out = log.read_text()
    seen = frames(out)
    assert len(set(seen)) > 1, out
    assert any(f"Canary      {v2}" in f and "20%" in f for f in seen), out
    assert any("manual gate" in f and "50%" in f for f in seen), out
    assert f"Stable      {v2}" in seen[-1] and "Promoted" in seen[-1].splitlines()[0], seen[-1]
    assert any("Verdict" in f and "errorRate" in f for f in seen), out

    history = slipway(cluster, ns, "history", "cancer-rf").stdout
    for action in ("Deploy", "CanaryStarted", "Advance", "Promote"):
        assert action in history, history

    # A DriftMonitor as the operator leaves it without a drift runtime: the tree still reads.
    serving.apply(EXAMPLES / "driftmonitor.yaml")
    wait_for("a DriftMonitor status", lambda: ((serving.get("driftmonitor", "cancer-rf") or {}).get("status") or {})
             .get("state"))  # fmt: skip
    monitor = slipway(cluster, ns, "get", "dm", "cancer-rf").stdout
    assert "Target        Rollout cancer-rf" in monitor and "DriftDetected" in monitor, monitor

    again = slipway(cluster, ns, "promote", "cancer-rf", check=False)
    assert again.returncode == 1 and "no canary in progress" in again.stderr
    missing = slipway(cluster, ns, "get", "rollout", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    assert "nope" in missing.stderr, missing.stderr
