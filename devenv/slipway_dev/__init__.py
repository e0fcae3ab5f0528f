"""slipway's machine-local development environment: not part of the product, the proof's test bench.

- `localcluster`: a Kubernetes control plane from the real components' binaries (kube-apiserver,
  controller-manager, scheduler, kwok nodes, KServe's controller, Traefik, Knative Serving, Kueue, Argo
  Rollouts, Prometheus, an S3 server), all on loopback (`python -m slipway_dev.localcluster up`).
- `localexec`: runs the cluster's pods as local processes, in network namespaces it creates.
- `demo`: `make demo`'s scenario (train, canary, rollback, drift, retrain) and its report.
- `loadgen`, `fuzz_crs`, `stats_sim`: request load, CR fuzzing, the analysis' power simulation.
- `argocd_cm`, `chart_crds`: generators of files derived from one source (`make generate`, checked by `make lint`).

Installed into the project's environment in editable mode (`pip install -e devenv`, done by `make deps`): the
tools find the checkout they belong to through REPO.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout: slipway_dev/__init__.py
HACK = REPO / "hack"  # the components' build scripts, Go tooling modules and configuration
