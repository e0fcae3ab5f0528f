"""The local KServe gateway (dev tooling only): plays KServe's controller and data plane for
Serverless-mode InferenceServices on the local control plane (hack/localcluster) until Knative
joins it. Standard (RawDeployment) mode is KServe's own: the real controller, webhooks and
Traefik run it (hack/localcluster/serving.py, `Cluster(serving=True)`), and the gateway leaves
such InferenceServices alone. See README.md.

    PYTHONPATH=hack python -m localkserve --kubeconfig .cluster/kubeconfig --state-dir .cluster

or `Cluster(kserve=True)` / `python -m localcluster up --kserve`, which run it as a managed
process.
"""
