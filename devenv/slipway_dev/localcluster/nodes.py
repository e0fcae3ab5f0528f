"""The fake nodes of the local cluster.

kwok only manages nodes with the annotation below (see kwok.yaml). Capacity is set in the
node's status at creation: kwok's node-initialize stage keeps capacity/allocatable that is
already there instead of its default of 1k CPUs, so the scheduler sees realistic sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
# The taint GPU node pools carry (as the NVIDIA GPU operator / cloud providers set it):
# only pods that tolerate it, i.e. that asked for GPUs, land on GPU nodes.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class FakeNode:
    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            **self.labels,
        }
        spec: dict[str, Any] = {}
        if self.gpus:
            resources[GPU_RESOURCE] = str(self.gpus)
            labels["nvidia.com/gpu.present"] = "true"
            labels["nvidia.com/gpu.product"] = GPU_PRODUCT
            labels["nvidia.com/gpu.count"] = str(self.gpus)
            spec["taints"] = [GPU_TAINT]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
                    # Tells the ttl controller not to bother computing a cache TTL.
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": spec,
            "status": {"capacity": resources, "allocatable": dict(resources)},
        }


DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode("cpu-0"),
    FakeNode("cpu-1"),
    FakeNode("gpu-0", gpus=4),
    FakeNode("gpu-1", gpus=4),
)
