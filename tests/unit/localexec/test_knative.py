"""A Knative Serving v0.48.1 revision pod in the local executor: the queue-proxy image, and
what containers.py, probes.py and podnet.py make of the pod spec Knative's revision
reconciler builds (S = knative.dev/serving@v0.48.1, built by hack/build-knative.sh)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.localexec import images, podnet, probes, status
from slipway_dev.localexec.containers import Config, ImageUnavailable, prepare
from slipway_dev.localexec.images import KNATIVE_QUEUE_IMAGE, Programs, Unavailable, is_knative_queue
from slipway_dev.localexec.network import Resolver

POD_IP = "198.18.0.9"
POD_NAME = "hello-00001-deployment-6d4f9c7b8-x2k4q"
LOGGING_CONFIG = json.dumps(
    {"level": "info", "encoding": "json", "outputPaths": ["stdout"], "errorOutputPaths": ["stderr"]}
)
OBSERVABILITY_CONFIG = json.dumps(
    {
        "tracing": {"protocol": "none"},
        "metrics": {"protocol": "none"},
        "runtime": {"profiling": "disabled"},
        "requestMetrics": {"protocol": "prometheus"},
    }
)
SA_MOUNT = {
    "name": "kube-api-access-7xk2p",
    "readOnly": True,
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
}


def field(path: str, **extra: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path, **extra}}}


def revision_pod() -> dict[str, Any]:
    """The pod of revision hello-00001 of Service `hello` (image only, no port, no probe,
    containerConcurrency 0, timeoutSeconds defaulted to 300) as the ReplicaSet creates it
    from Knative's Deployment, after the apiserver's defaulting and the ServiceAccount
    admission plugin's token volume."""
    user = {
        "name": "user-container",  # S/pkg/apis/serving/v1/revision_defaults.go:286 (single container)
        "image": "ghcr.io/slipway-dev/predictor:0.1.0",
        # deploy.go:289 buildContainerPorts: the one port, named user-port (revision_helpers.go:30,35)
        "ports": [{"name": "user-port", "containerPort": 8080, "protocol": "TCP"}],
        # deploy.go:290 PORT, then env_var.go:31-41 (via deploy.go:265) K_REVISION/K_CONFIGURATION/K_SERVICE
        "env": [
            {"name": "PORT", "value": "8080"},
            {"name": "K_REVISION", "value": "hello-00001"},
            {"name": "K_CONFIGURATION", "value": "hello"},
            {"name": "K_SERVICE", "value": "hello"},
        ],
        # deploy.go:101-112,264: preStop on the queue-proxy's admin port (networking/constants.go:34,
        # queue/constants.go:29); the apiserver defaults the scheme.
        "lifecycle": {"preStop": {"httpGet": {"port": 8022, "path": "/wait-for-drain", "scheme": "HTTP"}}},
        # deploy.go:270-272; deploy.go:274-280 removed the defaulted tcpSocket readiness probe
        # (revision_defaults.go:160-170): the queue-proxy runs it (SERVING_READINESS_PROBE).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "terminationMessagePath": "/dev/termination-log",
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "volumeMounts": [SA_MOUNT],
    }
    queue = {
        "name": "queue-proxy",  # constants.go:21
        "image": KNATIVE_QUEUE_IMAGE,  # config-deployment queue-sidecar-image (queue.go:349); no command
        # queue.go:67-79,249-258: metrics ports, then the serving port and the TLS port
        "ports": [
            {"name": "http-autometric", "containerPort": 9090, "protocol": "TCP"},
            {"name": "http-usermetric", "containerPort": 9091, "protocol": "TCP"},
            {"name": "queue-port", "containerPort": 8012, "protocol": "TCP"},
            {"name": "https-port", "containerPort": 8112, "protocol": "TCP"},
        ],
        # queue.go:286-296: the user container's (defaulted) probe with an httpGet on the serving
        # port and K-Network-Probe: queue; the apiserver fills in path, scheme, period, timeout,
        # failureThreshold.
        "readinessProbe": {
            "httpGet": {
                "port": 8012,
                "path": "/",
                "scheme": "HTTP",
                "httpHeaders": [{"name": "K-Network-Probe", "value": "queue"}],
            },
            "successThreshold": 1,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
        "securityContext": {  # queue.go:80-90
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"requests": {"cpu": "25m"}},  # deployment/config.go:90,118
        # queue.go:355-437, in order
        "env": [
            {"name": "SERVING_NAMESPACE", "value": "default"},
            {"name": "SERVING_SERVICE", "value": "hello"},
            {"name": "SERVING_CONFIGURATION", "value": "hello"},
            {"name": "SERVING_REVISION", "value": "hello-00001"},
            {"name": "QUEUE_SERVING_PORT", "value": "8012"},
            {"name": "QUEUE_SERVING_TLS_PORT", "value": "8112"},
            {"name": "CONTAINER_CONCURRENCY", "value": "0"},
            {"name": "REVISION_TIMEOUT_SECONDS", "value": "300"},
            {"name": "REVISION_RESPONSE_START_TIMEOUT_SECONDS", "value": "0"},
            {"name": "REVISION_IDLE_TIMEOUT_SECONDS", "value": "0"},
            {"name": "SERVING_POD", **field("metadata.name")},
            {"name": "SERVING_POD_IP", **field("status.podIP")},
            {"name": "SERVING_LOGGING_CONFIG", "value": LOGGING_CONFIG},
            {"name": "SERVING_LOGGING_LEVEL"},  # empty: `value` omitted
            {"name": "USER_PORT", "value": "8080"},
            {"name": "SYSTEM_NAMESPACE", "value": "knative-serving"},
            {
                "name": "SERVING_READINESS_PROBE",  # queue.go:279-280,443-456 applyReadinessProbeDefaults
                "value": '{"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1}',
            },
            {"name": "HOST_IP", **field("status.hostIP", apiVersion="v1")},
            {"name": "ENABLE_HTTP2_AUTO_DETECTION", "value": "false"},
            {"name": "ENABLE_HTTP_FULL_DUPLEX", "value": "false"},
            {"name": "ROOT_CA"},
            {"name": "ENABLE_MULTI_CONTAINER_PROBES", "value": "false"},
            {"name": "OBSERVABILITY_CONFIG", "value": OBSERVABILITY_CONFIG},
        ],
        "terminationMessagePolicy": "File",
        "volumeMounts": [SA_MOUNT],
    }
    labels = {
        "app": "hello-00001",  # meta.go:56-61
        "serving.knative.dev/revision": "hello-00001",
        "serving.knative.dev/revisionUID": "0b6f6d3e-0000-4000-8000-000000000001",
        "serving.knative.dev/configuration": "hello",
        "serving.knative.dev/service": "hello",
        "pod-template-hash": "6d4f9c7b8",
    }
    return {
        "metadata": {
            "name": POD_NAME,
            "namespace": "default",
            "uid": "3f9a1c2e-0000-4000-8000-000000000002",
            "labels": labels,
            "annotations": {"serving.knative.dev/creator": "admin"},
        },
        "spec": {
            "nodeName": "cpu-0",
            "containers": [user, queue],  # deploy.go:208: user containers, then the queue-proxy
            "terminationGracePeriodSeconds": 300,  # deploy.go:302: the revision's timeoutSeconds
            "enableServiceLinks": False,  # deploy.go:303-305 (config-defaults enable-service-links)
            "restartPolicy": "Always",
            "serviceAccountName": "default",
            "volumes": [
                {"name": SA_MOUNT["name"], "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
            ],
        },
    }


class NoSources:
    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return None

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return None


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "knative-queue").write_text("#!/bin/sh\n")
    (bin_dir / "knative-queue").chmod(0o755)
    (tmp_path / "repo" / "runtimes" / "predictor").mkdir(parents=True)
    return Config(root=tmp_path / "state", python="/venv/bin/python", repo_root=tmp_path / "repo", bin_dir=bin_dir)


@pytest.mark.parametrize(
    ("image", "queue"),
    [
        (KNATIVE_QUEUE_IMAGE, True),
        ("gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:0123abcd", True),
        ("gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.21.1@sha256:0123abcd", True),
        ("localhost:5000/knative.dev/serving/cmd/queue", True),
        ("knative.dev/serving/cmd/queue:latest", True),
        ("gcr.io/knative-releases/knative.dev/serving/cmd/activator:v1.21.1", False),
        ("gcr.io/knative-releases/knative.dev/serving/cmd/queue-extra:v1", False),
        ("ko://knative.dev/serving/cmd/queue", False),  # unresolved ko reference: nothing maps it
        ("myorg/queue:1", False),
    ],
)
def test_is_knative_queue(image: str, queue: bool) -> None:
    assert is_knative_queue(image) is queue


def test_the_queue_image_is_the_knative_queue_binary(cfg: Config, tmp_path: Path) -> None:
    img = images.resolve(KNATIVE_QUEUE_IMAGE, cfg)
    binary = str(cfg.bin_dir / "knative-queue")
    assert img.local_argv(img.command({"name": "queue-proxy"})) == [binary]  # no command: the ENTRYPOINT
    assert img.local_argv([images.KNATIVE_QUEUE_ENTRYPOINT, "-x"]) == [binary, "-x"]
    missing = Programs(python="/venv/bin/python", repo_root=tmp_path, bin_dir=tmp_path / "nowhere")
    with pytest.raises(
        Unavailable, match=r"Knative's queue-proxy is not built \(no .*knative-queue\); run hack/build-knative.sh"
    ):
        images.resolve(KNATIVE_QUEUE_IMAGE + "@sha256:00", missing)


def launch(cfg: Config, pod: dict[str, Any], index: int) -> Any:
    resolver = Resolver([pod], lambda ns, name: None, lambda p: POD_IP)
    return prepare(cfg, pod, pod["spec"]["containers"][index], NoSources(), resolver, POD_IP, None, {"PATH": "/bin"})


def test_a_revision_pods_containers(cfg: Config) -> None:
    pod = revision_pod()
    user, queue = launch(cfg, pod, 0), launch(cfg, pod, 1)

    assert queue.argv == [str(cfg.bin_dir / "knative-queue")]
    env = queue.env
    assert env["SERVING_POD"] == POD_NAME and env["SERVING_POD_IP"] == POD_IP
    # status.hostIP: what the executor reports as the pod's hostIP.
    assert env["HOST_IP"] == status.pod_status(pod, [], "t", POD_IP)["hostIP"] == "127.0.0.1"
    assert env["SERVING_LOGGING_LEVEL"] == "" and env["ROOT_CA"] == ""  # set, empty (envconfig requires them)
    for name, value in [
        ("QUEUE_SERVING_PORT", "8012"),
        ("QUEUE_SERVING_TLS_PORT", "8112"),
        ("USER_PORT", "8080"),
        ("CONTAINER_CONCURRENCY", "0"),
        ("REVISION_TIMEOUT_SECONDS", "300"),
        ("SERVING_NAMESPACE", "default"),
        ("SERVING_REVISION", "hello-00001"),
        ("SERVING_LOGGING_CONFIG", LOGGING_CONFIG),
        ("OBSERVABILITY_CONFIG", OBSERVABILITY_CONFIG),
    ]:
        assert env[name] == value, name
    assert json.loads(env["SERVING_READINESS_PROBE"]) == {
        "tcpSocket": {"port": 8080, "host": "127.0.0.1"},
        "successThreshold": 1,
    }
    assert env["HOSTNAME"] == POD_NAME  # the OTel resource's pod name (S/pkg/queue/sharedmain/otel.go:91)
    assert queue.mounts == () and user.mounts == ()  # the ServiceAccount token volume is left out

    assert user.argv == ["/venv/bin/python", "-m", "slipway_predictor"]
    assert {k: user.env[k] for k in ("PORT", "K_REVISION", "K_CONFIGURATION", "K_SERVICE")} == {
        "PORT": "8080",
        "K_REVISION": "hello-00001",
        "K_CONFIGURATION": "hello",
        "K_SERVICE": "hello",
    }

    # The pod serves itself these on its 127.0.0.1 (the queue-proxy proxies to 127.0.0.1:8080);
    # the admin port 8022, which no container declares, is one of podnet's sidecar ports.
    assert set(podnet.own_ports(pod)) >= {8080, 8012, 8112, 9090, 9091}
    assert 8022 in podnet.SIDECAR_PORTS

    # Probes and hooks as the kubelet runs them: the queue-proxy's readiness probe with its
    # header; the user container has none; its preStop hook goes to the pod IP's 8022.
    ready = probes.readiness(pod["spec"]["containers"][1], POD_IP)
    assert ready is not None and (ready.kind, ready.host, ready.port, ready.path) == ("http", POD_IP, 8012, "/")
    assert ready.headers == (("K-Network-Probe", "queue"),)
    assert probes.readiness(pod["spec"]["containers"][0], POD_IP) is None
    hook = probes.pre_stop(pod["spec"]["containers"][0], POD_IP)
    assert hook is not None and hook.probe is not None
    assert (hook.probe.host, hook.probe.port, hook.probe.path) == (POD_IP, 8022, "/wait-for-drain")


def test_a_revision_pod_with_what_the_executor_cannot_honour_fails_visibly(cfg: Config) -> None:
    from slipway_dev.localexec.envres import ConfigError

    pod = revision_pod()
    # system-internal-tls: the server-certs Secret volume on the queue-proxy (deploy.go:203-206).
    pod["spec"]["volumes"].append({"name": "server-certs", "secret": {"secretName": "serving-certs"}})
    pod["spec"]["containers"][1]["volumeMounts"].append(
        {"name": "server-certs", "mountPath": "/var/lib/knative/certs", "readOnly": True}
    )
    with pytest.raises(ConfigError, match='volume "server-certs" \\(secret\\) mounted by queue-proxy is not supported'):
        launch(cfg, pod, 1)
    pod["spec"]["containers"][1]["image"] = "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1"
    cfg_missing = Config(root=cfg.root, python=cfg.python, repo_root=cfg.repo_root, bin_dir=cfg.root / "none")
    with pytest.raises(ImageUnavailable, match=r"run hack/build-knative\.sh"):
        launch(cfg_missing, pod, 1)
