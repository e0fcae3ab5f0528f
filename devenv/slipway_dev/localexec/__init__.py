"""slipway's local executor: plays the kubelet for pods that run slipway's own runtimes and
KServe's predictors.

In the local cluster (slipway_dev/localcluster) kwok simulates every pod, except those labelled
`slipway.dev/component` or `serving.kserve.io/inferenceservice`: once the real kube-scheduler
binds one of them to a fake node, this executor runs its containers as local processes (the
repository's runtimes/* on the executor's Python, KServe's code for KServe's images), with the
env, `$(VAR)` expansion, termination message and status a kubelet would give it. Every pod
runs in a network namespace of its own with a pod IP from 198.18.0.0/16 (routed nowhere off
the machine), so EndpointSlices point at it; init containers run first, emptyDir
volumes are bind-mounted, and readiness probes decide when it is Ready. `Cluster.up()` starts it; by hand:

    .venv/bin/python -m slipway_dev.localexec --kubeconfig .cluster/kubeconfig --state-dir .cluster

Container logs are files, `<state dir>/executor/logs/<namespace>_<pod>_<container>.log`:
`kubectl logs` needs a kubelet's HTTP endpoint and none exists. See README.md next to this file.
"""

from .containers import Config
from .executor import Executor

__all__ = ["Config", "Executor"]
