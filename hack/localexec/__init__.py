"""slipway's local executor: plays the kubelet for pods that run slipway's own runtimes.

In the local cluster (hack/localcluster) kwok simulates every pod, except those labelled
`slipway.dev/component`: once the real kube-scheduler binds one of them to a fake node, this
executor runs its container as a local process (the repository's runtimes/* on the
executor's Python), with the env, `$(VAR)` expansion, termination message and status a
kubelet would give it. Every pod is 127.0.0.1, so each pod's declared container ports get
host ports of their own (annotation `localexec.slipway.dev/ports`), and readiness probes
decide when it is Ready. `Cluster.up()` starts it; by hand:

    PYTHONPATH=hack .venv/bin/python -m localexec --kubeconfig .cluster/kubeconfig --state-dir .cluster

Container logs are files, `<state dir>/executor/logs/<namespace>_<pod>_<container>.log`:
`kubectl logs` needs a kubelet's HTTP endpoint and none exists. See README.md next to this file.
"""

from .containers import Config
from .executor import Executor

__all__ = ["Config", "Executor"]
