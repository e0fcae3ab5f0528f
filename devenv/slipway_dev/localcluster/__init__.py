"""slipway's local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake GPU/CPU nodes) as local processes, plus the local executor
(slipway_dev/localexec) that runs slipway's runtime pods for real (`up --no-executor` to leave it out),
and on request a real Prometheus, the real serving stack (KServe's controller manager and
webhooks, Traefik) and Knative Serving (`up --serving --knative --prometheus`,
`Cluster(serving=True, knative=True, prometheus=True)`).

    python -m slipway_dev.localcluster up|down|status|kubeconfig|install-crds

or from Python:

    from slipway_dev.localcluster import Cluster
    cluster = Cluster(tmp_dir, free_ports=True)
    cluster.up()
    subprocess.run(["kubectl", "get", "nodes"], env=cluster.env())
    cluster.down()
"""

from .cluster import Cluster, ClusterError
from .layout import Ports
from .nodes import DEFAULT_NODES, FakeNode

__all__ = ["DEFAULT_NODES", "Cluster", "ClusterError", "FakeNode", "Ports"]
