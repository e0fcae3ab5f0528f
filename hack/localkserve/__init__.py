"""The local KServe gateway (dev tooling only): plays KServe's controller and data plane on
the local control plane (hack/localcluster). See README.md.

    PYTHONPATH=hack python -m localkserve --kubeconfig .cluster/kubeconfig --state-dir .cluster

or `Cluster(kserve=True)` / `python -m localcluster up --kserve`, which run it as a managed
process.
"""
