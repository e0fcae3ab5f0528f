"""From pod spec to local process (slipway_dev/localexec/containers.py), and the executor's view of a
pod it finds after a restart (Executor._adopt), without a cluster."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.kube import Api
from slipway_dev.localexec.containers import Config, ImageUnavailable, prepare
from slipway_dev.localexec.envres import ConfigError
from slipway_dev.localexec.executor import Executor
from slipway_dev.localexec.network import Resolver
from slipway_dev.localexec.status import TERMINATED, WAITING


class Sources:
    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return {"secret": "s3cr3t"} if name == "creds" else None

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return None


def config(tmp_path: Path) -> Config:
    (tmp_path / "repo" / "runtimes" / "trainer").mkdir(parents=True)
    return Config(root=tmp_path / "state" / "executor", python="/venv/bin/python", repo_root=tmp_path / "repo")


def trainer_pod(rank: int = 0, command: list[str] | None = None, **container: Any) -> dict[str, Any]:
    env = [
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "secret"}}},
        {"name": "MASTER_ADDR", "value": "job-w0.job"},
        {"name": "MASTER_PORT", "value": "29500"},
        {"name": "NODE_RANK", "value": str(rank)},
        {"name": "SLIPWAY_TERMINATION_LOG", "value": "/dev/termination-log"},
    ]
    c = {"name": "trainer", "image": "ghcr.io/slipway-dev/trainer:0.1.0", "env": env, **container}
    if command is not None:
        c["command"] = command
    labels = {"slipway.dev/component": "trainer", "slipway.dev/training-job": "job", "slipway.dev/attempt": "1"}
    return {
        "metadata": {"name": f"job-a1-w{rank}", "namespace": "ml", "uid": f"uid-{rank}-0000", "labels": labels},
        "spec": {"hostname": f"job-w{rank}", "subdomain": "job", "nodeName": "cpu-0", "containers": [c]},
    }


IPS = {"job-a1-w0": "198.18.0.2", "job-a1-w1": "198.18.0.3"}


def prep(cfg: Config, pod: dict[str, Any], others: list[dict[str, Any]] | None = None) -> Any:
    resolver = Resolver([pod, *(others or [])], lambda ns, name: None, lambda p: IPS.get(p["metadata"]["name"]))
    ip = IPS[pod["metadata"]["name"]]
    return prepare(
        cfg, pod, pod["spec"]["containers"][0], Sources(), resolver, ip, Path("/run/netns/x"), {"PATH": "/bin"}
    )


def test_prepare_distributed_trainer(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    command = ["torchrun", "--node-rank=$(NODE_RANK)", "--master-addr=$(MASTER_ADDR)", "--master-port=$(MASTER_PORT)"]
    w0_pod = trainer_pod(0, command, args=["-m", "slipway_trainer"])
    w0 = prep(cfg, w0_pod)
    w1 = prep(cfg, trainer_pod(1, command, args=["-m", "slipway_trainer"]), [w0_pod])
    assert w0.argv == [
        "/venv/bin/torchrun",
        "--node-rank=0",
        "--master-addr=198.18.0.2",  # rank 0's pod IP
        "--master-port=29500",  # its own address: no port needs moving
        "-m",
        "slipway_trainer",
    ]
    assert w1.argv[1:4] == ["--node-rank=1", "--master-addr=198.18.0.2", "--master-port=29500"]
    env = w0.env
    assert env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert env["PYTHONPATH"] == str(cfg.repo_root / "runtimes" / "trainer")
    assert env["SLIPWAY_TERMINATION_LOG"].startswith(str(cfg.root / "pods" / "ml_job-a1-w0_uid-0-00"))
    assert env["PATH"] == "/venv/bin:/bin"
    assert env["HOSTNAME"] == "job-w0" and env["GLOO_SOCKET_IFNAME"] == "eth0"
    assert w0.log == cfg.root / "logs" / "ml_job-a1-w0_trainer.log"
    assert w0.netns == Path("/run/netns/x") and w0.mounts == ()


def test_prepare_mounts_empty_dirs_but_not_over_the_executors_files(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    pod = trainer_pod(
        volumeMounts=[
            {"name": "models", "mountPath": "/mnt/models", "readOnly": True},
            {"name": "models", "mountPath": "/srv/sub", "subPath": "a"},
            {"name": "scratch", "mountPath": str(tmp_path)},  # would hide the state dir: the TMPDIR stand-in
            {"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},  # left out
        ]
    )
    pod["spec"]["volumes"] = [
        {"name": "models", "emptyDir": {}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "kube-api-access-x1", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
    ]
    launch = prep(cfg, pod)
    volumes = cfg.root / "pods" / "ml_job-a1-w0_uid-0-00" / "volumes"
    assert launch.mounts == (
        (str(volumes / "models"), "/mnt/models", True),
        (str(volumes / "models" / "a"), "/srv/sub", False),
    )


@pytest.mark.parametrize(
    "volume",
    [
        {"configMap": {"name": "c"}},
        {"secret": {"secretName": "serving-certs"}},  # Knative's server-certs (system-internal-tls)
        {"projected": {"sources": [{"serviceAccountToken": {"audience": "a", "path": "a"}}]}},  # knative-token-volume
        {"downwardAPI": {"items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
    ],
)
def test_a_volume_that_is_not_mounted_here_fails_the_container(tmp_path: Path, volume: dict[str, Any]) -> None:
    pod = trainer_pod(volumeMounts=[{"name": "v", "mountPath": "/etc/v", "readOnly": True}])
    pod["spec"]["volumes"] = [{"name": "v", **volume}]
    kind = next(iter(volume))
    with pytest.raises(ConfigError, match=f'volume "v" \\({kind}\\) mounted by trainer is not supported'):
        prep(config(tmp_path), pod)


def test_sub_path_expr_is_expanded_with_the_containers_env(tmp_path: Path) -> None:
    # Knative's knative-var-log mount (S/pkg/reconciler/revision/resources/deploy.go:55-59,214-228).
    cfg = config(tmp_path)
    mount = {"name": "knative-var-log", "mountPath": "/var/log"}
    pod = trainer_pod(volumeMounts=[{**mount, "subPathExpr": "$(K_INTERNAL_POD_NAMESPACE)_$(K_INTERNAL_POD_NAME)_x"}])
    pod["spec"]["containers"][0]["env"] += [
        {"name": "K_INTERNAL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "K_INTERNAL_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    pod["spec"]["volumes"] = [{"name": "knative-var-log", "emptyDir": {}}]
    volume = cfg.root / "pods" / "ml_job-a1-w0_uid-0-00" / "volumes" / "knative-var-log"
    assert prep(cfg, pod).mounts == ((str(volume / "ml_job-a1-w0_x"), "/var/log", False),)
    pod["spec"]["containers"][0]["volumeMounts"] = [{**mount, "subPathExpr": "../$(K_INTERNAL_POD_NAME)"}]
    with pytest.raises(ConfigError, match="must be a relative path within the volume"):
        prep(cfg, pod)


@pytest.mark.parametrize(
    ("lifecycle", "refused"),
    [
        ({"preStop": {"httpGet": {"port": 8022, "path": "/wait-for-drain"}}}, None),
        ({"preStop": {"sleep": {"seconds": 1}}}, None),
        ({"preStop": {"exec": {"command": ["sleep", "5"]}}}, "lifecycle.preStop \\(trainer\\): exec handlers"),
        ({"postStart": {"httpGet": {"port": 80}}}, "lifecycle.postStart \\(trainer\\) is not supported"),
    ],
)
def test_lifecycle_hooks_the_executor_cannot_run_fail_the_container(
    tmp_path: Path, lifecycle: dict[str, Any], refused: str | None
) -> None:
    pod = trainer_pod(lifecycle=lifecycle)
    if refused is None:
        prep(config(tmp_path), pod)
    else:
        with pytest.raises(ConfigError, match=refused):
            prep(config(tmp_path), pod)


def test_prepare_defaults_to_the_runtime_entrypoint(tmp_path: Path) -> None:
    launch = prep(config(tmp_path), trainer_pod(args=["--config", "{}"]))
    assert launch.argv == ["/venv/bin/python", "-m", "slipway_trainer", "--config", "{}"]


def test_prepare_failures(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with pytest.raises(ImageUnavailable, match="not available to the local executor"):
        prep(cfg, trainer_pod(image="docker.io/library/nginx:1.27"))
    pod = trainer_pod()
    pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] = "gone"
    with pytest.raises(ConfigError, match='secret "gone" not found'):
        prep(cfg, pod)


def running_pod(restart_policy: str) -> dict[str, Any]:
    pod = trainer_pod()
    pod["spec"]["restartPolicy"] = restart_policy
    started = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    pod["status"] = {
        "phase": "Running",
        "startTime": "2026-01-01T00:00:00Z",
        "containerStatuses": [{"name": "trainer", "restartCount": 2, "state": started}],
    }
    return pod


def test_a_pod_running_before_an_executor_restart_lost_its_container(tmp_path: Path) -> None:
    executor = Executor(Api("https://127.0.0.1:1", None), config(tmp_path))
    lost = executor._adopt(running_pod("Never")).runs["trainer"]
    assert lost.state == TERMINATED and lost.exit_code == 137 and lost.reason == "ContainerStatusUnknown"
    restarted = executor._adopt(running_pod("Always")).runs["trainer"]
    assert restarted.state == WAITING and restarted.restart_count == 2
    assert restarted.last_terminated is not None and restarted.last_terminated["reason"] == "ContainerStatusUnknown"
