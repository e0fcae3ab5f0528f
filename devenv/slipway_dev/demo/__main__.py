"""`make demo`: the whole loop on the local cluster (which `make cluster-up` started), then the report.

.venv/bin/python -m slipway_dev.demo [--namespace demo] [--rps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from slipway_dev import REPO
from slipway_dev.kubectl import Kubectl
from slipway_dev.localcluster import Cluster

from . import services
from .scenario import Env, Scenario, kubectl_for
from .timeline import Timeline


def fresh_namespace(kubectl: Kubectl, namespace: str) -> None:
    """A re-run starts clean (version numbers begin at 1 again); the operator releases the old finalizers."""
    if kubectl.out("get", "namespace", namespace, "--ignore-not-found", "-o", "name").strip():
        print(f"deleting the previous run's namespace {namespace}...", file=sys.stderr)
        kubectl.out("delete", "namespace", namespace, "--wait=true", "--timeout=180s")
    kubectl.out("create", "namespace", namespace)


def timeline_lines(tl: Timeline) -> list[str]:
    return [f"  {m.t - tl.started:6.1f}s  {m.action:<14} {m.message[:160]}" for m in tl.marks]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", default="demo")
    parser.add_argument("--rps", type=float, default=40.0)
    parser.add_argument("--state", type=Path, default=REPO / ".demo")
    parser.add_argument("--mode", choices=("Standard", "Serverless"), default=os.environ.get("MODE") or "Standard",
                        help="the Rollouts' deployment mode: Standard (KServe, Gateway API) or Serverless (KServe on "
                        "Knative Serving); default $MODE, else Standard")  # fmt: skip
    args = parser.parse_args()
    # The real serving stack (KServe's controller and webhooks, Traefik on the Gateway API, Knative Serving behind
    # Traefik's Knative provider) and Prometheus discovering the predictor pods through the apiserver; `make
    # cluster-up` started it.
    cluster = Cluster(Path(os.environ.get("SLIPWAY_CLUSTER_DIR") or REPO / ".cluster"), serving=True, knative=True,
                      prometheus=True)  # fmt: skip
    entry = cluster.knative_url if args.mode == "Serverless" else cluster.ingress_url
    kubeconfig = str(cluster.kubeconfig)
    s3, _, _ = services.start_all(args.state, kubeconfig)
    env = Env(args.namespace, kubeconfig, entry, cluster.prometheus_url, s3.env(), args.state / "report",
              rps=args.rps, mode=args.mode)  # fmt: skip
    fresh_namespace(kubectl_for(env, "default"), args.namespace)
    started = time.monotonic()
    outcome = Scenario(env).run()
    kubectl = kubectl_for(env)
    print("\n$ kubectl get slipway -A")
    print(kubectl.out("get", "slipway", "-A"))
    print("Decisions, with their evidence:")
    print("\n".join(timeline_lines(outcome.timeline)))
    if outcome.v3:
        lineage = (kubectl.get("modelversion", outcome.v3) or {}).get("spec", {}).get("lineage", {})
        print(f"\nLineage of {outcome.v3}: {json.dumps(lineage)}")
    print(f"\nReport: {outcome.report} (chart: {outcome.report.with_suffix('.png')})")
    print(f"Done in {(time.monotonic() - started) / 60:.1f} min. The environment stays up:")
    print(f"  export KUBECONFIG={kubeconfig} PATH={env.bin_dir}:$PATH; kubectl get slipway -A   (stop: make demo-down)")
    return 0 if outcome.v3 and outcome.rollout.get("status", {}).get("stableVersion") == outcome.v3 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (TimeoutError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        sys.exit(1)
